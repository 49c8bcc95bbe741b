"""Low-level reads of a feature file: where a contiguous dataset lies, and whole arrays loaded and checked.

`contiguous_span` lets FeatureStore.read_grid gather a contiguous grid's rows from a memory map of the
file straight into a batch; `load_checked` reads a whole dataset into one contiguous array (data.preload: ram or
device), chunk by chunk, and refuses a file with a non-finite value, naming the row and its image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from vqa.data.buffers import page_aligned
from vqa.errors import UserError

CHUNK_BYTES = 64 << 20  # rows read and checked at a time by `load_checked` (while they are in the cache)


def contiguous_span(ds: h5py.Dataset, file_size: int) -> tuple[int, int] | None:
    """(file offset, bytes per row) of a dataset stored as one block of native,
    unfiltered values that a memory map can address (ours and the public grid files are), else None:
    chunked, compressed, external or not yet allocated storage is read through h5py."""
    if ds.chunks is not None or ds.external or not ds.dtype.isnative or ds.dtype.kind != "f" or not ds.shape:
        return None
    offset = ds.id.get_offset()
    row_bytes = ds.dtype.itemsize * int(np.prod(ds.shape[1:]))
    if offset is None or offset + row_bytes * ds.shape[0] > file_size:
        return None
    return offset, row_bytes


# a float is NaN or infinite exactly when all its exponent bits are set: (unsigned view, exponent mask)
EXPONENT_BITS = {2: (np.uint16, 0x7C00), 4: (np.uint32, 0x7F800000), 8: (np.uint64, 0x7FF0000000000000)}


def nonfinite_rows(block: np.ndarray) -> np.ndarray:
    """Indices of the rows of `block` [n, ...] (float16, float32 or float64) holding a NaN or an infinity,
    by one vectorized test of the exponent bits (about 4x faster than np.isfinite on float16)."""
    uint, mask = EXPONENT_BITS[block.dtype.itemsize]
    bits = np.ascontiguousarray(block).reshape(len(block), -1).view(uint)
    return np.flatnonzero(((bits & uint(mask)) == uint(mask)).any(axis=1))


def load_checked(path: Path, ds: h5py.Dataset, image_of_row: Callable[[int], str]) -> np.ndarray:
    """The whole dataset `ds` as one contiguous array, read CHUNK_BYTES at a time and each chunk checked
    for non-finite values while it is in the cache. A UserError names the file, the dataset, the first
    bad row and its image (`image_of_row`) and says to regenerate the features."""
    out = page_aligned(int(np.prod(ds.shape)) * ds.dtype.itemsize).view(ds.dtype).reshape(ds.shape)
    if out.size == 0:
        return out
    step = max(1, CHUNK_BYTES // max(1, out[0].nbytes))
    for start in range(0, len(out), step):
        end = min(len(out), start + step)
        ds.read_direct(out, np.s_[start:end], np.s_[start:end])
        if out.dtype.kind != "f":
            continue
        bad = nonfinite_rows(out[start:end])
        if len(bad):
            row = start + int(bad[0])
            raise UserError(
                f"{path}: '{ds.name.lstrip('/')}' row {row} ({image_of_row(row)}) holds NaN or infinite values "
                f"({len(bad):,} such rows among rows {start:,}-{end - 1:,}); regenerate or re-extract the features "
                "(`vqa extract`, `vqa convert` or `vqa synth`)"
            )
    return out

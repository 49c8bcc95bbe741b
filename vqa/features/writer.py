"""HDF5 writers of the feature layout (names: vqa/data/features.py; data/README.md), with its dtypes,
for `vqa extract` (grid) and `vqa convert` (boxes; --dtype float32 keeps a TSV's precision).

Grid rows are written crash-safe (GridRowWriter): the file is created once with every dataset at full
size (contiguous, allocated but never filled: a sparse file); from then on only raw bytes are written at
the datasets' fixed offsets: a batch's rows, an fsync, then the 8 bytes of `count`, another fsync.
HDF5's metadata is never touched again, so a crash cannot leave a file h5py fails to open, and rows
past `count` are ignored and overwritten. Boxes are appended in blocks of about BLOCK_BOXES boxes to
resizable datasets (BoxWriter), so memory stays bounded whatever the number of images.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from vqa.data.features import (
    FORMAT,
    GRID,
    IDS,
    IMAGE_BB,
    IMAGE_FEATURES,
    IMAGE_H,
    IMAGE_W,
    NAMES,
    NAMES_VERSION,
    POS_BOXES,
    SPATIAL_FEATURES,
    VERSION,
)
from vqa.errors import UserError
from vqa.io import atomic_path

ID_DTYPE, GRID_DTYPE, SIZE_DTYPE, BOX_DTYPE = "<i8", "<f2", "<i4", "<f4"
COUNT = "count"  # int64 (1,): grid rows committed (= N once finished); extract's resume point
BLOCK_BOXES = 4096  # boxes buffered between writes: 4096 x 2048 float32 = 32 MiB


def layout_attrs(**extra) -> dict:
    """The file attributes every writer sets: format, version, then what made the file."""
    return {"format": FORMAT, "version": VERSION, **extra}


def spatial_features(boxes: np.ndarray, image_w: float, image_h: float) -> np.ndarray:
    """[n, 4] pixel boxes (x1, y1, x2, y2) -> [n, 6] (x1/W, y1/H, x2/W, y2/H, w/W, h/H)."""
    scale = np.asarray([image_w, image_h, image_w, image_h], np.float32)
    rel = boxes.astype(np.float32) / scale  # [n, 4]
    wh = rel[:, 2:4] - rel[:, 0:2]  # [n, 2]
    return np.concatenate([rel, wh], axis=1)


def human_bytes(nbytes: float) -> str:
    """Disk sizes in extract's and convert's lines: '1.5 GiB', '12.0 MiB', '300 KiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 2**10:.0f} KiB"


# ---------------------------------------------------------------- grid: fixed offsets, resumable


def create_grid_file(
    path: Path, capacity: int, dim: int, side: int, attrs: dict, names: list[str] | None = None
) -> None:
    """`path` with ids, grid and count at full size, contiguous, allocated early and never filled;
    `names`: the file names the ids index (images keyed by file name), written once, here."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # file offsets fixed from the start
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # no zeros written: a sparse file
    with atomic_path(path, durable=True) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(IDS, (capacity,), ID_DTYPE, dcpl=dcpl)
            f.create_dataset(GRID, (capacity, dim, side, side), GRID_DTYPE, dcpl=dcpl)
            f.create_dataset(COUNT, data=np.zeros(1, ID_DTYPE), dcpl=dcpl)
            f.attrs.update(layout_attrs(**attrs))
            if names is not None:
                f.create_dataset(NAMES, data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
                f.attrs["version"] = NAMES_VERSION


class GridRowWriter:
    """Raw writes into a file of create_grid_file(): rows at fixed offsets, then the committed count."""

    def __init__(self, path: Path):
        with h5py.File(path, "r") as f:
            self.capacity, self.dim, self.side = f[GRID].shape[:3]
            self.offsets = {k: f[k].id.get_offset() for k in (IDS, GRID, COUNT)}
            self.count = int(f[COUNT][0])
            self.done = set(f[IDS][: self.count].tolist())
        if self.count > self.capacity or None in self.offsets.values():
            raise UserError(f"{path}: not a partial extraction of `vqa extract`; delete it and run again")
        self.row_bytes = self.dim * self.side * self.side * 2
        self.file = open(path, "rb+")  # noqa: SIM115 - closed by close()

    def write(self, ids: np.ndarray, grid: np.ndarray) -> None:
        """Append rows (ids [b], grid [b, D, S, S]) and commit them; a crash keeps the old count."""
        n = len(ids)
        f = self.file
        f.seek(self.offsets[GRID] + self.count * self.row_bytes)
        f.write(np.ascontiguousarray(grid, GRID_DTYPE).tobytes())
        f.seek(self.offsets[IDS] + self.count * 8)
        f.write(np.asarray(ids, ID_DTYPE).tobytes())
        f.flush()
        os.fsync(f.fileno())  # the rows are on disk before the count says so
        f.seek(self.offsets[COUNT])
        f.write(np.asarray([self.count + n], ID_DTYPE).tobytes())
        f.flush()
        os.fsync(f.fileno())
        self.count += n
        self.done.update(int(i) for i in ids)

    def close(self) -> None:
        self.file.close()


def finish_grid_file(partial: Path, out: Path, count: int, capacity: int) -> None:
    """Rename `partial` to `out`; when fewer rows than its capacity were written, copy those first."""
    if count == capacity:
        os.replace(partial, out)
        return
    with atomic_path(out) as tmp, h5py.File(partial, "r") as src, h5py.File(tmp, "w") as dst:
        dst.attrs.update(src.attrs)
        dst[IDS] = src[IDS][:count]
        dst[COUNT] = np.asarray([count], ID_DTYPE)
        if NAMES in src:
            src.copy(src[NAMES], dst, NAMES)
        grid = dst.create_dataset(GRID, (count, *src[GRID].shape[1:]), GRID_DTYPE)
        for start in range(0, count, 256):
            grid[start : start + 256] = src[GRID][start : min(start + 256, count)]
    partial.unlink()


# ---------------------------------------------------------------- boxes: flat, appended in blocks


class ImageBoxes(NamedTuple):
    """One image's regions, as BoxWriter appends them."""

    image_id: int
    image_w: int
    image_h: int
    boxes: np.ndarray  # float32 [n, 4]
    features: np.ndarray  # float32 [n, D]


class BoxWriter:
    """Resizable flat-box datasets in an open file, appended in blocks of about BLOCK_BOXES boxes."""

    def __init__(self, f: h5py.File, dim: int, dtype: str):
        self.f, self.dim, self.dtype = f, dim, dtype
        self.images = self.boxes = 0
        for name, shape, tp, chunk in (
            (IDS, (), ID_DTYPE, 4096),
            (IMAGE_W, (), SIZE_DTYPE, 4096),
            (IMAGE_H, (), SIZE_DTYPE, 4096),
            (POS_BOXES, (2,), ID_DTYPE, 4096),
            (IMAGE_FEATURES, (dim,), dtype, 16),  # 64 KiB chunks: an image's boxes span few of them
            (IMAGE_BB, (4,), BOX_DTYPE, 4096),
            (SPATIAL_FEATURES, (6,), BOX_DTYPE, 4096),
        ):
            f.create_dataset(name, (0, *shape), tp, maxshape=(None, *shape), chunks=(chunk, *shape))
        self.buf: list[ImageBoxes] = []

    def add(self, image: ImageBoxes) -> None:
        self.buf.append(image)
        if sum(len(r.boxes) for r in self.buf) >= BLOCK_BOXES:
            self.flush()

    def _append(self, name: str, data: np.ndarray) -> None:
        ds = self.f[name]
        start = ds.shape[0]
        ds.resize(start + len(data), axis=0)
        ds[start:] = data

    def flush(self) -> None:
        if not self.buf:
            return
        counts = np.asarray([len(r.boxes) for r in self.buf], np.int64)
        ends = self.boxes + np.cumsum(counts)
        self._append(IDS, np.asarray([r.image_id for r in self.buf], np.int64))
        self._append(IMAGE_W, np.asarray([r.image_w for r in self.buf], np.int32))
        self._append(IMAGE_H, np.asarray([r.image_h for r in self.buf], np.int32))
        self._append(POS_BOXES, np.stack([ends - counts, ends], axis=1))  # [b, 2]
        self._append(IMAGE_FEATURES, np.concatenate([r.features for r in self.buf]).astype(self.dtype))
        self._append(IMAGE_BB, np.concatenate([r.boxes for r in self.buf]))
        spatial = [spatial_features(r.boxes, r.image_w, r.image_h) for r in self.buf]  # [n, 6] each
        self._append(SPATIAL_FEATURES, np.concatenate(spatial))
        self.images += len(self.buf)
        self.boxes = int(ends[-1])
        self.buf = []


class RowWriterThread:
    """GridRowWriter.write (its crash-safe protocol, batches in order) on one background thread, fed
    through a bounded queue. The thread waits for a batch's CUDA copy event before it reads the rows;
    an error stops the writing, and `put` and `close` raise it in the main thread (a failed write as
    the user error that says how to continue)."""

    def __init__(self, writer: GridRowWriter, path: Path, depth: int = 4):
        self.writer, self.path = writer, path
        self.queue: queue.Queue = queue.Queue(maxsize=depth)  # bounds the rows held in memory
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="extract-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain, so the main thread never blocks on a full queue
            ids, grid, copied = item
            try:
                if copied is not None:
                    copied.synchronize()  # the non-blocking copy from the GPU has landed
                self.writer.write(ids, grid.numpy())
            except OSError as e:
                self.error = UserError(
                    f"{self.path}: write failed ({e.strerror or e}); free disk space and run the "
                    f"same command again to continue after image {self.writer.count:,}"
                )
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                self.error = e

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, ids: np.ndarray, grid, copied=None) -> None:
        """Queue rows (ids [b], grid CPU tensor [b, D, S, S]); `copied`: CUDA event of their copy."""
        self._raise()
        self.queue.put((ids, grid, copied))

    def stop(self) -> None:
        """Write what is queued and stop the thread (again: nothing)."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def close(self) -> None:
        """stop(), then raise the thread's error if it had one."""
        self.stop()
        self._raise()

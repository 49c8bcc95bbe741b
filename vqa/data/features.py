"""HDF5 image-feature store: grid or region boxes, keyed by image (a COCO id, or a file name: VizWiz).

Layouts read (data/README.md; the names below): ours (`vqa synth`, `vqa extract`, `vqa convert`: a
`grid`, or flat adaptive boxes with `pos_boxes`), the public ResNet grid layout (`features` (N, D, H, W)
+ `ids`) and fixed boxes (N, K, D). A split's images may live in several files (VQA-CP):
vqa/data/image_features.py resolves each image to (file, row) once, up front.

Every vector comes back as [regions, D] in the file's dtype (float16 in ours): a grid is flattened to
N = H*W. A batch is read straight into its buffer (`read_grid`, `read_padded`); with data.preload ram or
device the dataset is read once into one checked array (vqa.data.reading.load_checked) and a batch is
one indexed copy from it; `on_device` holds that array on the accelerator.

The HDF5 file is opened lazily, once per process: an h5py handle must not cross a fork into DataLoader
workers (they would share one file descriptor and corrupt each other's reads), so it is re-opened when
the process id changes, the trap pytorch-vqa documents for its own loader.
"""

from __future__ import annotations

import itertools
import mmap
import os
from pathlib import Path

import h5py
import numpy as np

from vqa.data.reading import contiguous_span, load_checked
from vqa.errors import UserError

# The layout (data/README.md): the names the readers below look up and vqa/features/writer.py writes.
FORMAT, VERSION = "vqa-features", 1  # file attributes `format` and `version`
NAMES_VERSION = 2  # the version of a file with `names`: its ids are not image ids
IDS = "ids"  # int64 (N,): the image id of each row (with `names`: the row of its file name there)
NAMES = "names"  # str (M,): image file names, for images without a numeric id (VizWiz)
GRID = "grid"  # float16 (N, D, S, S), channel first
PUBLIC_GRID = "features"  # the same, as pytorch-vqa's preprocess-images.py names it
GRID_KEYS = (GRID, PUBLIC_GRID)
IMAGE_FEATURES = "image_features"  # (R, D) flat boxes of all images, or (N, K, D) fixed boxes
IMAGE_BB = "image_bb"  # float32 (R, 4): x1, y1, x2, y2 in pixels
SPATIAL_FEATURES = "spatial_features"  # float32 (R, 6): x1/W, y1/H, x2/W, y2/H, w/W, h/H
POS_BOXES = "pos_boxes"  # int64 (N, 2): [start, end) rows of image n in the flat box arrays
IMAGE_W, IMAGE_H = "image_w", "image_h"  # int32 (N,): image size in pixels

# data.preload: read on demand, one array in RAM, that array on the device
PRELOADS = ("none", "ram", "device")


class FeatureStore:
    """One feature file (see the module docstring): its image index, layout and readers."""

    def __init__(self, path: str | Path, kind: str = "grid", preload: str = "none"):
        self.path = Path(path)
        self.kind, self.preload = kind, preload
        if preload not in PRELOADS:
            raise UserError(f"data.preload is '{preload}'; choose one of {', '.join(PRELOADS)}")
        if not self.path.is_file():
            raise UserError(
                f"{self.path}: feature file not found; run `make data` or `vqa extract` (data/README.md)"
            )
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise UserError(f"{self.path}: not a readable HDF5 file ({e}); regenerate it") from None
        with f:
            self.index = _read_index(self.path, f)
            if kind == "grid":
                self._grid_layout(f)
            elif kind == "boxes":
                self._boxes_layout(f)
            else:
                raise UserError(f"data.features is '{kind}'; choose grid or boxes")
            self.dtype = f[self.key].dtype
            # the file the run reads: every process's handles must be this one, no shorter (`_checked`)
            opened = os.fstat(f.id.get_vfd_handle())
            self._file = (opened.st_dev, opened.st_ino, opened.st_size)
            # a contiguous dataset (grid or boxes) is read from a memory map (`_mapped`), others by h5py
            self._shape = f[self.key].shape
            self._span = contiguous_span(f[self.key], opened.st_size)
        self._handles: dict = {}  # "h5py" / "plain" / "map" -> (process id, its handle): `_opened`
        self._ram: np.ndarray | None = None  # data.preload ram / device: the whole dataset, checked
        self._device: dict = {}  # torch.device -> the preloaded array there (`on_device`)
        if preload != "none":
            with h5py.File(self.path, "r") as f:
                self._ram = load_checked(self.path, f[self.key], self._image_of_row)

    def _grid_layout(self, f: h5py.File) -> None:
        """key, dim, max_regions (H*W) and pos_boxes (None) of a grid file (ours or the public one)."""
        self.key = next((k for k in GRID_KEYS if k in f), None)
        if self.key is None:
            raise UserError(f"{self.path}: no grid features ('grid' or 'features'); set data.features: boxes")
        shape = f[self.key].shape
        if len(shape) != 4 or shape[0] != len(self.index):
            raise UserError(
                f"{self.path}: '{self.key}' has shape {shape}; expected (N, D, H, W) with N = len(ids)"
            )
        self.dim, self.max_regions = shape[1], shape[2] * shape[3]
        self.pos_boxes = None

    def _boxes_layout(self, f: h5py.File) -> None:
        """key, dim, max_regions and pos_boxes ([start, end) per image, or None for K fixed boxes)."""
        if IMAGE_FEATURES not in f:
            raise UserError(f"{self.path}: no 'image_features' (region boxes); set data.features: grid")
        self.key = IMAGE_FEATURES
        shape = f[self.key].shape
        self.dim = shape[-1]
        self.pos_boxes = None
        if POS_BOXES in f:  # adaptive: flat rows, [start, end) per image
            self.pos_boxes = f[POS_BOXES][()].astype(np.int64)
            if self.pos_boxes.shape != (len(self.index), 2) or len(shape) != 2:
                raise UserError(
                    f"{self.path}: 'pos_boxes' {self.pos_boxes.shape} does not match 'ids'/'image_features'"
                )
            self.max_regions = int((self.pos_boxes[:, 1] - self.pos_boxes[:, 0]).max(initial=0))
        elif len(shape) != 3 or shape[0] != len(self.index):
            raise UserError(
                f"{self.path}: 'image_features' has shape {shape}; expected (N, K, D) or flat with pos_boxes"
            )
        else:  # fixed K boxes per image
            self.max_regions = shape[1]

    def _image_of_row(self, row: int) -> str:
        """'image <key>' of row `row` of the feature dataset (a flat box row: the image whose boxes hold it)."""
        if self.pos_boxes is not None:
            owners = np.flatnonzero((self.pos_boxes[:, 0] <= row) & (row < self.pos_boxes[:, 1]))
            if not len(owners):
                return "a box row of no image"
            row = int(owners[0])
        key = next(itertools.islice(self.index, row, None), None)  # the index is in row order
        return f"image {key!r}" if isinstance(key, str) else f"image {key}"

    def _opened(self, name: str, opener):
        """This process's handle `name`, opened once per process (see the module docstring)."""
        pid, handle = self._handles.get(name, (None, None))
        if pid != os.getpid():
            handle = opener()
            self._handles[name] = (os.getpid(), handle)
        return handle

    def _dataset(self):
        if self._ram is not None:
            return self._ram
        f = self._opened("h5py", lambda: h5py.File(self.path, "r"))
        self._checked(f.id.get_vfd_handle())
        return f[self.key]

    def _plain(self):
        """The file opened for the memory map of a contiguous grid and its read-ahead hints."""
        return self._opened("plain", lambda: open(self.path, "rb", buffering=0))  # noqa: SIM115

    def _checked(self, fd: int) -> None:
        """Refuse to read through `fd` (this process's handle) unless it is still the file the store opened,
        at least as long: a file replaced at its path (a worker opens its own handles) or cut short under
        the run would be read past its end, which faults in a memory map and gives zeros through HDF5.
        One fstat per batch. (Only a change between this check and the copy could still get through;
        vqa's writers replace files by rename, which an open handle never sees.)"""
        dev, ino, opened = self._file
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (dev, ino):
            raise UserError(
                f"{self.path}: replaced by another file since the run opened it; "
                "restart the run (do not change a feature file while a run reads it)"
            )
        if now.st_size < opened:
            cut = ""
            if self._span is not None:
                offset, row_bytes = self._span
                first = max(0, (now.st_size - offset) // row_bytes)
                cut = f"row {first} of '{self.key}' is cut short: " if first < self._shape[0] else ""
            raise UserError(
                f"{self.path}: {cut}the file is {now.st_size:,} bytes, {opened:,} when the run opened it "
                "(truncated or rewritten under the run); regenerate it, and do not change a feature file "
                "while a run reads it"
            )

    def get(self, key: int | str) -> np.ndarray:
        """Features of one image (by COCO id or file name) as [regions, D] in the file's dtype."""
        return self.get_row(self.index[key])

    def get_row(self, row: int) -> np.ndarray:
        """Features of the image in row `row` of the file, [regions, D] in the file's dtype (float16
        in ours: the batch stays float16 until it is on the device, where it becomes float32)."""
        data = self._dataset()
        if self.kind == "grid":
            return self._cells(np.asarray(data[row]))
        if self.pos_boxes is not None:
            start, end = self.pos_boxes[row]
            return np.asarray(data[start:end])  # [n, D]
        return np.asarray(data[row])  # [K, D]

    def read_grid(self, rows: np.ndarray, out: np.ndarray, at: np.ndarray) -> None:
        """out[at[i]] = grid row rows[i] as stored, [D, H*W]: for a batch (`ImageFeatures.read_into`).

        A preloaded array, or a contiguous, unfiltered dataset (ours and the public grid files: mapped
        into memory, `_mapped`): one indexed copy (np.take) straight into the batch, about 2x less CPU
        than a read per row and 3x less than h5py's selection machinery; other storage (chunked or
        compressed): one sorted h5py read of the distinct rows. No transpose here: Batch.to does it on the device, in the copy that
        makes float32."""
        rows, at = np.asarray(rows, np.int64), np.asarray(at, np.int64)
        source = self._in_memory()
        if source is not None:
            block = source.reshape(len(source), out.shape[1], -1)  # [N, D, H*W], a view
            target = _slice_of(out, at)
            if target is not None and target.dtype == block.dtype:
                np.take(block, rows, axis=0, out=target, mode="clip")  # clip: no buffered copy of the output
            else:
                out[at] = block[rows]
            return
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py reads increasing, distinct rows
        block = self._dataset()[unique]  # [U, D, H, W]
        out[at] = block.reshape(len(unique), block.shape[1], -1)[inverse]

    def _in_memory(self) -> np.ndarray | None:
        """The whole dataset as one array a batch is gathered from: the preloaded one, else the memory map
        of a contiguous dataset; None for storage only h5py reads (chunked, compressed)."""
        if self._ram is not None:
            return self._ram
        return self._mapped() if self._span is not None else None

    def _mapped(self) -> np.ndarray:
        """The contiguous dataset as a read-only array of its shape over a memory map of the file
        (mapped once per process; the page cache's pages themselves, no copy), once `_checked` has found
        the file whole: a file cut short under the run is one error, not a SIGBUS."""
        fd = self._plain().fileno()
        self._checked(fd)
        return self._opened("map", lambda: self._map(fd))

    def _map(self, fd: int) -> np.ndarray:
        offset, row_bytes = self._span
        n = self._shape[0]
        view = mmap.mmap(fd, offset + n * row_bytes, access=mmap.ACCESS_READ)
        count = n * row_bytes // self.dtype.itemsize
        return np.frombuffer(view, self.dtype, count=count, offset=offset).reshape(self._shape)

    def regions(self, rows: np.ndarray) -> np.ndarray:
        """int64 [B]: the regions of each of these rows (H*W of a grid, K of fixed boxes)."""
        if self.pos_boxes is None:
            return np.full(len(rows), self.max_regions, np.int64)
        span = self.pos_boxes[np.asarray(rows, np.int64)]  # [B, 2]
        return span[:, 1] - span[:, 0]

    def read_padded(self, rows: np.ndarray, out: np.ndarray, at: np.ndarray) -> None:
        """out[at[i], :n_i] = the [n_i, D] features of row rows[i], out[at[i], n_i:] = 0: a padded batch
        [B, N, D] (boxes, or grids of unequal sizes). Boxes preloaded or stored contiguously (ours: mapped
        into memory, `_mapped`) are gathered by one indexed copy; otherwise each distinct row is read once,
        in order, through h5py (a grid's in one read)."""
        rows, at = np.asarray(rows, np.int64), np.asarray(at, np.int64)
        source = self._in_memory() if self.kind == "boxes" else None
        if source is not None:
            n = out.shape[1]
            index, valid = self.box_index(rows, n)  # [B, n]
            flat = source if self.pos_boxes is not None else source.reshape(-1, self.dim)
            target = _slice_of(out, at)
            direct = target is not None and target.dtype == flat.dtype
            if not direct:
                target = np.empty((len(rows), n, self.dim), flat.dtype)
            np.take(flat, index, axis=0, out=target, mode="clip")
            target[~valid] = 0
            if not direct:
                out[at] = target
            return
        unique, inverse = np.unique(rows, return_inverse=True)  # each distinct row read once, in order
        if self.kind == "grid" and self._ram is None:
            features = [self._cells(x) for x in self._dataset()[unique]]  # one h5py read [U, D, H, W]
        else:
            features = [self.get_row(int(r)) for r in unique]  # [n_u, D] each
        for i, u in zip(at.tolist(), inverse.tolist()):
            x = features[u]
            out[i, : len(x)] = x
            out[i, len(x) :] = 0

    def box_index(self, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(index int64 [B, n], valid bool [B, n]): the rows of the flat box array (fixed boxes: of the
        [N * K, D] view) that hold the boxes of these images, padded with row 0 where `valid` is false."""
        start = self.pos_boxes[rows, 0] if self.pos_boxes is not None else rows * self.max_regions
        slot = np.arange(n)
        valid = slot < self.regions(rows)[:, None]
        return np.where(valid, start[:, None] + slot, 0), valid

    def device_bytes(self, device) -> int:
        """Bytes `on_device(device)` still copies there (0 once there, and on the CPU)."""
        if self._ram is None or device in self._device or device.type == "cpu":
            return 0
        return self._ram.nbytes

    def on_device(self, device):
        """The preloaded array as a torch tensor on `device` (data.preload: device), copied there once
        and shared by every loader of the process; on the CPU it is the RAM array itself."""
        import torch  # here: `vqa convert` imports this module's layout names without torch

        if self._ram is None:
            raise UserError(f"{self.path}: not preloaded; set data.preload: device to hold it on {device}")
        if device not in self._device:
            self._device[device] = torch.from_numpy(self._ram).to(device)
        return self._device[device]

    def will_need(self, rows: np.ndarray) -> None:
        """Ask the kernel to start reading the features of these rows (posix_fadvise WILLNEED: asynchronous,
        one call per image), so a later read finds them in the page cache (vqa.data.loader.ReadAhead hints
        each batch once, ahead of its read); nothing for preloaded or h5py-read storage."""
        if self._ram is not None or self._span is None or not hasattr(os, "posix_fadvise"):
            return
        offset, row_bytes = self._span
        fd = self._plain().fileno()
        rows = np.unique(rows)
        span = self.pos_boxes[rows] if self.pos_boxes is not None else np.stack([rows, rows + 1], axis=1)
        for start, end in span.tolist():  # [start, end) rows of the dataset
            if end > start:
                os.posix_fadvise(
                    fd, offset + start * row_bytes, (end - start) * row_bytes, os.POSIX_FADV_WILLNEED
                )

    @staticmethod
    def _cells(x: np.ndarray) -> np.ndarray:
        """[D, H, W] -> [H*W, D], same dtype. torch's transposing copy is ~2x faster than numpy's
        here, the costliest line of the input pipeline for grid features (make bench: pipeline)."""
        import torch  # here: `vqa convert` imports this module's layout names without torch

        return torch.from_numpy(np.ascontiguousarray(x).reshape(x.shape[0], -1)).T.contiguous().numpy()

    def __getstate__(self):  # pickled into workers: without the open handles and the device copies
        return {**self.__dict__, "_handles": {}, "_device": {}}


def _read_index(path: Path, f: h5py.File) -> dict:
    """{image key: row} of a feature file: its COCO ids, or with `names` (version 2) its file names."""
    if IDS not in f:
        raise UserError(f"{path}: no 'ids' dataset; expected the layout in data/README.md")
    if f[IDS].dtype.kind not in "iu":
        raise UserError(
            f"{path}: 'ids' holds {f[IDS].dtype} values, not integers (image ids would be cut); "
            "regenerate the file (vqa extract / vqa convert write int64 ids)"
        )
    ids = f[IDS][()].astype(np.int64)
    if NAMES in f:  # version 2: images keyed by file name
        names = f[NAMES].asstr()[()]
        if len(ids) and (ids.min() < 0 or ids.max() >= len(names)):
            raise UserError(f"{path}: 'ids' point outside 'names'; the file is corrupt")
        index = {names[i]: row for row, i in enumerate(ids.tolist())}
    else:
        index = {int(i): row for row, i in enumerate(ids)}
    if len(index) != len(ids):
        raise UserError(f"{path}: 'ids' holds duplicate image ids; the file is corrupt")
    return index


def _slice_of(out: np.ndarray, at: np.ndarray) -> np.ndarray | None:
    """out[at] as a view when `at` is a run of consecutive rows (one store's batch), else None."""
    if len(at) and at[-1] - at[0] == len(at) - 1 and (len(at) < 3 or (np.diff(at) == 1).all()):
        return out[int(at[0]) : int(at[-1]) + 1]
    return None

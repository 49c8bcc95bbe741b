"""HDF5 image-feature store: grid or region boxes, indexed by image id.

Layouts read (data/README.md documents them):
- ours (`vqa synth`, `vqa extract`, `vqa convert`): `ids` (N,), `grid` (N, D, S, S),
  flat adaptive boxes `image_features` (R, D) + `image_bb` (R, 4) + `pos_boxes` (N, 2).
  Version 2 adds `names` (M,) for images keyed by file name (VizWiz): `ids` then index `names`.
- the public ResNet grid layout: `features` (N, D, H, W) + `ids` (N,).
- fixed boxes: `image_features` (N, K, D) + `ids`.

A store is keyed by image key: the COCO id, or the file name in a version-2 file. A split's
images may live in several files (VQA-CP names train2014 or val2014 per question): ImageFeatures
(vqa/data/image_features.py) resolves every image of the split to (file, row) once, up front, so
reading is array lookups.

Every vector comes back as [regions, D] in the file's dtype (float16 in ours): a grid is flattened to
N = H*W. A batch is read straight into its buffer: grid rows by plain reads at their file offsets where
the dataset is one contiguous block (`read_grid`), staying [B, D, H*W] until Batch.to transposes it on
the device; boxes padded (`read_padded`). With data.preload ram or device the dataset is read once
into one contiguous array, checked for non-finite values (vqa.data.reading.load_checked), and a batch
is one indexed copy from it (np.take); `on_device` holds that array on the accelerator.

The HDF5 file is opened lazily, once per process: an h5py handle must not cross a
fork into DataLoader workers (they would share one file descriptor and corrupt each
other's reads), so the handle is re-opened when the process id changes. This is the
trap pytorch-vqa documents for its own loader.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import h5py
import numpy as np

from vqa.data.reading import contiguous_span, load_checked, pread_into
from vqa.errors import UserError

# The layout (data/README.md): names the readers below look up and vqa/features/writer.py writes.
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


PRELOADS = (
    "none",
    "ram",
    "device",
)  # data.preload: read on demand, one array in RAM, that array on the device


class FeatureStore:
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
            if IDS not in f:
                raise UserError(f"{self.path}: no 'ids' dataset; expected the layout in data/README.md")
            if f[IDS].dtype.kind not in "iu":
                raise UserError(
                    f"{self.path}: 'ids' holds {f[IDS].dtype} values, not integers (image ids would be cut); "
                    "regenerate the file (vqa extract / vqa convert write int64 ids)"
                )
            ids = f[IDS][()].astype(np.int64)
            if NAMES in f:  # version 2: images keyed by file name
                names = f[NAMES].asstr()[()]
                if len(ids) and (ids.min() < 0 or ids.max() >= len(names)):
                    raise UserError(f"{self.path}: 'ids' point outside 'names'; the file is corrupt")
                self.index = {names[i]: row for row, i in enumerate(ids.tolist())}
            else:
                self.index = {int(i): row for row, i in enumerate(ids)}
            if len(self.index) != len(ids):
                raise UserError(f"{self.path}: 'ids' holds duplicate image ids; the file is corrupt")
            if kind == "grid":
                self.key = next((k for k in GRID_KEYS if k in f), None)
                if self.key is None:
                    raise UserError(
                        f"{self.path}: no grid features ('grid' or 'features'); set data.features: boxes"
                    )
                shape = f[self.key].shape
                if len(shape) != 4 or shape[0] != len(ids):
                    raise UserError(
                        f"{self.path}: '{self.key}' has shape {shape}; expected (N, D, H, W) with N = len(ids)"
                    )
                self.dim, self.max_regions = shape[1], shape[2] * shape[3]
                self.pos_boxes = None
            elif kind == "boxes":
                if IMAGE_FEATURES not in f:
                    raise UserError(
                        f"{self.path}: no 'image_features' (region boxes); set data.features: grid"
                    )
                self.key = IMAGE_FEATURES
                shape = f[self.key].shape
                self.dim = shape[-1]
                if POS_BOXES in f:  # adaptive: flat rows, [start, end) per image
                    self.pos_boxes = f[POS_BOXES][()].astype(np.int64)
                    if self.pos_boxes.shape != (len(ids), 2) or len(shape) != 2:
                        raise UserError(
                            f"{self.path}: 'pos_boxes' {self.pos_boxes.shape} does not match 'ids'/'image_features'"
                        )
                    self.max_regions = int((self.pos_boxes[:, 1] - self.pos_boxes[:, 0]).max(initial=0))
                else:  # fixed K boxes per image
                    if len(shape) != 3 or shape[0] != len(ids):
                        raise UserError(
                            f"{self.path}: 'image_features' has shape {shape}; expected (N, K, D) or flat with pos_boxes"
                        )
                    self.pos_boxes = None
                    self.max_regions = shape[1]
            else:
                raise UserError(f"data.features is '{kind}'; choose grid or boxes")
            self.dtype = f[self.key].dtype
            # plain reads at row offsets (`read_grid`) for a contiguous grid; boxes go through h5py
            self._span = contiguous_span(f[self.key], self.path.stat().st_size) if kind == "grid" else None
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._raw, self._raw_pid = None, None  # the file for plain reads of a contiguous grid (`read_grid`)
        self._ram: np.ndarray | None = None  # data.preload ram / device: the whole dataset, checked
        self._device: dict = {}  # torch.device -> the preloaded array there (`on_device`)
        if preload != "none":
            with h5py.File(self.path, "r") as f:
                self._ram = load_checked(self.path, f[self.key], self._image_of_row)

    def _image_of_row(self, row: int) -> str:
        """'image <key>' of row `row` of the feature dataset (a flat box row: the image whose boxes hold it)."""
        if self.pos_boxes is not None:
            owners = np.flatnonzero((self.pos_boxes[:, 0] <= row) & (row < self.pos_boxes[:, 1]))
            if not len(owners):
                return "a box row of no image"
            row = int(owners[0])
        key = next(itertools.islice(self.index, row, None), None)  # the index is in row order
        return f"image {key!r}" if isinstance(key, str) else f"image {key}"

    def __contains__(self, key: int | str) -> bool:
        return key in self.index

    def _dataset(self):
        if self._ram is not None:
            return self._ram
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")  # one handle per process (see module docstring)
            self._pid = os.getpid()
        return self._file[self.key]

    def _plain(self):
        """The file opened for plain reads (`read_grid`), once per process like the h5py handle."""
        if self._raw is None or self._raw_pid != os.getpid():
            self._raw = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open for the store's life
            self._raw_pid = os.getpid()
        return self._raw

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

        A preloaded array is gathered by one indexed copy straight into `out` (np.take); a contiguous,
        unfiltered dataset (ours and the public grid files) is read with one plain read per row, in file
        order, straight into the batch (about 3x less CPU than h5py's selection machinery); other storage
        in one sorted h5py read of the distinct rows. No transpose here: Batch.to does it on the device,
        in the copy that makes float32."""
        rows, at = np.asarray(rows, np.int64), np.asarray(at, np.int64)
        if self._ram is not None:
            block = self._ram.reshape(len(self._ram), out.shape[1], -1)  # [N, D, H*W], a view
            target = _slice_of(out, at)
            if target is not None and target.dtype == block.dtype:
                np.take(block, rows, axis=0, out=target, mode="clip")  # clip: no buffered copy of the output
            else:
                out[at] = block[rows]
            return
        if self._span is not None and out.dtype == self.dtype:
            offset, row_bytes = self._span
            fd = self._plain().fileno()
            order = np.argsort(rows, kind="stable")
            for r, i in zip(rows[order].tolist(), at[order].tolist()):
                if pread_into(fd, out[i], offset + r * row_bytes) != row_bytes:
                    raise UserError(
                        f"{self.path}: row {r} of '{self.key}' is cut short; the file is truncated"
                    )
            return
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py reads increasing, distinct rows
        block = self._dataset()[unique]  # [U, D, H, W]
        out[at] = block.reshape(len(unique), block.shape[1], -1)[inverse]

    def regions(self, rows: np.ndarray) -> np.ndarray:
        """int64 [B]: the regions of each of these rows (H*W of a grid, K of fixed boxes)."""
        if self.pos_boxes is None:
            return np.full(len(rows), self.max_regions, np.int64)
        span = self.pos_boxes[np.asarray(rows, np.int64)]  # [B, 2]
        return span[:, 1] - span[:, 0]

    def read_padded(self, rows: np.ndarray, out: np.ndarray, at: np.ndarray) -> None:
        """out[at[i], :n_i] = the [n_i, D] features of row rows[i], out[at[i], n_i:] = 0: a padded batch
        [B, N, D] (boxes, or grids of unequal sizes). Preloaded boxes are gathered by one indexed copy;
        otherwise each distinct row is read once, in one sorted call (`get_rows`)."""
        rows, at = np.asarray(rows, np.int64), np.asarray(at, np.int64)
        if self._ram is not None and self.kind == "boxes":
            n = out.shape[1]
            index, valid = self.box_index(rows, n)  # [B, n]
            flat = self._ram if self.pos_boxes is not None else self._ram.reshape(-1, self.dim)
            target = _slice_of(out, at)
            direct = target is not None and target.dtype == flat.dtype
            if not direct:
                target = np.empty((len(rows), n, self.dim), flat.dtype)
            np.take(flat, index, axis=0, out=target, mode="clip")
            target[~valid] = 0
            if not direct:
                out[at] = target
            return
        unique, inverse = np.unique(rows, return_inverse=True)
        features = self.get_rows(unique)  # [n_u, D] each
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
        """Ask the kernel to start reading these grid rows (posix_fadvise WILLNEED: asynchronous, one call
        per row), so a later `read_grid` finds them in the page cache (vqa.data.loader.ReadAhead hints
        each batch once, ahead of its read); nothing for other storage."""
        if self._ram is not None or self._span is None or not hasattr(os, "posix_fadvise"):
            return
        offset, row_bytes = self._span
        fd = self._plain().fileno()
        for r in np.unique(rows).tolist():
            os.posix_fadvise(fd, offset + r * row_bytes, row_bytes, os.POSIX_FADV_WILLNEED)

    def get_rows(self, rows: np.ndarray) -> list[np.ndarray]:
        """get_row for several rows: grid rows in one sorted h5py read (one call, not one per image)."""
        if self.kind != "grid" or self._ram is not None or len(rows) < 2:
            return [self.get_row(int(r)) for r in rows]
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py reads increasing, distinct rows
        block = self._dataset()[unique]  # [U, D, H, W]
        return [self._cells(block[i]) for i in inverse.tolist()]

    @staticmethod
    def _cells(x: np.ndarray) -> np.ndarray:
        """[D, H, W] -> [H*W, D], same dtype. torch's transposing copy is ~2x faster than numpy's
        here, the costliest line of the input pipeline for grid features (make bench: pipeline)."""
        import torch  # here: `vqa convert` imports this module's layout names without torch

        return torch.from_numpy(np.ascontiguousarray(x).reshape(x.shape[0], -1)).T.contiguous().numpy()

    def __getstate__(self):  # pickled into workers: drop the open handle
        state = self.__dict__.copy()
        state["_file"], state["_pid"], state["_raw"], state["_raw_pid"] = None, None, None, None
        state["_device"] = {}  # workers never touch the device copies
        return state


def _slice_of(out: np.ndarray, at: np.ndarray) -> np.ndarray | None:
    """out[at] as a view when `at` is a run of consecutive rows (one store's batch), else None."""
    if len(at) and at[-1] - at[0] == len(at) - 1 and (len(at) < 3 or (np.diff(at) == 1).all()):
        return out[int(at[0]) : int(at[-1]) + 1]
    return None

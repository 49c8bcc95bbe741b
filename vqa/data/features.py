"""HDF5 image-feature store: grid or region boxes, indexed by image id.

Layouts read (data/README.md documents them):
- ours (`vqa synth`, `vqa extract`, `vqa convert`): `ids` (N,), `grid` (N, D, S, S),
  flat adaptive boxes `image_features` (R, D) + `image_bb` (R, 4) + `pos_boxes` (N, 2).
  Version 2 adds `names` (M,) for images keyed by file name (VizWiz): `ids` then index `names`.
- the public ResNet grid layout: `features` (N, D, H, W) + `ids` (N,).
- fixed boxes: `image_features` (N, K, D) + `ids`.

A store is keyed by image key: the COCO id, or the file name in a version-2 file. A split's
images may live in several files (VQA-CP names train2014 or val2014 per question): ImageFeatures
resolves every image of the split to (file, row) once, up front, so reading is array lookups.

Every vector comes back as [regions, D] in the file's dtype (float16 in ours): a grid is flattened to
N = H*W. A batch of grid rows is read by plain reads at their file offsets where the dataset is one
contiguous block (`read_grid`), and stays [B, D, H*W] until Batch.to transposes it on the device.

The HDF5 file is opened lazily, once per process: an h5py handle must not cross a
fork into DataLoader workers (they would share one file descriptor and corrupt each
other's reads), so the handle is re-opened when the process id changes. This is the
trap pytorch-vqa documents for its own loader.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

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


def contiguous_span(ds: h5py.Dataset, file_size: int) -> tuple[int, int] | None:
    """(file offset, bytes per row) of a dataset stored as one block of native,
    unfiltered values that plain reads can address (ours and the public grid files are), else None:
    chunked, compressed, external or not yet allocated storage is read through h5py."""
    if ds.chunks is not None or ds.external or not ds.dtype.isnative or ds.dtype.kind != "f" or not ds.shape:
        return None
    offset = ds.id.get_offset()
    row_bytes = ds.dtype.itemsize * int(np.prod(ds.shape[1:]))
    if offset is None or offset + row_bytes * ds.shape[0] > file_size:
        return None
    return offset, row_bytes


def _pread_into(fd: int, buffer: np.ndarray, offset: int) -> int:
    """Bytes read from `offset` of `fd` into the C-contiguous `buffer` until it is full or the file ends
    (os.preadv: one system call, no copy; a seek and readinto where the platform lacks it)."""
    view, done = memoryview(buffer).cast("B"), 0
    while done < len(view):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[done:]], offset + done)
        else:
            os.lseek(fd, offset + done, os.SEEK_SET)
            n = os.readv(fd, [view[done:]])
        if n == 0:
            break
        done += n
    return done


class FeatureStore:
    def __init__(self, path: str | Path, kind: str = "grid", preload: str = "none"):
        self.path = Path(path)
        self.kind = kind
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
        self._ram: np.ndarray | None = None
        if preload == "ram":
            with h5py.File(self.path, "r") as f:
                self._ram = f[self.key][()]

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
        """out[at[i]] = grid row rows[i] as stored, [D, H*W]: for a batch (`ImageFeatures.grid_batch`).

        A contiguous, unfiltered dataset (ours and the public grid files) is read with one plain read per
        row, in file order, straight into the batch (about 3x less CPU than h5py's selection machinery);
        other storage in one sorted h5py read of the distinct rows. No transpose here: Batch.to does it
        on the device, in the copy that makes float32."""
        rows, at = np.asarray(rows, np.int64), np.asarray(at, np.int64)
        if self._ram is None and self._span is not None and out.dtype == self.dtype:
            offset, row_bytes = self._span
            fd = self._plain().fileno()
            order = np.argsort(rows, kind="stable")
            for r, i in zip(rows[order].tolist(), at[order].tolist()):
                if _pread_into(fd, out[i], offset + r * row_bytes) != row_bytes:
                    raise UserError(f"{self.path}: row {r} of '{self.key}' is cut short; the file is truncated")
            return
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py reads increasing, distinct rows
        block = self._dataset()[unique]  # [U, D, H, W]
        out[at] = block.reshape(len(unique), block.shape[1], -1)[inverse]

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
        return state


class ImageFeatures:
    """The features of a split's images, by their row in the split's image table (Records.image).

    Every image is resolved to (store, row) here, once, so that a DataLoader worker reads with two
    array lookups and never touches a Python key; each feature file is opened by one FeatureStore.
    """

    def __init__(self, stores: list[FeatureStore], store: np.ndarray, row: np.ndarray):
        self.stores, self.store, self.row = stores, store, row  # int8 [I], int64 [I]
        first = stores[0]
        self.path, self.kind, self.dim = first.path, first.kind, first.dim
        self.max_regions = max(s.max_regions for s in stores)

    @classmethod
    def resolve(cls, stores: dict[str, FeatureStore], records, split: str) -> ImageFeatures:
        """Each image of `records` (vqa.data.sources.Records) in the store of its image folder; a
        UserError names the first image without features and how many questions lack them."""
        names = list(stores)
        which = np.array([names.index(g) for g in records.groups], np.int8)[records.image_group]  # [I]
        row = np.full(len(records.image_keys), -1, np.int64)
        for s, name in enumerate(names):
            index = stores[name].index
            mine = np.flatnonzero(which == s)
            row[mine] = [index.get(k, -1) for k in records.image_keys[mine].tolist()]
        missing = np.flatnonzero(row[records.image] < 0)  # questions whose image has no features
        if len(missing):
            i = int(missing[0])
            store = stores[names[which[records.image[i]]]]
            raise UserError(
                f"{store.path}: {records.describe(i)} has no features "
                f"({len(missing):,} questions affected); extract features for every image of split '{split}'"
            )
        return cls([stores[n] for n in names], which, row)

    def get(self, image: int) -> np.ndarray:
        """Features of image `image` of the split's table, [regions, D] in the file's dtype."""
        return self.stores[self.store[image]].get_row(int(self.row[image]))

    def grid_batch(self, images: np.ndarray):
        """The grid features of a batch's images (one per question, repeats allowed) as one tensor
        [B, H*W, D] in the files' dtype, or None when the stores' grids differ in size (then `get_many`).

        Each store reads its rows straight into the batch (`FeatureStore.read_grid`). The tensor is a
        transposed view of [B, D, H*W]: the transpose, the costliest step of a grid batch when done per
        image, happens in Batch.to on the device, in the copy that makes float32."""
        import torch  # here: `vqa convert` imports this module's layout names without torch
        import torch.utils.data

        if self.kind != "grid" or any(s.max_regions != self.max_regions for s in self.stores):
            return None
        images = np.asarray(images, np.int64)
        dtype = np.result_type(*(s.dtype for s in self.stores))
        shape = (len(images), self.dim, self.max_regions)  # [B, D, H*W]
        if torch.utils.data.get_worker_info() is None:
            batch = torch.from_numpy(np.empty(shape, dtype))
        else:  # in a worker: read straight into shared memory, as torch's default_collate stacks there,
            # so the batch is not copied again on its way to the trainer
            empty = torch.from_numpy(np.empty(0, dtype))
            batch = empty.new(empty._typed_storage()._new_shared(int(np.prod(shape)))).view(shape)
        out = batch.numpy()
        which = self.store[images]
        for s in np.unique(which).tolist():
            at = np.flatnonzero(which == s)
            self.stores[s].read_grid(self.row[images[at]], out, at)
        return batch.transpose(1, 2)

    def will_need(self, images: np.ndarray) -> None:
        """`FeatureStore.will_need` for the rows of these images (grid stores read by plain reads)."""
        images = np.asarray(images, np.int64)
        which = self.store[images]
        for s in np.unique(which).tolist():
            self.stores[s].will_need(self.row[images[which == s]])

    def get_many(self, images: list[int]) -> dict[int, np.ndarray]:
        """{image: features} for a batch's distinct images, each store read once with sorted rows."""
        images = np.unique(np.asarray(images, np.int64))
        out: dict[int, np.ndarray] = {}
        for s in np.unique(self.store[images]).tolist():
            mine = images[self.store[images] == s]
            out.update(zip(mine.tolist(), self.stores[s].get_rows(self.row[mine])))
        return out

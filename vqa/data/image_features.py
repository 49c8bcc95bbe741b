"""The features of a split's images: every image resolved to (feature file, row) once, batches read by rows.

A split's images may live in several files (VQA-CP names train2014 or val2014 per question); each file is
one vqa.data.features.FeatureStore, and ImageFeatures reads a batch from each store in one pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vqa.errors import UserError

if TYPE_CHECKING:
    from vqa.data.features import FeatureStore


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
        # a batch's features are a grid stored as in the files, [B, D, H*W] (every store's grid of one
        # size), or else padded regions [B, N, D] with a mask
        self.grid = self.kind == "grid" and all(s.max_regions == self.max_regions for s in stores)

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

    @property
    def dtype(self) -> np.dtype:
        return np.result_type(*(s.dtype for s in self.stores))

    @property
    def preload(self) -> str:
        return self.stores[0].preload

    def regions(self, images: np.ndarray) -> np.ndarray:
        """int64 [B]: the regions of each of these images."""
        if self.grid:
            return np.full(len(images), self.max_regions, np.int64)
        images = np.asarray(images, np.int64)
        out = np.empty(len(images), np.int64)
        which = self.store[images]
        for s in np.unique(which).tolist():
            at = np.flatnonzero(which == s)
            out[at] = self.stores[s].regions(self.row[images[at]])
        return out

    def read_into(self, images: np.ndarray, image: np.ndarray, mask: np.ndarray) -> None:
        """The features of a batch's images (one per question, repeats allowed) written into `image` and
        `mask` (a Batch's buffers, fresh or reused): with `grid`, as stored, [B, D, H*W] (a transposed
        view of the Batch's [B, H*W, D]: Batch.to transposes on the device, in the copy that makes
        float32); otherwise padded [B, N, D] with `mask` [B, N] true on the real regions. Each store
        reads its rows straight into the batch (`FeatureStore.read_grid` / `read_padded`)."""
        images = np.asarray(images, np.int64)
        which = self.store[images]
        for s in np.unique(which).tolist():
            at = np.flatnonzero(which == s)
            read = self.stores[s].read_grid if self.grid else self.stores[s].read_padded
            read(self.row[images[at]], image, at)
        np.less(np.arange(mask.shape[1]), self.regions(images)[:, None], out=mask)

    def will_need(self, images: np.ndarray) -> None:
        """`FeatureStore.will_need` for the rows of these images (contiguous grid stores, read from their memory map)."""
        images = np.asarray(images, np.int64)
        which = self.store[images]
        for s in np.unique(which).tolist():
            self.stores[s].will_need(self.row[images[which == s]])

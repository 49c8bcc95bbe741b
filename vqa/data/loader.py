"""The DataLoader of a VQADataset: resumable epoch order, evaluation shards, and read-ahead.

`build_loader` gives batches in the order of an `EpochSampler` (training: fixed by (seed, epoch), resumable
mid-epoch, optionally grouped by image) or a `ShardSampler` (evaluation: every question once); a
`ReadAhead` batch sampler hints each next batch's feature rows to the kernel while the model trains.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    Sampler,
    SequentialSampler,
    get_worker_info,
)

from vqa.data.buffers import Layout, Ring
from vqa.data.dataset import Batch, VQADataset

# data.sampler: questions in a random order, or shuffled images with their questions together
SAMPLERS = ("random", "image_grouped")


class EpochSampler(DistributedSampler):
    """torch's DistributedSampler (one replica when not distributed) that can resume mid-epoch.

    The order of an epoch depends only on (seed, epoch), as in DistributedSampler, so a
    resumed run sees exactly the batches the uninterrupted run would: `start` skips the
    samples this rank already consumed. With `group_by_image`, images are shuffled and
    their questions kept together, and each rank takes a contiguous chunk, so a batch
    holds several questions of the same image and its features are read once.
    """

    def __init__(
        self,
        dataset: VQADataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        group_by_image: bool = False,
    ):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.group_by_image = group_by_image and shuffle
        self.image_id = dataset.image_id
        self.start = 0

    def _grouped(self) -> list[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        images, inverse = np.unique(self.image_id, return_inverse=True)
        order = torch.randperm(len(images), generator=g).numpy()
        rank_of_image = np.empty_like(order)
        rank_of_image[order] = np.arange(len(order))
        indices = np.argsort(rank_of_image[inverse], kind="stable").tolist()
        indices += indices[: self.total_size - len(indices)]  # pad like DistributedSampler
        return indices[self.rank * self.num_samples : (self.rank + 1) * self.num_samples]

    def __iter__(self):
        indices = self._grouped() if self.group_by_image else list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler):
    """Evaluation order: rank r takes samples r, r + world, ... in order; every sample exactly once."""

    def __init__(self, n: int, world: int = 1, rank: int = 0):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class ReadAhead(Sampler):
    """The batches of `batches` (index lists), telling `dataset` about each one batch ahead
    (VQADataset.will_need; the first before it is handed out): the disk fetches a batch's features while
    the model trains on the one before."""

    def __init__(self, batches: BatchSampler, dataset: VQADataset):
        self.batches, self.dataset = batches, dataset

    def __iter__(self):
        it = iter(self.batches)
        current = next(it, None)
        if current is not None:
            self.dataset.will_need(current)
        while current is not None:
            following = next(it, None)
            if following is not None:
                self.dataset.will_need(following)
            yield current
            current = following

    def __len__(self) -> int:
        return len(self.batches)


def as_batch(data: Batch | Filled) -> Batch | Filled:
    """The loaders' collate_fn: the dataset's __getitems__ has made the whole batch already (a Batch, or
    the ring slot a FillDataset filled)."""
    return data


PREFETCH = 2  # batches in flight per DataLoader worker (torch's prefetch_factor)
HOLD = 1  # further batches a consumer of a RingLoader may take while it still reads a batch


class Filled(NamedTuple):
    """What a FillDataset hands back for a batch: where it lies, not the batch itself."""

    producer: int  # the DataLoader worker (0 in the main process)
    slot: int
    size: int  # questions
    regions: int
    images: np.ndarray | None  # int64 [B] rows of the split's image table, where the image is not filled


class FillDataset(Dataset):
    """`dataset`'s batches written into the next slot of the producer's ring (VQADataset.fill); the ring
    is set before the DataLoader starts its workers, which inherit it."""

    def __init__(self, dataset: VQADataset, layout: Layout, image: bool):
        self.dataset, self.layout, self.image = dataset, layout, image
        self.ring: Ring | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices: list[int]) -> Filled:
        info = get_worker_info()
        producer = 0 if info is None else info.id
        slot = self.ring.take(producer)
        batch = self.dataset.fill(indices, lambda b, n: self.ring.views(producer, slot, b, n), self.image)
        images = None if self.image else self.dataset.image[np.asarray(indices, np.int64)].astype(np.int64)
        return Filled(producer, slot, batch.question.shape[0], batch.image_mask.shape[1], images)

    def start_worker(self, worker: int) -> None:
        """DataLoader's worker_init_fn: the worker maps its ring before its first batch."""
        self.ring.fault_in(worker)


class HostBatch(NamedTuple):
    batch: Batch  # views of `buffer`
    buffer: torch.Tensor  # the ring slot, uint8
    used: int  # bytes of `buffer` the batch occupies, from its start
    images: np.ndarray | None  # as in Filled


class RingLoader:
    """The batches of a DataLoader over `dataset`, assembled in reused buffers: a ring of
    PREFETCH + 1 + HOLD slots per worker in shared memory (one ring of 1 + HOLD in the process without
    workers), allocated at the first iteration, so no batch is allocated, faulted in or sent again.

    Lifetime: a HostBatch's buffer stays valid while the consumer takes HOLD more batches from the same
    iterator (a worker has at most PREFETCH batches in flight beyond the one the consumer reads, so its
    next write goes to a slot the consumer is done with); it may be overwritten after that, or once a new
    iterator starts. Copy what must live longer (vqa.data.feed.DeviceFeed moves every batch to the device
    before it takes the next). `image` False: only the question and answer fields are filled (the image is
    gathered on the device: data.preload: device)."""

    def __init__(
        self,
        dataset: VQADataset,
        batch_size: int,
        sampler: Sampler | None = None,
        num_workers: int = 0,
        image: bool = True,
    ):
        self.dataset, self.num_workers = dataset, num_workers
        self.layout = dataset.layout(batch_size, image)
        self.fill = FillDataset(dataset, self.layout, image)
        self.loader = DataLoader(
            self.fill,
            batch_sampler=ReadAhead(
                BatchSampler(sampler or SequentialSampler(dataset), batch_size, False), dataset
            ),
            num_workers=num_workers,
            collate_fn=as_batch,
            worker_init_fn=self.fill.start_worker if num_workers else None,
            persistent_workers=num_workers > 0,
            prefetch_factor=PREFETCH if num_workers else None,
            generator=torch.Generator().manual_seed(0),
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[HostBatch]:
        if self.fill.ring is None:  # before the first iteration starts the workers: they inherit it
            slots = (PREFETCH if self.num_workers else 0) + 1 + HOLD
            self.fill.ring = Ring(self.layout, max(1, self.num_workers), slots, shared=self.num_workers > 0)
            if not self.num_workers:
                self.fill.ring.fault_in(0)
        ring = self.fill.ring
        for f in self.loader:
            batch = Batch(**ring.views(f.producer, f.slot, f.size, f.regions))
            used = self.layout.used(f.size, f.regions)
            yield HostBatch(batch, ring.buffers[f.producer][f.slot], used, f.images)

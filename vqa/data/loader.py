"""The DataLoader of a VQADataset: resumable epoch order, evaluation shards, and read-ahead.

`build_loader` gives batches in the order of an `EpochSampler` (training: fixed by (seed, epoch), resumable
mid-epoch, optionally grouped by image) or a `ShardSampler` (evaluation: every question once); a
`ReadAhead` batch sampler hints each next batch's feature rows to the kernel while the model trains.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler, SequentialSampler

from vqa.data.dataset import Batch, VQADataset, collate


class EpochSampler(DistributedSampler):
    """torch's DistributedSampler (one replica when not distributed) that can resume mid-epoch.

    The order of an epoch depends only on (seed, epoch), as in DistributedSampler, so a
    resumed run sees exactly the batches the uninterrupted run would: `start` skips the
    samples this rank already consumed. With `group_by_image`, images are shuffled and
    their questions kept together, and each rank takes a contiguous chunk, so a batch
    holds several questions of the same image and its features are read once.
    """

    def __init__(self, dataset: VQADataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, group_by_image: bool = False):  # fmt: skip
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


def as_batch(data: Batch | list[tuple]) -> Batch:
    """The loader's collate_fn: VQADataset.__getitems__ has already collated the batch."""
    return data if isinstance(data, Batch) else collate(data)


def build_loader(
    dataset: VQADataset,
    batch_size: int,
    sampler: Sampler | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of `dataset` in the order of `sampler` (sequential when None), collated into a Batch.

    The loader gets its own generator: creating an iterator draws a worker base seed from
    it, and drawing from the global RNG instead would shift dropout masks after a resume.
    """
    return DataLoader(
        dataset,
        batch_sampler=ReadAhead(
            BatchSampler(sampler or SequentialSampler(dataset), batch_size, False), dataset
        ),
        num_workers=num_workers,
        collate_fn=as_batch,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(0),
    )

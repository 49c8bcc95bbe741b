"""Batches onto the device: from the reused host buffers of a RingLoader, through reused pinned buffers
on CUDA, or gathered on the device itself from features held there (data.preload: device).

The trainer's loaders are DeviceFeeds (vqa.data.build.build_loaders with the run's device): each batch
comes out as Batch.to gives it (the image float32 [B, N, D], contiguous; question_len and question_id on
the host), in memory of its own, so the consumer may keep it (gradient accumulation holds several).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler, SequentialSampler

from vqa.data.buffers import allocate
from vqa.data.dataset import Batch, VQADataset
from vqa.data.image_features import ImageFeatures
from vqa.data.loader import HostBatch, ReadAhead, RingLoader, as_batch
from vqa.errors import UserError

# bytes of the device's free memory that data.preload: device leaves to the model and its activations
RESERVE = 2 << 30


def query_free_bytes(device: torch.device) -> int | None:
    """Free bytes on `device` (CUDA), or None where the preloaded features take nothing more (the CPU:
    they stay the RAM array) or the free memory is unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return None


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


class DeviceFeatures:
    """A split's preloaded features held on `device` (each store's array copied there once: FeatureStore.
    on_device, shared by the splits that read the same file) and batches gathered there by index: the host
    computes only the indices. Refuses, naming the sizes, when they do not fit the device's free memory
    (`free_bytes`, injectable: default `query_free_bytes`) with RESERVE left over."""

    def __init__(
        self,
        features: ImageFeatures,
        device: torch.device,
        free_bytes: Callable[[torch.device], int | None] | None = None,
    ):
        self.features, self.device = features, device
        stores = list({id(s): s for s in features.stores}.values())
        need = sum(s.device_bytes(device) for s in stores)
        free = (free_bytes or query_free_bytes)(device) if need else None
        if free is not None and need + RESERVE > free:
            files = ", ".join(str(s.path) for s in stores)
            raise UserError(
                f"{files}: data.preload: device needs {_gib(need)} on {device} for the features but {_gib(free)} "
                f"is free and {_gib(RESERVE)} stays for the model; set data.preload: ram (or none)"
            )
        self.tensors = [s.on_device(device) for s in features.stores]

    def gather(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, mask) of a batch's images on the device, as a host batch holds them: a grid [B, H*W, D]
        as the transposed view of [B, D, H*W]; boxes [B, N, D] zero-padded, N the batch's most regions."""
        f, images = self.features, np.asarray(images, np.int64)
        which, rows = f.store[images], f.row[images]
        b = len(images)
        n = f.max_regions if f.grid else int(f.regions(images).max(initial=0))
        shape = (b, f.dim, n) if f.grid else (b, n, f.dim)
        dtype = self.tensors[0].dtype
        image = None
        for s in np.unique(which).tolist():
            at = np.flatnonzero(which == s)
            part = self._part(s, rows[at], n)
            if len(at) == b:
                image = part
                break
            if image is None:
                image = torch.empty(shape, dtype=dtype, device=self.device)
            image[self._to(at)] = part.to(dtype)
        if f.grid:
            return image.transpose(1, 2), torch.ones((b, n), dtype=torch.bool, device=self.device)
        mask = np.arange(n) < f.regions(images)[:, None]
        return image, self._to(mask)

    def _part(self, s: int, rows: np.ndarray, n: int) -> torch.Tensor:
        """Store s's features of `rows`: a grid [b, D, H*W], boxes [b, n, D] zero-padded."""
        store, t = self.features.stores[s], self.tensors[s]
        if self.features.grid:
            return t.view(len(t), store.dim, -1).index_select(0, self._to(rows))
        index, valid = store.box_index(rows, n)  # [b, n] rows of the flat box array
        part = t.view(-1, store.dim)[self._to(index)]  # [b, n, D]
        return part.masked_fill_(~self._to(valid)[..., None], 0)

    def _to(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device, non_blocking=True)


class Staging:
    """Reused pinned buffers between a RingLoader's slots and a CUDA device, used in turn: a batch is one
    memcpy into the next buffer (once its previous copy to the device has finished: an event) and one
    asynchronous copy of those bytes to fresh device memory (the caching allocator's)."""

    def __init__(self, nbytes: int, device: torch.device, count: int = 2):
        self.device = device
        self.buffers = [allocate(nbytes, "pinned") for _ in range(count)]
        self.events: list = [None] * count
        self.turn = 0

    def copy(self, host: HostBatch) -> torch.Tensor:
        """The bytes of `host`'s batch on the device (uint8); the host slot is free again on return."""
        i, self.turn = self.turn, (self.turn + 1) % len(self.buffers)
        if self.events[i] is not None:
            self.events[i].synchronize()
        pinned = self.buffers[i][: host.used]
        pinned.copy_(host.buffer[: host.used])
        out = pinned.to(self.device, non_blocking=True)
        self.events[i] = torch.cuda.Event()
        self.events[i].record(torch.cuda.current_stream(self.device))
        return out


class DeviceFeed:
    """The batches of a RingLoader moved to `device` before the next is taken (so its ring slots are free
    again at once): on CUDA through Staging, elsewhere by copying the small fields out of the slot and
    converting the image; with `gather`, the image gathered on the device instead of read on the host."""

    def __init__(self, loader: RingLoader, device: torch.device, gather: DeviceFeatures | None = None):
        self.loader, self.device, self.gather = loader, device, gather
        self.staging: Staging | None = None

    @classmethod
    def build(
        cls,
        dataset: VQADataset,
        batch_size: int,
        sampler: Sampler | None,
        num_workers: int,
        device: torch.device,
        free_bytes: Callable | None = None,
    ) -> DeviceFeed:
        """The feed of `dataset` (vqa.data.feed.build_loader with a device)."""
        gather = None
        if dataset.features.preload == "device":
            gather = DeviceFeatures(dataset.features, device, free_bytes)
        return cls(
            RingLoader(dataset, batch_size, sampler, num_workers, image=gather is None), device, gather
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        if self.staging is None and self.device.type == "cuda":
            self.staging = Staging(self.loader.layout.nbytes, self.device)
        for host in self.loader:
            yield self.move(host)

    def move(self, host: HostBatch) -> Batch:
        """`host`'s batch on the device, in memory of its own."""
        b = host.batch
        if self.staging is not None:
            size, regions = b.question.shape[0], b.image_mask.shape[1]
            on = Batch(**self.loader.layout.views(self.staging.copy(host), size, regions))
            on = on._replace(question_len=b.question_len.pin_memory(), question_id=b.question_id.clone())
        else:
            on = Batch(*(t if name == "image" else t.clone() for name, t in zip(b._fields, b)))
        if self.gather is not None:
            image, mask = self.gather.gather(host.images)
            on = on._replace(image=image, image_mask=mask)
        moved = on.to(self.device, non_blocking=True)
        still_the_slot = moved.image.numel() and moved.image.data_ptr() == b.image.data_ptr()  # float32 files
        if still_the_slot:
            moved = moved._replace(image=moved.image.clone())
        return moved


def build_loader(
    dataset: VQADataset,
    batch_size: int,
    sampler: Sampler | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    device: torch.device | None = None,
    free_bytes: Callable[[torch.device], int | None] | None = None,
) -> DataLoader | DeviceFeed:
    """Batches of `dataset` in the order of `sampler` (sequential when None), collated into a Batch.

    With `device` (training and validation): a DeviceFeed, batches on `device` as Batch.to gives them,
    assembled in reused buffers (RingLoader) and moved through reused pinned buffers on CUDA; with
    data.preload: device the features are held there and gathered by index (`free_bytes`: the device's
    free bytes, default vqa.data.feed.query_free_bytes; refused in one line when they do not fit). Without:
    a DataLoader of fresh host batches in the files' dtype (`pin_memory`: pinned), each the consumer's
    to keep (`vqa predict`, tests).

    The loader gets its own generator: creating an iterator draws a worker base seed from
    it, and drawing from the global RNG instead would shift dropout masks after a resume.
    """
    if device is not None:
        return DeviceFeed.build(dataset, batch_size, sampler, num_workers, device, free_bytes)
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

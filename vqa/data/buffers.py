"""Batch buffers: every field of a Batch in one allocation, and rings of them that are filled again and again.

A `Layout` places the fields of a batch of at most `batch` questions and `regions` regions in one flat
byte buffer (the small fields first, the image last, each at a fixed offset), so that a batch is one
block of memory: a fresh one is one allocation instead of nine, and a reused one is copied on by one
memcpy (`vqa.data.feed`). A `Ring` holds a few such buffers per producer (each DataLoader worker, or the
main process), allocated once, in shared memory where workers fill them: a worker writes its batches
into its slots in turn and hands the main process only the slot's number, so no batch is allocated,
faulted in, sent or unmapped again (vqa.data.loader.RingLoader says how long a slot stays valid).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

ALIGN = 64  # bytes: every field starts on a cache line


@dataclass(frozen=True)
class Layout:
    """Where each field of a batch lives in a flat uint8 buffer. `grid`: the image is stored as the files
    store it, [B, D, N], and the Batch holds its transposed view [B, N, D]; else [B, N, D] as is.
    `regions` 0: no image in the buffer (data.preload: device gathers it on the device)."""

    batch: int  # B at most
    length: int  # T, question tokens
    answers: int  # K, unique answers per question
    regions: int  # N at most
    dim: int  # D
    dtype: str  # numpy name of the image dtype (float16 in our files)
    grid: bool

    def _fields(self, b: int, n: int) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
        image_dtype = torch.from_numpy(np.empty(0, self.dtype)).dtype
        image_shape = (b, self.dim, n) if self.grid else (b, n, self.dim)
        return [
            ("question", torch.int64, (b, self.length)),
            ("question_len", torch.int64, (b,)),
            ("answer", torch.int64, (b,)),
            ("answer_idx", torch.int64, (b, self.answers)),
            ("answer_weight", torch.float32, (b, self.answers)),
            ("answer_score", torch.float32, (b, self.answers)),
            ("question_id", torch.int64, (b,)),
            ("question_type", torch.int64, (b,)),
            ("image_mask", torch.bool, (b, n)),
            ("image", image_dtype, image_shape),  # last: a smaller batch uses a prefix of the buffer
        ]

    @cached_property
    def _offsets(self) -> list[int]:
        """The byte offset of each field (for the largest batch), and the total size last."""
        offsets, at = [], 0
        for _, dtype, shape in self._fields(self.batch, self.regions):
            offsets.append(at)
            at += -(-int(np.prod(shape)) * dtype.itemsize // ALIGN) * ALIGN
        return [*offsets, at]

    @property
    def nbytes(self) -> int:
        return self._offsets[-1]

    def used(self, b: int, n: int) -> int:
        """Bytes from the start of the buffer to the end of the image of a batch of b questions, n regions."""
        *_, (_, dtype, shape) = self._fields(b, n)
        return self._offsets[-2] + int(np.prod(shape)) * dtype.itemsize

    def views(self, buffer: torch.Tensor, b: int, n: int) -> dict[str, torch.Tensor]:
        """The fields (`Batch(**views)`) of b questions with n regions in `buffer` (uint8, at least
        `used(b, n)` bytes, on any device): views, no copy."""
        if b > self.batch or n > self.regions:
            raise ValueError(
                f"a batch of {b} x {n} regions does not fit the layout's {self.batch} x {self.regions}"
            )
        fields = {}
        for (name, dtype, shape), at in zip(self._fields(b, n), self._offsets):
            size = int(np.prod(shape)) * dtype.itemsize
            fields[name] = buffer[at : at + size].view(dtype).view(shape)
        if self.grid:
            fields["image"] = fields["image"].transpose(1, 2)  # [B, N, D], a view of [B, D, N]
        return fields


def allocate(nbytes: int, where: str = "plain") -> torch.Tensor:
    """A uint8 buffer of `nbytes`: plain memory, shared memory (workers fill it, the main process reads
    it; torch moves a worker's plain tensors there anyway, with a copy) or pinned memory (CUDA copies from
    it run asynchronously)."""
    if where == "shared":
        return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes))
    if where == "pinned":
        return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    return torch.from_numpy(page_aligned(nbytes))


def page_aligned(nbytes: int) -> np.ndarray:
    """A uint8 numpy array of `nbytes` that starts on a page. numpy asks the kernel for transparent huge
    pages on large arrays (torch's allocator does not): fewer TLB misses make a batch's copy into it about
    20% faster (vqa bench --only loader). malloc's own start is 16 bytes past a page, so rows copied
    between it and a page-aligned buffer (shared memory, a file's memory map) would straddle cache lines:
    an np.take of 64 real-size rows from an aligned source into a buffer 16 bytes off ran at half the
    speed of one into an aligned buffer (scripts/pipeline_probe.py align, docs/performance.md)."""
    raw = np.empty(nbytes + mmap.PAGESIZE, np.uint8)
    start = -raw.ctypes.data % mmap.PAGESIZE
    return raw[start : start + nbytes]


def fresh(layout: Layout, b: int, n: int, shared: bool) -> dict[str, torch.Tensor]:
    """The fields of b questions and n regions in one new allocation of just their size (`shared`: in
    shared memory, for a batch a DataLoader worker hands to the main process)."""
    exact = Layout(b, layout.length, layout.answers, n, layout.dim, layout.dtype, layout.grid)
    return exact.views(allocate(exact.nbytes, "shared" if shared else "plain"), b, n)


class Ring:
    """`slots` buffers of `layout` for each of `producers` (DataLoader workers, or the main process alone),
    allocated once; each producer takes its slots in turn. The count of slots taken lives in the
    producer's own copy of the ring (each worker process has one), so producers never coordinate."""

    def __init__(self, layout: Layout, producers: int, slots: int, shared: bool):
        self.layout = layout
        where = "shared" if shared else "plain"
        self.buffers = [[allocate(layout.nbytes, where) for _ in range(slots)] for _ in range(producers)]
        self.taken = [0] * producers
        self._views: dict[tuple[int, int, int, int], dict[str, torch.Tensor]] = {}

    def fault_in(self, producer: int) -> None:
        """Touch one byte per page of the producer's slots, in the calling process: a process maps a
        shared buffer's pages on its first write to each (a worker after fork, too), so a ring not faulted
        in at start costs its first round of batches about as much as fresh buffers would."""
        for buffer in self.buffers[producer]:
            buffer[:: mmap.PAGESIZE].zero_()

    def take(self, producer: int) -> int:
        """The producer's next slot."""
        slot = self.taken[producer] % len(self.buffers[producer])
        self.taken[producer] += 1
        return slot

    def views(self, producer: int, slot: int, b: int, n: int) -> dict[str, torch.Tensor]:
        """Layout.views of a slot for b questions and n regions, made once and kept (making them costs
        about as much as a small batch's fields take to fill)."""
        key = (producer, slot, b, n)
        if key not in self._views:
            self._views[key] = self.layout.views(self.buffers[producer][slot], b, n)
        return self._views[key]

    @property
    def nbytes(self) -> int:
        return sum(b.numel() for slots in self.buffers for b in slots)

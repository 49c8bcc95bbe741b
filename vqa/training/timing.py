"""Timed training steps for the benchmarks: `vqa train`'s own loop (loop.train_one_epoch) with the
config's loss and optimizer, over batches a benchmark supplies. Besides the command line's
`fit.train_command` this is the one way into vqa.training: the benchmarks time the loop through it and
never reach into loop.py (tests/test_layering.py)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable

import torch

from vqa.config import Config
from vqa.data.dataset import Batch
from vqa.losses import get_loss
from vqa.training.loop import TrainState, train_one_epoch
from vqa.training.optim import build_optimizer


class Steps:
    """Training steps of `model` with `cfg`'s loss and optimizer (no schedule, no clipping), as `vqa
    train` takes them: each `run` is one train_one_epoch over the batches given."""

    def __init__(self, cfg: Config, model: torch.nn.Module, device: torch.device, precision: str = "fp32"):
        model.train()
        loss, optimizer = get_loss(cfg.train.loss), build_optimizer(cfg.train, model)
        self.state = TrainState(model, loss, optimizer, None, device, precision=precision)

    def run(self, batches: Iterable[Batch], count: int) -> int:
        """Train on the first `count` batches of `batches` (a loader iterator, a list, itertools.repeat);
        returns the samples trained, once the steps' kernels have run."""
        progress, _ = train_one_epoch(self.state, _Counted(batches, count), desc="bench")
        if self.state.device.type == "cuda":
            torch.cuda.synchronize(self.state.device)  # the steps' kernels have run, not just been launched
        return progress.samples

    def rate(self, batches: Iterable[Batch], count: int) -> float:
        """Samples per second of `run` (the fetch included when `batches` is a loader iterator)."""
        start = time.perf_counter()
        samples = self.run(batches, count)
        return samples / (time.perf_counter() - start)


class _Counted:
    """`count` batches of `batches`, with the length train_one_epoch asks for."""

    def __init__(self, batches: Iterable[Batch], count: int):
        self.batches, self.count = batches, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return itertools.islice(iter(self.batches), self.count)

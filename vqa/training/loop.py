"""One epoch of training: `train_one_epoch(state, loader, ...)` steps the optimizer over a loader,
resuming mid-epoch from an EpochState, and returns what it measured (validation is validation.py).
Under DDP every rank runs it on its own shard and the totals are combined by `epoch_totals`.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vqa.device import autocast
from vqa.errors import UserError
from vqa.training.distributed import SINGLE, Dist, all_sum


@dataclass
class TrainState:
    """What a training step needs; `step` (optimizer steps so far) advances in place."""

    model: torch.nn.Module  # the module that trains: DDP-wrapped and / or compiled
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    device: torch.device
    scaler: torch.amp.GradScaler | None = None  # fp16 only
    precision: str = "fp32"
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    accumulate: int = 1  # micro-batches per optimizer step
    log_every: int = 50  # optimizer steps between host syncs (loss read back, NaN check, stop vote)
    dist: Dist = SINGLE
    step: int = 0


@dataclass
class EpochState:
    """Progress through one epoch, enough to resume it mid-way (always at an optimizer-step boundary)."""

    batches: int = 0  # micro-batches this rank has finished
    loss_sum: float = 0.0  # sum over this rank's samples of the batch-mean loss
    samples: int = 0
    seconds: float = 0.0


class NonFiniteLoss(FloatingPointError):
    """A non-finite training loss or validation output; `question_ids` are the questions of the batches
    since the last good check (whose features fit() inspects before it blames the learning rate)."""

    def __init__(self, message: str, split: str, question_ids: list[int]):
        super().__init__(message)
        self.split, self.question_ids = split, question_ids


class StopRequest:
    """SIGTERM / SIGINT set `requested`; the loop finishes its optimizer step, checkpoints and exits 0."""

    def __init__(self):
        self.requested = False

    def _handle(self, signum, frame):
        self.requested = True

    def __enter__(self) -> StopRequest:
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def micro_batch_size(cfg, world: int) -> int:
    """Samples per process and micro-batch: the global `train.batch_size` split over `world`
    processes and `train.accumulate` micro-batches."""
    parts = world * cfg.accumulate
    if cfg.batch_size % parts:
        raise UserError(
            f"config: train.batch_size {cfg.batch_size} (global) must divide by {world} processes x "
            f"train.accumulate {cfg.accumulate}"
        )
    return cfg.batch_size // parts


def _no_sync(model: torch.nn.Module):
    """DDP's no_sync (skip the gradient all-reduce) for all but the last micro-batch of a step."""
    ddp = getattr(model, "_orig_mod", model)  # under torch.compile
    return ddp.no_sync() if isinstance(ddp, DistributedDataParallel) else nullcontext()


def _optimizer_step(state: TrainState) -> None:
    if state.scaler is not None:
        state.scaler.unscale_(state.optimizer)  # clip the true gradients
    if state.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), state.grad_clip)
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    if state.scheduler is not None:
        state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1


class _Unsynced:
    """What the optimizer steps since the last host sync left on the device, read back in one transfer."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # batch-mean loss x samples
        self.last_loss = torch.zeros((), dtype=torch.float32, device=device)  # the latest step's loss
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)  # first non-finite loss
        self.bad_loss = torch.zeros((), dtype=torch.float32, device=device)  # ... and that loss
        self.question_ids: list[torch.Tensor] = []  # (CPU) of the micro-batches since the last sync

    def add(self, step_loss: torch.Tensor, samples: int, step: int) -> None:
        bad = ~torch.isfinite(step_loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, step, self.first_bad_step)
        self.bad_loss = torch.where(bad, step_loss, self.bad_loss)
        self.loss_sum += step_loss.double() * samples
        self.last_loss = step_loss

    def read_back(self) -> tuple[float, float]:
        """(the latest step's loss, the loss sum since the last sync); NonFiniteLoss names the first bad step."""
        values = (self.first_bad_step, self.bad_loss, self.last_loss, self.loss_sum)
        bad_step, bad_loss, last_loss, loss_sum = torch.stack([v.double() for v in values]).tolist()
        if bad_step >= 0:
            ids = torch.cat(self.question_ids).tolist()
            raise NonFiniteLoss(f"loss is {bad_loss} at step {int(bad_step)}", "train", ids)
        self.question_ids.clear()
        self.loss_sum.zero_()
        return last_loss, loss_sum


def _forward_backward(state: TrainState, micro_batches: list) -> torch.Tensor:
    """Forward and backward of one optimizer step's micro-batches; returns the step's loss (on the device).

    Micro-batch j's gradient is that of (n_j / N) x its mean loss, N the step's samples, so the step
    equals one step on the whole batch (exactly for every loss that averages over all its questions)."""
    samples = sum(b.question.shape[0] for b in micro_batches)
    step_loss = torch.zeros((), dtype=torch.float32, device=state.device)
    for j, batch in enumerate(micro_batches):
        batch = batch.to(state.device, non_blocking=True)
        with _no_sync(state.model) if j < len(micro_batches) - 1 else nullcontext():
            with autocast(state.device, state.precision):
                logits = state.model(batch.question, batch.question_len, batch.image, batch.image_mask)
            # [B, A] logits in fp32 whatever the autocast
            loss = state.loss_fn(logits.float(), batch) * (batch.question.shape[0] / samples)
            (state.scaler.scale(loss) if state.scaler is not None else loss).backward()
        step_loss += loss.detach()
    return step_loss


def train_one_epoch(
    state: TrainState,
    loader,
    resume_from: EpochState | None = None,
    stop: StopRequest | None = None,
    on_step: Callable[[int, float], None] | None = None,
    desc: str = "train",
) -> tuple[EpochState, bool]:
    """One pass over `loader`, continuing `resume_from`. Returns (the epoch's EpochState, stopped early).

    The loss, a non-finite loss and the stop vote stay on the device and are read back once every
    `state.log_every` steps (and at the end), so the GPU never waits for the host in between. A
    non-finite loss raises NonFiniteLoss naming its step. Ranks agree on stopping (a signal on any
    rank) at those sync points, so they leave together.
    """
    state.model.train()
    done = resume_from or EpochState()
    start = time.perf_counter() - done.seconds
    remaining = len(loader)  # micro-batches left in this epoch (a resumed sampler skips the done ones)
    bar = _progress_bar(done.batches, remaining, desc, state.dist.main)
    unsynced, micro_batches, stopped = _Unsynced(state.device), iter(loader), False
    state.optimizer.zero_grad(set_to_none=True)
    while not stopped and (step_batches := list(itertools.islice(micro_batches, state.accumulate))):
        unsynced.question_ids += [b.question_id for b in step_batches]
        samples = sum(b.question.shape[0] for b in step_batches)
        unsynced.add(_forward_backward(state, step_batches), samples, state.step + 1)
        _optimizer_step(state)
        done.batches, done.samples = done.batches + len(step_batches), done.samples + samples
        remaining -= len(step_batches)
        bar.update(len(step_batches))
        alone_stopping = stop and stop.requested and not state.dist.enabled  # no other rank to wait for
        if state.step % state.log_every and remaining and not alone_stopping:
            continue
        last_loss, loss_sum = unsynced.read_back()  # the one host sync: loss, NaN step and stop vote
        done.loss_sum += loss_sum
        done.seconds = time.perf_counter() - start
        rate = f"{done.samples / done.seconds:.0f}"
        bar.set_postfix(loss=f"{done.loss_sum / done.samples:.4f}", samples_per_s=rate, refresh=False)
        if on_step is not None and state.step % state.log_every == 0:
            on_step(state.step, last_loss)
        stopped = bool(all_sum([float(bool(stop and stop.requested))], state.dist, state.device)[0])
        stopped = stopped and remaining > 0
    bar.close()
    if not stopped:
        done.seconds = time.perf_counter() - start
    return done, stopped


def _progress_bar(initial: int, remaining: int, desc: str, main: bool) -> tqdm:
    """The epoch's bar over micro-batches, on the main process only."""
    style = dict(desc=desc, leave=False, dynamic_ncols=True, disable=None if main else True)
    return tqdm(total=initial + remaining, initial=initial, **style)


def epoch_totals(done: EpochState, dist: Dist, device: torch.device) -> tuple[float, float, float]:
    """(mean training loss, samples / s, seconds) of a finished epoch over all ranks."""
    loss_sum, samples, seconds = all_sum([done.loss_sum, done.samples, done.seconds], dist, device)
    seconds /= dist.world  # ranks run side by side: the mean of their times
    return loss_sum / samples, samples / seconds, seconds

"""One epoch of training and one validation pass: plain functions that return what they measured.

`train_one_epoch(state, loader, ...)` steps the optimizer over a loader (resuming mid-epoch from an
EpochState); `evaluate(...)` computes the validation losses, the official accuracy (closed form) and
calibration. Under DDP every rank runs both on its own shard and the results are combined here, so the
caller sees the whole split.
"""

from __future__ import annotations

import itertools
import math
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vqa.agreement import AGREEMENT_BUCKETS, accuracy_by_agreement
from vqa.data.answers import ANSWER_TYPES, answer_type_key
from vqa.device import autocast
from vqa.errors import UserError
from vqa.losses import LOSSES
from vqa.metrics import batch_accuracy, expected_calibration_error, summarize
from vqa.training.distributed import SINGLE, Dist, all_gather_dicts, all_sum


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
    """SIGTERM / SIGINT set a flag; the loop finishes its optimizer step, checkpoints and exits 0."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        self.requested = True

    def __enter__(self) -> StopRequest:
        for s in self.SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
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


def train_one_epoch(
    state: TrainState,
    loader,
    progress: EpochState | None = None,
    stop: StopRequest | None = None,
    on_step: Callable[[int, float], None] | None = None,
    desc: str = "train",
) -> tuple[EpochState, bool]:
    """One pass over `loader`, resuming from `progress`. Returns (progress, stopped early).

    Each optimizer step takes `state.accumulate` micro-batches: the gradient of micro-batch j is
    that of (n_j / N) x its mean loss, N the step's samples, so the step equals one step on the
    whole batch (exactly for every loss that averages over all questions of a batch).

    The loss, a non-finite loss and the stop vote stay on the device and are read back once
    every `state.log_every` steps (and at the end), so the GPU never waits for the host in
    between. A non-finite loss raises FloatingPointError naming the step it happened at. Ranks
    agree on stopping (a signal on any rank) at those sync points, so they leave together.
    """
    model, dist, device = state.model, state.dist, state.device
    model.train()
    progress = progress or EpochState()
    start = time.perf_counter() - progress.seconds
    remaining = len(loader)  # micro-batches left in this epoch (a resumed sampler skips the done ones)
    bar = tqdm(total=progress.batches + remaining, initial=progress.batches, desc=desc, leave=False,
               dynamic_ncols=True, disable=None if dist.main else True)  # fmt: skip
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # sum of batch-mean loss x samples
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)  # first step with a non-finite loss
    bad_value = torch.zeros((), dtype=torch.float32, device=device)  # ... and that loss
    batches = iter(loader)
    recent: list[torch.Tensor] = []  # question ids (CPU) of the micro-batches since the last host sync
    state.optimizer.zero_grad(set_to_none=True)
    while True:
        group = list(itertools.islice(batches, state.accumulate))  # one optimizer step of micro-batches
        if not group:
            break
        n_step = sum(b.question.shape[0] for b in group)
        step_loss = torch.zeros((), dtype=torch.float32, device=device)
        for j, batch in enumerate(group):
            recent.append(batch.question_id)
            batch = batch.to(device, non_blocking=True)
            n = batch.question.shape[0]
            with _no_sync(model) if j < len(group) - 1 else nullcontext():
                with autocast(device, state.precision):
                    logits = model(
                        batch.question, batch.question_len, batch.image, batch.image_mask
                    )  # [B, A]
                loss = state.loss_fn(logits.float(), batch) * (n / n_step)  # fp32 whatever the autocast
                (state.scaler.scale(loss) if state.scaler is not None else loss).backward()
            step_loss += loss.detach()
        bad = ~torch.isfinite(step_loss) & (first_bad < 0)
        first_bad = torch.where(bad, state.step + 1, first_bad)
        bad_value = torch.where(bad, step_loss, bad_value)
        _optimizer_step(state)
        loss_sum += step_loss.double() * n_step
        progress.batches += len(group)
        progress.samples += n_step
        remaining -= len(group)
        bar.update(len(group))
        end = remaining == 0
        if state.step % state.log_every == 0 or end or (stop and stop.requested and not dist.enabled):
            # the one host sync: loss, NaN step and stop vote read back together
            flags = torch.stack([first_bad.double(), bad_value.double(), step_loss.double(), loss_sum])
            bad_step, bad_loss, last_loss, total = flags.tolist()
            if bad_step >= 0:
                ids = torch.cat(recent).tolist()
                raise NonFiniteLoss(f"loss is {bad_loss} at step {int(bad_step)}", "train", ids)
            recent.clear()
            progress.loss_sum += total
            loss_sum.zero_()
            progress.seconds = time.perf_counter() - start
            bar.set_postfix(loss=f"{progress.loss_sum / progress.samples:.4f}",
                            samples_per_s=f"{progress.samples / progress.seconds:.0f}", refresh=False)  # fmt: skip
            if on_step is not None and state.step % state.log_every == 0:
                on_step(state.step, last_loss)
            if all_sum([float(bool(stop and stop.requested))], dist, device)[0] and not end:
                bar.close()
                return progress, True
    bar.close()
    progress.seconds = time.perf_counter() - start
    return progress, False


def epoch_totals(progress: EpochState, dist: Dist, device: torch.device) -> tuple[float, float, float]:
    """(mean training loss, samples / s, seconds) of a finished epoch over all ranks."""
    loss_sum, samples, seconds = all_sum(
        [progress.loss_sum, progress.samples, progress.seconds], dist, device
    )
    seconds /= dist.world  # ranks run side by side: the mean of their times
    return loss_sum / samples, samples / seconds, seconds


@torch.no_grad()
def evaluate(model, loss_fn, loader, device, answer_types: dict[int, str], precision: str = "fp32",
             dist: Dist = SINGLE, agreement: dict[int, str] | None = None) -> dict:  # fmt: skip
    """Validation loss (the run's loss and both cross-entropies), the official accuracy overall, per
    answer type and per agreement bucket (`agreement`: question id -> vqa.agreement bucket name; None
    without it), ECE and mean entropy; `predictions` maps question id -> answer index.

    Accuracy is the closed form of the official metric from `answer_idx` / `answer_score`
    (vqa.metrics.batch_accuracy). Losses are sums of per-question losses (`reduction="none"`), so
    batch and shard boundaries do not change them; each rank scores its own shard (no question
    twice) and the sums and per-question results are combined before they are returned.
    """
    model.eval()
    # per-question sums and counts of: the run's loss, hard_ce, soft_ce (each loss has its own
    # count: hard_ce leaves out questions whose most common answer is outside the vocabulary),
    # kept on the device and read back once per pass, like the per-question results below
    sums = torch.zeros(6, dtype=torch.float64, device=device)
    qids, columns = (
        [],
        [],
    )  # question ids (CPU) and [B, 4] device tensors: prediction, score, confidence, entropy
    for batch in loader:
        qids.append(batch.question_id)
        batch = batch.to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(batch.question, batch.question_len, batch.image, batch.image_mask)
        logits = logits.float()  # [B, A]
        computed: dict = {}  # the run's loss is usually hard_ce or soft_ce: compute each once
        for i, fn in enumerate((loss_fn, LOSSES["hard_ce"], LOSSES["soft_ce"])):
            if fn not in computed:
                computed[fn] = fn(logits, batch, reduction="none")
            per_question = computed[fn]  # [B']
            sums[2 * i] += per_question.sum().double()
            sums[2 * i + 1] += per_question.numel()
        log_p = torch.log_softmax(logits, 1)  # [B, A]
        confidence, pred = log_p.max(1)  # [B]
        entropy = -(log_p.exp() * log_p).sum(1)  # [B]
        acc = batch_accuracy(pred, batch.answer_idx, batch.answer_score)  # [B]
        columns.append(
            torch.stack([pred.double(), acc.double(), confidence.exp().double(), entropy.double()], 1)
        )
    rows = torch.cat(columns).cpu().tolist() if columns else []
    ids = torch.cat(qids).tolist() if qids else []
    scores = {q: r[1] for q, r in zip(ids, rows)}
    predictions = {q: int(r[0]) for q, r in zip(ids, rows)}
    calibration = {q: (r[2], r[3]) for q, r in zip(ids, rows)}
    sums = all_sum(sums.tolist(), dist, device)
    scores, predictions, calibration = all_gather_dicts((scores, predictions, calibration), dist)
    bad = [q for q, (p, h) in calibration.items() if not (math.isfinite(p) and math.isfinite(h))]
    if bad:  # NaN / inf logits, seen alike by every rank (fit() then looks at these questions' features)
        raise NonFiniteLoss(
            f"the model's outputs are not finite for {len(bad):,} validation questions", "val", bad
        )
    summary = summarize(scores, answer_types)
    out = {
        name: sums[2 * i] / max(sums[2 * i + 1], 1) for i, name in enumerate(("loss", "hard_ce", "soft_ce"))
    }
    out["accuracy"] = summary["overall"]
    for t in ANSWER_TYPES:
        # None, not NaN, when the split has no question of that type: metrics.jsonl stays strict JSON
        out[f"accuracy_{answer_type_key(t)}"] = summary["perAnswerType"].get(t)
    by_agreement = (
        accuracy_by_agreement(np.fromiter(scores.values(), np.float64, len(scores)),
                              [agreement[q] for q in scores])
        if agreement is not None else {}
    )  # fmt: skip
    for name, _, _ in AGREEMENT_BUCKETS:  # None for an empty bucket, as for a missing answer type
        out[f"accuracy_agree_{name}"] = by_agreement.get(name)
    qids = sorted(scores)
    ece = expected_calibration_error([calibration[q][0] for q in qids], [scores[q] for q in qids])
    out["ece"] = ece if qids else None
    out["entropy"] = float(np.mean([calibration[q][1] for q in qids])) if qids else None
    out["predictions"] = predictions
    return out

"""One epoch of training and one validation pass: plain functions that return what they measured.

`train_one_epoch(state, loader, ...)` steps the optimizer over a loader (resuming mid-epoch from an
EpochState); `evaluate(...)` computes the validation losses, the official accuracy (closed form) and
calibration. Under DDP every rank runs both on its own shard and the results are combined here, so the
caller sees the whole split.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from vqa.data.answers import ANSWER_TYPES, answer_type_key
from vqa.device import autocast
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
    dist: Dist = SINGLE
    step: int = 0


@dataclass
class EpochState:
    """Progress through one epoch, enough to resume it mid-way."""

    batches: int = 0  # batches this rank has finished
    loss_sum: float = 0.0  # sum over this rank's samples of the batch-mean loss
    samples: int = 0
    seconds: float = 0.0


class StopRequest:
    """SIGTERM / SIGINT set a flag; the loop finishes its step, checkpoints and exits 0."""

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


def train_one_epoch(
    state: TrainState,
    loader,
    progress: EpochState | None = None,
    stop: StopRequest | None = None,
    on_step: Callable[[int, float], None] | None = None,
    desc: str = "train",
) -> tuple[EpochState, bool]:
    """One pass over `loader`, resuming from `progress`. Returns (progress, stopped early).

    Every step, ranks agree on whether to stop (a signal on any rank) and whether the loss
    is finite (on every rank), so all ranks leave the loop together. A non-finite loss raises
    FloatingPointError naming the step, before the optimizer sees it.
    """
    model, optimizer, scaler, dist, device = (
        state.model,
        state.optimizer,
        state.scaler,
        state.dist,
        state.device,
    )
    model.train()
    progress = progress or EpochState()
    start = time.perf_counter() - progress.seconds
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None if dist.main else True)
    for batch in bar:
        batch = batch.to(device, non_blocking=True)
        with autocast(device, state.precision):
            logits = model(batch.question, batch.question_len, batch.image, batch.image_mask)  # [B, A]
        loss = state.loss_fn(logits.float(), batch)  # fp32 whatever the autocast precision
        flags = all_sum([float(not torch.isfinite(loss)), float(bool(stop and stop.requested))], dist, device)
        if flags[0]:
            raise FloatingPointError(f"loss is {loss.item()} at step {state.step + 1}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients
        else:
            loss.backward()
        if state.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), state.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if state.scheduler is not None:
            state.scheduler.step()
        state.step += 1
        n = batch.question.shape[0]
        progress.batches += 1
        progress.loss_sum += loss.item() * n
        progress.samples += n
        progress.seconds = time.perf_counter() - start
        bar.set_postfix(
            loss=f"{progress.loss_sum / progress.samples:.4f}",
            samples_per_s=f"{progress.samples / progress.seconds:.0f}",
        )
        if on_step is not None:
            on_step(state.step, loss.item())
        if flags[1]:
            return progress, True
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
             dist: Dist = SINGLE) -> dict:  # fmt: skip
    """Validation loss (the run's loss and both cross-entropies), the official accuracy overall and
    per answer type, ECE and mean entropy; `predictions` maps question id -> answer index.

    Accuracy is the closed form of the official metric from `answer_idx` / `answer_score`
    (vqa.metrics.batch_accuracy). Losses are sums of per-question losses (`reduction="none"`), so
    batch and shard boundaries do not change them; each rank scores its own shard (no question
    twice) and the sums and per-question results are combined before they are returned.
    """
    model.eval()
    # per-question sums and counts of: the run's loss, hard_ce, soft_ce (each loss has its own
    # count: hard_ce leaves out questions whose most common answer is outside the vocabulary)
    sums = [0.0] * 6
    scores: dict[int, float] = {}
    predictions: dict[int, int] = {}
    calibration: dict[int, tuple[float, float]] = {}  # confidence of the predicted answer, entropy
    for batch in loader:
        batch = batch.to(device)
        with autocast(device, precision):
            logits = model(batch.question, batch.question_len, batch.image, batch.image_mask)
        logits = logits.float()  # [B, A]
        computed: dict = {}  # the run's loss is usually hard_ce or soft_ce: compute each once
        for i, fn in enumerate((loss_fn, LOSSES["hard_ce"], LOSSES["soft_ce"])):
            if fn not in computed:
                computed[fn] = fn(logits, batch, reduction="none")
            per_question = computed[fn]  # [B']
            sums[2 * i] += per_question.sum().item()
            sums[2 * i + 1] += per_question.numel()
        log_p = torch.log_softmax(logits, 1)  # [B, A]
        confidence, pred = log_p.max(1)  # [B]
        entropy = -(log_p.exp() * log_p).sum(1)  # [B]
        acc = batch_accuracy(pred, batch.answer_idx, batch.answer_score)  # [B]
        for qid, p, s, c, h in zip(batch.question_id.tolist(), pred.tolist(), acc.tolist(),
                                   confidence.exp().tolist(), entropy.tolist()):  # fmt: skip
            scores[qid] = s
            predictions[qid] = p
            calibration[qid] = (c, h)
    sums = all_sum(sums, dist, device)
    scores, predictions, calibration = all_gather_dicts((scores, predictions, calibration), dist)
    summary = summarize(scores, answer_types)
    out = {
        name: sums[2 * i] / max(sums[2 * i + 1], 1) for i, name in enumerate(("loss", "hard_ce", "soft_ce"))
    }
    out["accuracy"] = summary["overall"]
    for t in ANSWER_TYPES:
        out[f"accuracy_{answer_type_key(t)}"] = summary["perAnswerType"].get(t, float("nan"))
    qids = sorted(scores)
    out["ece"] = expected_calibration_error([calibration[q][0] for q in qids], [scores[q] for q in qids])
    out["entropy"] = float(np.mean([calibration[q][1] for q in qids]))
    out["predictions"] = predictions
    return out

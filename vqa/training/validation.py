"""One validation pass: the losses, the official accuracy (closed form) and calibration of a split.

Under DDP every rank scores its own shard and the results are combined here, so the caller sees the
whole split.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from vqa.agreement import AGREEMENT_BUCKETS, accuracy_by_agreement, bucket_names
from vqa.data.answers import ANSWER_TYPES, answer_type_key
from vqa.device import autocast
from vqa.losses import LOSSES
from vqa.metrics import batch_accuracy, expected_calibration_error, summarize
from vqa.training.distributed import SINGLE, Dist, all_gather_dicts, all_sum
from vqa.training.loop import NonFiniteLoss


class _LossTotals:
    """Per-question sums and counts of each validation loss, on the device until `means`. Each loss has
    its own count: hard_ce leaves out questions whose most common answer is outside the vocabulary."""

    def __init__(self, loss_fns: dict[str, Callable], device: torch.device):
        self.loss_fns = loss_fns
        self.sums = {name: torch.zeros((), dtype=torch.float64, device=device) for name in loss_fns}
        self.counts = {name: torch.zeros((), dtype=torch.float64, device=device) for name in loss_fns}

    def add(self, logits: torch.Tensor, batch) -> None:
        computed: dict = {}  # the run's loss is usually hard_ce or soft_ce: compute each once
        for name, fn in self.loss_fns.items():
            if fn not in computed:
                computed[fn] = fn(logits, batch, reduction="none")
            per_question = computed[fn]  # [B']
            self.sums[name] += per_question.sum().double()
            self.counts[name] += per_question.numel()

    def means(self, dist: Dist, device: torch.device) -> dict[str, float]:
        names = list(self.loss_fns)
        values = torch.stack([*self.sums.values(), *self.counts.values()]).tolist()
        totals = all_sum(values, dist, device)
        return {name: totals[i] / max(totals[len(names) + i], 1) for i, name in enumerate(names)}


def _per_question_row(logits: torch.Tensor, batch) -> torch.Tensor:
    """[B, 4] float64: the predicted answer, its official score, its probability and the entropy."""
    log_p = torch.log_softmax(logits, 1)  # [B, A]
    confidence, pred = log_p.max(1)  # [B]
    entropy = -(log_p.exp() * log_p).sum(1)  # [B]
    acc = batch_accuracy(pred, batch.answer_idx, batch.answer_score)  # [B]
    return torch.stack([pred.double(), acc.double(), confidence.exp().double(), entropy.double()], 1)


def _per_question_dicts(
    question_ids: list[torch.Tensor], rows: list[torch.Tensor]
) -> tuple[dict, dict, dict]:
    """question id -> score, -> predicted answer index, -> (confidence, entropy): one device read."""
    values = torch.cat(rows).cpu().tolist() if rows else []
    ids = torch.cat(question_ids).tolist() if question_ids else []
    scores = {q: r[1] for q, r in zip(ids, values)}
    predictions = {q: int(r[0]) for q, r in zip(ids, values)}
    calibration = {q: (r[2], r[3]) for q, r in zip(ids, values)}
    return scores, predictions, calibration


def question_groups(dataset) -> tuple[dict[int, str], dict[int, str]]:
    """What `evaluate` groups accuracy by: question id -> answer type, and -> agreement bucket."""
    answer_types = {r.question_id: r.answer_type for r in dataset.records}
    return answer_types, dict(zip(dataset.question_id.tolist(), bucket_names(dataset.top_count)))


def _accuracies(scores: dict[int, float], answer_types: dict[int, str], agreement) -> dict:
    """Official accuracy overall, per answer type and per agreement bucket (None where none is scored)."""
    summary = summarize(scores, answer_types)
    out = {"accuracy": summary["overall"]}
    for t in ANSWER_TYPES:  # None, not NaN, for an absent type: metrics.jsonl stays strict JSON
        out[f"accuracy_{answer_type_key(t)}"] = summary["perAnswerType"].get(t)
    by_agreement = {}
    if agreement is not None:
        values = np.fromiter(scores.values(), np.float64, len(scores))
        by_agreement = accuracy_by_agreement(values, [agreement[q] for q in scores])
    for name, _, _ in AGREEMENT_BUCKETS:
        out[f"accuracy_agree_{name}"] = by_agreement.get(name)
    return out


@torch.no_grad()
def evaluate(
    model,
    loss_fn,
    loader,
    device,
    answer_types: dict[int, str],
    precision: str = "fp32",
    dist: Dist = SINGLE,
    agreement: dict[int, str] | None = None,
) -> dict:
    """Validation loss (the run's loss and both cross-entropies), the official accuracy overall, per
    answer type and per agreement bucket (`agreement`: question id -> vqa.agreement bucket name; None
    without it), ECE and mean entropy; `predictions` maps question id -> answer index.

    Accuracy is the closed form of the official metric from `answer_idx` / `answer_score`
    (vqa.metrics.batch_accuracy). Losses are sums of per-question losses (`reduction="none"`), so
    batch and shard boundaries do not change them.
    """
    model.eval()
    loss_fns = {"loss": loss_fn, "hard_ce": LOSSES["hard_ce"], "soft_ce": LOSSES["soft_ce"]}
    losses = _LossTotals(loss_fns, device)
    question_ids, rows = [], []  # CPU ids; [B, 4] device rows: prediction, score, confidence, entropy
    for batch in loader:
        question_ids.append(batch.question_id)
        batch = batch.to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(batch.question, batch.question_len, batch.image, batch.image_mask)
        logits = logits.float()  # [B, A]
        losses.add(logits, batch)
        rows.append(_per_question_row(logits, batch))
    scores, predictions, calibration = _per_question_dicts(question_ids, rows)
    out = losses.means(dist, device)
    scores, predictions, calibration = all_gather_dicts((scores, predictions, calibration), dist)
    bad = [q for q, (p, h) in calibration.items() if not (math.isfinite(p) and math.isfinite(h))]
    if bad:  # NaN / inf logits, seen alike by every rank (fit() then looks at these questions' features)
        raise NonFiniteLoss(
            f"the model's outputs are not finite for {len(bad):,} validation questions", "val", bad
        )
    out.update(_accuracies(scores, answer_types, agreement))
    qids = sorted(scores)
    ece = expected_calibration_error([calibration[q][0] for q in qids], [scores[q] for q in qids])
    out["ece"] = ece if qids else None
    out["entropy"] = float(np.mean([calibration[q][1] for q in qids])) if qids else None
    out["predictions"] = predictions
    return out

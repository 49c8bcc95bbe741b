"""Interchangeable VQA losses: `loss_fn(logits [B, A], batch) -> scalar`, chosen by name from LOSSES.

Each also takes `reduction="none"` and then returns the per-question losses of the
questions that carry a target ([B'], B' <= B), which evaluation sums over a split.

Soft targets stay sparse: `batch.answer_idx` / `answer_weight` / `answer_score` are
[B, K] with K <= 10 unique answers per question (padding: index 0, weight 0, score 0).
No loss here builds a dense [B, A] target; each needs one logsumexp (or softplus sum)
over the answers and a gather of at most K logits per question. All math runs in
fp32 even when the logits come from an autocast region.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from vqa.errors import UserError


def _picked_log_probs(logits: torch.Tensor, answer_idx: torch.Tensor) -> torch.Tensor:
    """log softmax(x)[c_i] = x[c_i] - logsumexp(x) for the K answers of each question: [B, K].

    One fused log_softmax over the answers and a gather of K values; the backward is
    log_softmax's fused backward, so this costs what F.cross_entropy costs (a
    hand-written `logsumexp(x) - x.gather(...)` keeps several [B, A] temporaries
    for autograd and is about 2x slower on CPU: see `make bench`).
    """
    return torch.log_softmax(logits.float(), dim=1).gather(1, answer_idx)


def _reduce(per_question: torch.Tensor, reduction: str) -> torch.Tensor:
    """ "mean" for training; "none" gives the [B'] losses of the questions that carry a target, so
    evaluation can sum them over a whole split whatever the batch boundaries (or DDP shards)."""
    if reduction == "none":
        return per_question
    if per_question.numel() == 0:
        return per_question.sum()  # 0, with a graph; nothing to learn from this batch
    return per_question.mean()


def hard_ce(logits: torch.Tensor, batch, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on the most common answer c*: -x[c*] + log sum_j exp(x[j]).

    Questions whose most common answer is outside the vocabulary (answer == -1)
    carry no hard target and are left out of the mean.
    """
    valid = batch.answer >= 0  # [B]
    if reduction == "none":
        return F.cross_entropy(logits[valid].float(), batch.answer[valid], reduction="none")  # [B']
    if not bool(valid.any()):
        return logits.float().sum() * 0.0  # keeps the graph; nothing to learn from this batch
    return F.cross_entropy(logits.float(), batch.answer, ignore_index=-1)  # fused; mean over valid rows


def soft_ce(logits: torch.Tensor, batch, reduction: str = "mean") -> torch.Tensor:
    """Soft cross-entropy (Ilievski & Feng 2017, eq. 3): sum_i w_i * (-x[c_i] + logsumexp(x)).

    w_i = count_i / 10 over the unique in-vocabulary answers; the weights of a
    question may sum to less than 1 (answers outside the vocabulary are dropped,
    as in the authors' code). Averaged over the batch.
    """
    return _reduce(-(batch.answer_weight * _picked_log_probs(logits, batch.answer_idx)).sum(1), reduction)


def kl(logits: torch.Tensor, batch, reduction: str = "mean") -> torch.Tensor:
    """KL(w || softmax(x)) with w = count / 10 (OpenVQA's `kld`).

    Equals soft_ce minus the entropy of w: the same gradients, a loss that reaches 0.
    """
    w = batch.answer_weight  # [B, K]
    entropy_term = torch.where(w > 0, w * torch.log(w.clamp(min=1e-12)), torch.zeros_like(w)).sum(1)  # [B]
    return _reduce(entropy_term - (w * _picked_log_probs(logits, batch.answer_idx)).sum(1), reduction)


def bce(logits: torch.Tensor, batch, reduction: str = "mean") -> torch.Tensor:
    """Sigmoid binary cross-entropy against the official per-answer scores (bottom-up attention code).

    sum_j BCE(x_j, t_j) = sum_j softplus(x_j) - sum_j t_j x_j, and t is zero outside
    the K gathered answers, so the target term is a sparse gather. Scaled as the
    bottom-up code does: mean over elements times the number of answers, i.e. the
    per-question sum averaged over the batch.
    """
    logits = logits.float()
    picked = logits.gather(1, batch.answer_idx)  # [B, K]
    return _reduce(F.softplus(logits).sum(1) - (batch.answer_score * picked).sum(1), reduction)


def sampled_ce(logits: torch.Tensor, batch, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on one answer per question, drawn in proportion to its count (MCB, Cadene code).

    Uses the global torch RNG (seeded by the trainer). Questions with no
    in-vocabulary answer are left out.
    """
    w = batch.answer_weight  # [B, K]
    valid = w.sum(1) > 0  # [B]
    if not bool(valid.any()):
        return _reduce(logits.float().sum(1)[:0], reduction)
    choice = torch.multinomial(w[valid], 1).squeeze(1)  # [B']
    target = batch.answer_idx[valid].gather(1, choice[:, None]).squeeze(1)
    return _reduce(F.cross_entropy(logits[valid].float(), target, reduction="none"), reduction)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "hard_ce": hard_ce,
    "soft_ce": soft_ce,
    "kl": kl,
    "bce": bce,
    "sampled_ce": sampled_ce,
}


def get_loss(name: str) -> Callable[[torch.Tensor, object], torch.Tensor]:
    if name not in LOSSES:
        raise UserError(f"config: unknown train.loss '{name}'; choose one of {', '.join(sorted(LOSSES))}")
    return LOSSES[name]

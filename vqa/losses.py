"""Interchangeable VQA losses: `loss_fn(logits [B, A], batch) -> scalar`, chosen by name from LOSSES.

Each also takes `reduction="none"` and then returns the per-question losses of the questions that
carry a target ([B'], B' <= B), which evaluation sums over a split.

Soft targets stay sparse: `batch.answer_idx` / `answer_weight` / `answer_score` are [B, K] with K <= 10
unique answers per question (padding: index 0, weight 0, score 0). No loss builds a dense [B, A] target:
each needs one logsumexp (or softplus sum) over the answers and a gather of at most K logits. All math
runs in fp32 even when the logits come from an autocast region. The shuffled soft-target control
(data.soft_target=shuffled) is applied to the data (vqa/data/dataset.py), so every loss stays a pure
function of the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from vqa.errors import UserError


def _picked_log_probs(logits: torch.Tensor, answer_idx: torch.Tensor) -> torch.Tensor:
    """log softmax(x)[c_i] = x[c_i] - logsumexp(x) for the K answers of each question: [B, K]. One fused
    log_softmax and a gather: it costs what F.cross_entropy costs (`logsumexp(x) - x.gather(...)` keeps
    several [B, A] temporaries for autograd and is about 2x slower on CPU: `make bench`)."""
    return torch.log_softmax(logits.float(), dim=1).gather(1, answer_idx)


def _reduce(per_question: torch.Tensor, reduction: str) -> torch.Tensor:
    """ "mean" for training; "none" gives the [B'] losses of the questions that carry a target, so
    evaluation can sum them over a whole split whatever the batch boundaries (or DDP shards)."""
    if reduction == "none":
        return per_question
    if per_question.numel() == 0:
        return per_question.sum()  # 0, with a graph; nothing to learn from this batch
    return per_question.mean()


def _hard_target_ce(logits: torch.Tensor, batch, reduction: str, epsilon: float = 0.0) -> torch.Tensor:
    """Cross-entropy against the most common answer c*, its target smoothed by `epsilon` (torch's
    label_smoothing: (1 - eps) on c* plus eps / A on every answer). Questions whose most common answer is
    outside the vocabulary (answer == -1) carry no hard target and are left out of the mean."""
    valid = batch.answer >= 0  # [B]
    if reduction == "none":  # [B']
        return F.cross_entropy(
            logits[valid].float(), batch.answer[valid], reduction="none", label_smoothing=epsilon
        )
    # mean over the valid rows (ignored rows give 0), without asking the host whether any is valid:
    # no device sync; a batch with no hard target gives 0 with a graph
    per_question = F.cross_entropy(
        logits.float(), batch.answer, ignore_index=-1, reduction="none", label_smoothing=epsilon
    )  # [B]
    return per_question.sum() / valid.sum().clamp(min=1)


def hard_ce(logits: torch.Tensor, batch, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on the most common answer c*: -x[c*] + log sum_j exp(x[j]); questions without a hard
    target (answer == -1) are left out of the mean."""
    return _hard_target_ce(logits, batch, reduction)


def label_smoothing(
    logits: torch.Tensor, batch, reduction: str = "mean", epsilon: float = 0.1
) -> torch.Tensor:
    """A control for soft cross-entropy: the hard target with `epsilon` spread evenly over all A answers,
    t = (1 - eps) onehot(c*) + eps / A (Szegedy et al. 2016), i.e. (1 - eps) * hard_ce + eps * (logsumexp(x)
    - mean_j x[j]): a soft target without the humans. `get_loss` binds epsilon to train.label_smoothing
    (`vqa stats` prints the epsilon matching a split's human targets). Questions as in hard_ce."""
    return _hard_target_ce(logits, batch, reduction, epsilon)


def soft_ce(logits: torch.Tensor, batch, reduction: str = "mean") -> torch.Tensor:
    """Soft cross-entropy (Ilievski & Feng 2017, eq. 3): sum_i w_i * (-x[c_i] + logsumexp(x)), w_i = count_i / 10
    over the in-vocabulary answers (their sum may be < 1, as in the authors' code); averaged over the batch."""
    return _reduce(-(batch.answer_weight * _picked_log_probs(logits, batch.answer_idx)).sum(1), reduction)


def kl(logits: torch.Tensor, batch, reduction: str = "mean") -> torch.Tensor:
    """KL(w || softmax(x)) with w = count / 10 (OpenVQA's `kld`): soft_ce minus the entropy of w, the same
    gradients and a loss that reaches 0."""
    w = batch.answer_weight  # [B, K]
    entropy_term = torch.where(w > 0, w * torch.log(w.clamp(min=1e-12)), torch.zeros_like(w)).sum(1)  # [B]
    return _reduce(entropy_term - (w * _picked_log_probs(logits, batch.answer_idx)).sum(1), reduction)


def bce(logits: torch.Tensor, batch, reduction: str = "mean") -> torch.Tensor:
    """Sigmoid binary cross-entropy against the official per-answer scores (bottom-up attention code):
    sum_j BCE(x_j, t_j) = sum_j softplus(x_j) - sum_j t_j x_j with t zero outside the K answers (a sparse
    gather); the per-question sum averaged over the batch, as the bottom-up code scales it."""
    logits = logits.float()
    picked = logits.gather(1, batch.answer_idx)  # [B, K]
    return _reduce(F.softplus(logits).sum(1) - (batch.answer_score * picked).sum(1), reduction)


def sampled_ce(logits: torch.Tensor, batch, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy on one answer per question, drawn in proportion to its count (MCB, Cadene code), with
    the global torch RNG (seeded by the trainer); questions with no in-vocabulary answer are left out."""
    w = batch.answer_weight  # [B, K]
    valid = w.sum(1) > 0  # [B]
    # a question without weights draws slot 0 and is masked out: the draw needs no host sync
    slot0 = F.one_hot(torch.zeros_like(valid, dtype=torch.long), w.shape[1]).to(w)  # [B, K]
    probs = torch.where(valid[:, None], w, slot0)
    choice = torch.multinomial(probs, 1)  # [B, 1]
    target = batch.answer_idx.gather(1, choice).squeeze(1)  # [B]
    per_question = F.cross_entropy(logits.float(), target, reduction="none")  # [B]
    if reduction == "none":
        return per_question[valid]  # [B'] (evaluation only)
    return (per_question * valid).sum() / valid.sum().clamp(min=1)


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    f.__name__: f for f in (hard_ce, soft_ce, kl, bce, sampled_ce, label_smoothing)
}


def get_loss(name: str, label_smoothing: float = 0.1) -> Callable[[torch.Tensor, object], torch.Tensor]:
    """LOSSES[name], with the setting it takes bound from the config (train.label_smoothing is the
    label_smoothing loss's epsilon), so the loop calls every loss as loss_fn(logits, batch)."""
    if name not in LOSSES:
        raise UserError(f"config: unknown train.loss '{name}'; choose one of {', '.join(sorted(LOSSES))}")
    if name == "label_smoothing":
        return functools.partial(LOSSES[name], epsilon=label_smoothing)
    return LOSSES[name]

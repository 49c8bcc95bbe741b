"""Official VQA accuracy on class indices (the training loop), the official summaries, calibration.

Official rule (docs/vqa-reference.md sections 2-3; pytorch-vqa derives the same formula): a prediction equal
to m of the other ground-truth answers earns min(1, m / 3) against each left-out answer, averaged over the
answers. With the 10 answers distinct (unique answer_id), that depends only on the count k of answers equal
to the prediction: 0, .3, .6, .9, 1 for k = 0, 1, 2, 3, >= 4 (`vqa.data.answers.score_from_count`).

- `batch_accuracy`: the training loop's path, from the sparse targets `answer_idx` / `answer_score`.
- `summarize_scores` / `summarize` / `percent_scores`: the official rounding of per-type means and
  per-question scores, on arrays.
- `expected_calibration_error`: calibration against the per-question accuracy.

The exact string path (`vqa eval`) is vqa/scoring.py; for a predicted vocab string both give the same
number (see `AnswerVocab.from_answers`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch only for the type hint: `vqa eval` never imports torch
    from torch import Tensor


def batch_accuracy(pred: Tensor, answer_idx: Tensor, answer_score: Tensor) -> Tensor:
    """Official accuracy of predicted class indices, closed form: sum(answer_score[answer_idx == pred]).

    pred long [B]; answer_idx long [B, K] (unique per row); answer_score float [B, K]. Padding slots hold
    index 0 with score 0, so a prediction of class 0 matching a padded slot adds nothing.
    """
    hit = answer_idx == pred.unsqueeze(1)  # [B, K] bool, at most one true per row
    return (answer_score * hit).sum(dim=1)  # [B]


def _percent(values: list[float]) -> float:
    # The official setAccuracy: round(100 * float(sum(acc)) / len(acc), 2) over unrounded scores.
    return round(100 * float(sum(values)) / len(values), 2)


def _groups(values: np.ndarray, labels: list) -> dict:
    """{label: _percent(the values of that label, in order)}, labels in order of first appearance.

    Python's own sum over the same floats in the same order as the official per-type lists."""
    codes_of: dict = {}  # label -> code, in order of first appearance
    codes = np.fromiter((codes_of.setdefault(t, len(codes_of)) for t in labels), np.int64, len(labels))
    order = np.argsort(codes, kind="stable")  # grouped by label, each group in the original order
    bounds = np.searchsorted(codes[order], np.arange(1, len(codes_of)))
    return {t: _percent(part.tolist()) for t, part in zip(codes_of, np.split(values[order], bounds))}


def summarize_scores(scores: np.ndarray, answer_types: list, question_types: list | None = None) -> dict:
    """`summarize` on parallel sequences: per-question scores [Q] and each question's types."""
    if len(scores) == 0:
        raise ValueError("no per-question scores to summarize")
    scores = np.asarray(scores, np.float64)
    out = {"overall": _percent(scores.tolist()), "perAnswerType": _groups(scores, answer_types)}
    if question_types is not None:
        out["perQuestionType"] = _groups(scores, question_types)
    return out


def summarize(
    scores: dict[int, float], answer_types: dict[int, str], question_types: dict[int, str] | None = None
) -> dict:
    """{"overall", "perAnswerType"[, "perQuestionType"]} in percent, rounded as the official tool rounds.

    Means are over unrounded per-question scores, summed in the order of `scores` (the official order is
    the annotation file's). "perQuestionType" is present only when `question_types` is given.
    """
    return summarize_scores(
        np.fromiter(scores.values(), np.float64, len(scores)),
        [answer_types[q] for q in scores],
        None if question_types is None else [question_types[q] for q in scores],
    )


def percent_scores(scores: np.ndarray) -> list[float]:
    """round(100 * s, 2) of each score (the report's per-question numbers), Python's round once per
    distinct value."""
    values, inverse = np.unique(np.asarray(scores, np.float64), return_inverse=True)
    rounded = np.array([round(100 * v, 2) for v in values.tolist()], np.float64)
    return rounded[inverse.reshape(-1)].tolist()


def expected_calibration_error(confidence: list[float], accuracy: list[float], bins: int = 15) -> float:
    """ECE (Guo et al. 2017) with the official per-question VQA accuracy as correctness:
    sum over equal-width confidence bins of |mean accuracy - mean confidence| weighted by bin size."""
    conf, acc = np.asarray(confidence, np.float64), np.asarray(accuracy, np.float64)
    if conf.size == 0:
        return float("nan")
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.mean() * abs(acc[in_bin].mean() - conf[in_bin].mean())
    return float(total)

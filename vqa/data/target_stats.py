"""Statistics of a split's training targets that a loss study checks first: how spread out the human
soft targets are, and the label smoothing epsilon whose target is as spread out (the matched control
of soft cross-entropy: train.label_smoothing). Pure functions of a Dataset's arrays; `vqa stats`
(vqa/data_stats.py) prints them for a config.
"""

from __future__ import annotations

import math

import numpy as np


def label_smoothing_entropy(epsilon: float, num_answers: int) -> float:
    """Entropy (nats) of the label-smoothed target over `num_answers` answers: 1 - eps + eps / A on the
    most common answer and eps / A on each of the A - 1 others. Increases with eps from 0 to log A."""
    a = num_answers
    top, rest = 1 - epsilon + epsilon / a, epsilon / a
    return -sum(p * math.log(p) * n for p, n in ((top, 1), (rest, a - 1)) if p > 0)


def soft_target_entropy(answer_count: np.ndarray) -> float:
    """Mean entropy (nats) of the human soft targets, from the Dataset's in-vocabulary answer counts
    (uint8 [Q, K], 0 = padding). Each question's distribution is its weights count / 10 renormalized
    to sum to 1: the prediction soft CE's loss is lowest at (p proportional to w, whatever answers outside
    the vocabulary took), as the label-smoothing loss's is at its own target. Questions without an
    in-vocabulary answer carry no soft target and are left out."""
    count = np.asarray(answer_count, np.float64)  # [Q, K]
    total = count.sum(1)
    p = count[total > 0] / total[total > 0, None]
    return float(-np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(1).mean()) if len(p) else 0.0


def matching_label_smoothing(answer_count: np.ndarray, num_answers: int) -> float:
    """The epsilon in [0, 1) whose label-smoothed target has the mean entropy of the human soft targets
    of `answer_count` (`soft_target_entropy`): train.label_smoothing for a control as spread out as the
    human distribution, but spread uniformly. Bisection on the increasing `label_smoothing_entropy`."""
    target = soft_target_entropy(answer_count)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if label_smoothing_entropy(mid, num_answers) < target else (lo, mid)
    return lo

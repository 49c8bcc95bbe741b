"""The shuffled soft-target control (data.soft_target=shuffled; the training split only).

Every in-vocabulary answer of a question's soft target is replaced by its image under a fixed, seeded
permutation of the answers that stays within answer types (`type_preserving_permutation`). Each
question keeps its weight profile (counts, hence weights and official scores, in the same slots) but
the weights land on other answers of the same type, so a gain that survives the control is
regularization and one that does not comes from the human distribution. The hard target (the most
common answer) stays the human one, so hard_ce and label_smoothing runs are unchanged; the permutation
lives in the data rather than in a loss so that `loss_fn(logits, batch)` stays a pure function of the
batch, works for every soft loss alike, and the validation split (scored on its human answers) never
sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vqa.data.dataset import VQADataset


def shuffle_soft_targets(dataset: VQADataset, num_answers: int, seed: int) -> str:
    """Shuffle the soft targets of `dataset` (its answer_idx) in place; the line for the run's log."""
    records = dataset.records
    mapping, group = type_preserving_permutation(dataset.answer, records.answer_type, num_answers, seed)
    dataset.answer_idx = np.where(dataset.answer_count > 0, mapping[dataset.answer_idx], 0).astype(np.int32)
    names = ["no type", *records.answer_types, "never the most common answer"]  # by group
    sizes = ", ".join(f"{names[g]} {n:,}" for g, n in enumerate(np.bincount(group)) if n)
    moved = int((mapping != np.arange(num_answers)).sum())
    return (
        f"{dataset.report.split}: soft targets shuffled (data.soft_target=shuffled, seed {seed}): {moved:,} of "
        f"{num_answers:,} answers give their weights to another answer of the same type ({sizes}); "
        "hard targets and the validation split stay human"
    )


def type_preserving_permutation(
    answer: np.ndarray, answer_type: np.ndarray, num_answers: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(mapping int64 [A], group int64 [A]) for the shuffled soft-target control.

    An answer's type is the answer type of the questions it is most often the most common answer of
    (`answer` [Q], -1 outside the vocabulary, and `answer_type` [Q] codes, -1 none, of the training split;
    ties: the first type code). group = 1 + that code (0: questions without a type); answers that are no
    question's most common answer form one more group, len(types) + 1. Within each group the mapping is
    one random cycle through the group's answers (Sattolo's algorithm: shuffle, then each answer maps to
    the next), so every answer of a group with two or more moves ("yes" <-> "no"), and the same seed gives
    the same mapping."""
    answer_type = np.asarray(answer_type, np.int64)
    answer = np.asarray(answer, np.int64)
    n_groups = int(answer_type.max(initial=-1)) + 2  # codes -1 .. max -> groups 0 .. max + 1
    keep = answer >= 0
    votes = np.zeros((num_answers, n_groups), np.int64)
    np.add.at(votes, (answer[keep], answer_type[keep] + 1), 1)
    group = np.where(votes.any(1), votes.argmax(1), n_groups)
    mapping = np.arange(num_answers)
    rng = np.random.default_rng(seed)
    for g in range(n_groups + 1):
        members = rng.permutation(np.flatnonzero(group == g))
        mapping[members] = np.roll(members, -1)
    return mapping, group

"""The answer prior per question type, from the training split's soft scores only (Clark et al. 2019).

b[t, a] = (sum over the training questions of type t of the official score of answer a) / (number of
training questions of type t), as the authors' `main.py` computes it: the expected score of each
answer given the question type. Questions without a type share the last row (index T). A row of a
type no training question has is zero. With data.val_split heldout, the training split is what
remains after holding out (vqa/data/heldout.py): the held-out and test questions never reach it.
"""

from __future__ import annotations

import numpy as np
import torch

from vqa.data.answers import SCORE_OF_COUNT


def question_type_prior(
    question_type: np.ndarray,
    answer_idx: np.ndarray,
    answer_score: np.ndarray,
    num_types: int,
    num_answers: int,
) -> np.ndarray:
    """float32 [num_types + 1, A]: the expected score of each answer per question type.

    `question_type` int [Q] (-1: none, the last row), `answer_idx` int [Q, K] and `answer_score`
    float [Q, K] the sparse targets (padding: score 0)."""
    rows = np.where(np.asarray(question_type) < 0, num_types, question_type).astype(np.int64)  # [Q]
    total = np.zeros((num_types + 1, num_answers), np.float64)
    k = answer_idx.shape[1]
    np.add.at(
        total,
        (np.repeat(rows, k), np.asarray(answer_idx, np.int64).ravel()),
        np.asarray(answer_score, np.float64).ravel(),
    )
    count = np.bincount(rows, minlength=num_types + 1)  # [T + 1]
    return (total / np.maximum(count, 1)[:, None]).astype(np.float32)


def dataset_prior(dataset, num_answers: int) -> torch.Tensor:
    """[T + 1, A] prior of a training VQADataset (its records' question types and answer counts)."""
    records = dataset.records
    return torch.from_numpy(
        question_type_prior(
            records.question_type,
            dataset.answer_idx,
            SCORE_OF_COUNT[dataset.answer_count],
            len(records.question_types),
            num_answers,
        )
    )


def answer_log_odds(dataset, num_answers: int, floor: float = 1e-4) -> torch.Tensor:
    """[A] log(p / (1 - p)) of each answer's mean official score p over a training VQADataset (p
    clamped to [floor, 1 - floor]): the sigmoid outputs' prior, type-blind."""
    none = np.full(len(dataset.records.question_type), -1)  # every question in one row
    p = question_type_prior(none, dataset.answer_idx, SCORE_OF_COUNT[dataset.answer_count], 0, num_answers)[0]
    p = np.clip(p.astype(np.float64), floor, 1 - floor)
    return torch.from_numpy(np.log(p / (1 - p)).astype(np.float32))


def start_sigmoid_at_prior(model: torch.nn.Module, dataset, num_answers: int) -> None:
    """Set the bias of the model's answer layer (the last [A] bias in `model.classifier`) to the
    answers' log-odds, so that a sigmoid loss (bce) starts at the training prior (the prior
    initialization of Lin et al. 2017, focal loss, sec. 4.1). From a zero bias, the first steps of a
    short run push every one of the A logits down through the hidden layers instead, which saturates
    them: on the `tiny` synthetic VQA-CP, UpDn with bce then stays at the answer prior for 20 epochs
    (docs/debias.md)."""
    biases = [p for name, p in model.classifier.named_parameters() if name.endswith("bias")]
    out = [p for p in biases if p.shape == (num_answers,)]
    if not out:
        raise ValueError(f"{type(model).__name__}.classifier has no bias of size {num_answers}")
    with torch.no_grad():
        out[-1].copy_(answer_log_odds(dataset, num_answers))

"""The answer vocabulary and per-question targets: hard, soft and score, keyed like the evaluator.

The targets follow the official evaluator's current rules (vqa/data/keys.py: the strings it compares),
and the vocabulary holds only fixed points of `normalize_answer`, so a predicted vocab string compares
the same in the training loop's closed form and in `vqa eval` (see `AnswerVocab.from_answers`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vqa.data.keys import (
    Interner,
    clean_whitespace,
    compared_keys,
    most_common_count,
    normalize_answer,
    prediction_keys,
    unanimous,
)
from vqa.errors import UserError

if TYPE_CHECKING:
    from vqa.data.sources.records import Answers

# The official answer types of VQA v1 / v2 (annotation key `answer_type`), in the evaluator's order.
ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")


# Every question of the official VQA v1 / v2 annotations has exactly 10 human answers (OK-VQA lists its
# 5 answers twice; VizWiz has 10): the 0 / .3 / .6 / .9 / 1 scores and the K <= 10 target slots assume it.
ANSWERS_PER_QUESTION = 10


def answer_type_key(answer_type: str) -> str:
    """'yes/no' -> 'yes_no': the suffix of the `val/accuracy_*` scalars and metrics.jsonl keys."""
    return answer_type.replace("/", "_").replace(" ", "_")


def score_from_count(k: int, n: int = ANSWERS_PER_QUESTION) -> float:
    """Official accuracy of a prediction equal to k of n distinct ground-truth answers (section 2).

    Leave-one-out: each of the k matching answers sees k - 1 matches among the others, each of the n - k
    others sees k; the score is the mean over the n of min(1, matches / 3): 0, .3, .6, .9, 1 for n = 10.
    Returned as the double nearest the exact rational; the evaluator's own float sum may differ in the last
    bit depending on where the matches sit (vqa.scoring.official_scores reproduces that bit exactly).
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    thirds = k * min(3, k - 1) + (n - k) * min(3, k) if k else 0  # sum of min(3, matches), in thirds
    return thirds / (3 * n)


class AnswerVocab:
    """Answer strings <-> class indices. Every entry is a non-empty fixed point of `normalize_answer`."""

    def __init__(self, itos: list[str]):
        self.itos = list(itos)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("answer vocabulary has duplicate entries")

    @classmethod
    def from_answers(cls, counts: Counter, max_answers: int) -> AnswerVocab:
        """The `max_answers` most frequent normalized multiple-choice answers of {answer: number of
        training questions}, ties broken by string.

        Only fixed points of `normalize_answer` are kept. Why: the evaluator compares the prediction after
        normalizing it (non-unanimous questions), while the training loop compares class indices built from
        the compared keys. A vocab string s with normalize_answer(s) != s (e.g. a string with more than 32
        periods, which a second pass shortens further) would be decoded to s, normalized again by the
        evaluator and matched against different keys than its index was: the two scores would disagree. For
        a fixed point s, clean_whitespace(s) == s as well, so both paths compare the same string against the
        same keys. The empty string (e.g. an answer "?") is dropped too: it is no answer to predict.
        """
        normalized: Counter = Counter()
        for a, n in counts.items():
            normalized[normalize_answer(clean_whitespace(a))] += n
        kept = [s for s in normalized if s and normalize_answer(s) == s]
        kept.sort(key=lambda s: (-normalized[s], s))
        return cls(kept[:max_answers])

    def __len__(self) -> int:
        return len(self.itos)

    def index(self, s: str) -> int:
        """Class index of `s`, -1 when it is not in the vocabulary."""
        return self.stoi.get(s, -1)

    def to_dict(self) -> dict:
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, d: dict) -> AnswerVocab:
        itos = d.get("itos") if isinstance(d, dict) else None
        if not isinstance(itos, list) or not all(isinstance(s, str) for s in itos):
            raise UserError("answer vocabulary: key 'itos' must be a list of strings; rebuild the vocabulary")
        return cls(itos)


def has_all_answers(annotation: dict) -> bool:
    """Whether an annotation holds exactly ANSWERS_PER_QUESTION answers. The rule, the same for training,
    validation and `vqa eval`: a question without them is left out of training and of scoring alike,
    counted and reported (vqa.data.dataset.EncodeReport, vqa.evaluate), never an error or a traceback."""
    answers = annotation.get("answers")
    return isinstance(answers, list) and len(answers) == ANSWERS_PER_QUESTION


# How soft targets treat the answers outside the vocabulary (data.soft_targets_oov): "drop" keeps
# the weights count / 10 (the authors' code), "renormalize" rescales the in-vocabulary ones to sum to 1.
OOV_MODES: tuple[str, ...] = ("drop", "renormalize")


# float32 weight and official score of an answer given by c of the 10 annotators, c = 0 .. 10
# (count / n and score_from_count, rounded to float32 once)
WEIGHT_OF_COUNT = np.array([c / ANSWERS_PER_QUESTION for c in range(ANSWERS_PER_QUESTION + 1)], np.float32)
SCORE_OF_COUNT = np.array([score_from_count(c) for c in range(ANSWERS_PER_QUESTION + 1)], np.float32)


@dataclass
class TargetArrays:
    """The targets of many questions, compact: weights and scores follow from the counts."""

    answer: np.ndarray  # int32 [n]: vocab index of the most common answer, -1 outside the vocabulary
    idx: np.ndarray  # int32 [n, K]: unique in-vocabulary keys, in order of first appearance (0 = padding)
    count: np.ndarray  # uint8 [n, K]: how many of the 10 answers gave each (0 = padding)
    oov_weight: np.ndarray  # float64 [n]: count / 10 summed over the keys outside the vocabulary
    top: np.ndarray  # int8 [n]: how many answers equal the most common one, every answer counted


def encode_targets(answers: Answers, vocab: AnswerVocab, rules: str = "current") -> TargetArrays:
    """Targets of every question of `answers` (each with exactly 10 answers), from the compared keys of
    its answers (vqa.data.keys, each distinct string cleaned and normalized once; the counting is array
    work).

    rules="current" keys the answers as the VQA evaluator compares them; "vizwiz" as released (VizWiz's
    evaluator normalizes only the prediction, vqa/data/sources/vizwiz.py). The hard target is the
    multiple-choice answer keyed as a prediction: cleaned, and normalized unless the question's keys are
    unanimous (VizWiz: as released)."""
    n_q, n = len(answers.start) - 1, ANSWERS_PER_QUESTION
    if not np.all(answers.counts() == n):
        raise ValueError(f"encode_targets needs exactly {n} answers per question")
    table = Interner(answers.strings)  # codes = answers.ids
    key, _ = compared_keys(table, answers.ids.reshape(n_q, n), "vizwiz" if rules == "vizwiz" else "current")
    best = answers.best.astype(np.int64)
    if rules == "vizwiz":  # a prediction is one of the released strings or nothing
        pred = best
    else:
        pred = np.where(best >= 0, prediction_keys(table, np.maximum(best, 0), ~unanimous(key)), -1)
    in_vocab = np.fromiter((vocab.index(s) for s in table.strings), np.int64, len(table.strings))
    answer = np.where(pred >= 0, in_vocab[pred], -1).astype(np.int32)
    idx, counts, oov_weight = _count_keys(key, in_vocab)
    return TargetArrays(answer, idx, counts, oov_weight, most_common_count(key))


def _count_keys(key: np.ndarray, in_vocab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(idx int32 [Q, n], count uint8 [Q, n], oov_weight float64 [Q]) of keys [Q, n]: each question's
    distinct keys in order of first appearance, the in-vocabulary ones (in_vocab[key] >= 0) packed to
    the left with their counts, the others' count / n summed in the same order."""
    n_q, n = key.shape
    n_keys = len(in_vocab)
    code = np.repeat(np.arange(n_q, dtype=np.int64), n) * n_keys + key.reshape(-1)  # one per (question, key)
    unique, first, count = np.unique(code, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")  # question by question, keys in order of first appearance
    unique, count = unique[order], count[order]
    r, v = unique // n_keys, in_vocab[unique % n_keys]
    oov = v < 0
    oov_weight = np.bincount(r[oov], weights=count[oov] / n, minlength=n_q)  # summed in that order
    r, v, count = r[~oov], v[~oov], count[~oov]
    slot = np.arange(len(r)) - np.searchsorted(r, r)
    idx, counts = np.zeros((n_q, n), np.int32), np.zeros((n_q, n), np.uint8)
    idx[r, slot], counts[r, slot] = v, count
    return idx, counts, oov_weight

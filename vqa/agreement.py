"""Accuracy by human agreement: questions grouped by how many of the ten annotators gave the most
common answer (the question's *top count*, 1..10), defined once here for the training loop
(`val/accuracy_agree_*`, metrics.jsonl) and `vqa eval` (the report's `perAgreement`).

The top count counts every answer, those outside the answer vocabulary too, as the evaluator compares
them (the same keys it scores, vqa.data.keys.compared_keys: under the current rules "Yes", "yes" and
"yes." of a split question are one answer; VizWiz's ground truth as released; under `vqa eval --legacy`
the legacy keys). Training's per-bucket accuracy equals `vqa eval`'s (tests/test_train.py).

Why these edges: the official accuracy gives an answer min(1, k / 3) averaged leave-one-out, which is
full credit from k = 4 of the 10 answers on (docs/vqa-reference.md section 2). So the top count says
what the best possible prediction earns and how many answers earn it:

    10    unanimous: the soft target is the hard target (soft and hard cross-entropy coincide), so a
          loss can differ here only through what it learned from the other questions
    7_9   a clear majority: only the top answer earns full credit (any other has at most 3 votes)
    4_6   the top answer earns full credit, and a second one may as well (4 + 4, 5 + 5, 6 + 4)
    le3   no answer earns full credit: the best prediction earns .9, .6 or .3 (top count 3, 2, 1)

The two middle buckets are where the human distribution has real mass besides the top answer: where a
soft target can teach something a hard one cannot.
"""

from __future__ import annotations

import numpy as np

from vqa.data.answers import ANSWERS_PER_QUESTION
from vqa.data.keys import Interner, compared_keys, most_common_count
from vqa.metrics import summarize_scores

# (name, lowest top count, highest top count): the suffix of `val/accuracy_agree_<name>` and the keys of
# the report's perAgreement, in this order; together they cover 0..10 (0: a question without answers)
AGREEMENT_BUCKETS = (("10", 10, 10), ("7_9", 7, 9), ("4_6", 4, 6), ("le3", 0, 3))
_NAME_OF_COUNT = [
    next(n for n, lo, hi in AGREEMENT_BUCKETS if lo <= c <= hi) for c in range(ANSWERS_PER_QUESTION + 1)
]


def bucket_of(top_count: int) -> str:
    """The name of the bucket of a question whose most common answer `top_count` annotators gave."""
    if not 0 <= top_count <= ANSWERS_PER_QUESTION:
        raise ValueError(f"top count must be in 0..{ANSWERS_PER_QUESTION}, got {top_count}")
    return _NAME_OF_COUNT[top_count]


def bucket_names(top_counts: np.ndarray) -> list[str]:
    """`bucket_of` of every question."""
    return [_NAME_OF_COUNT[c] for c in np.asarray(top_counts, np.int64).tolist()]


def bucket_label(name: str) -> str:
    """How reports print a bucket: "10", "7-9", "4-6", "<=3"."""
    _, lo, hi = next(b for b in AGREEMENT_BUCKETS if b[0] == name)
    return str(hi) if lo == hi else f"<={hi}" if lo == 0 else f"{lo}-{hi}"


def top_counts(texts: list[str], rules: str = "current", n: int = ANSWERS_PER_QUESTION) -> np.ndarray:
    """int8 [Q]: the top count of each question of answer strings listed question after question, n per
    question, keyed as the evaluator of `rules` (vqa.data.keys.RULES) compares them."""
    if len(texts) % n:
        raise ValueError(f"need {n} answers per question, got {len(texts)} answers")
    table = Interner()
    codes = table.codes(texts, len(texts)).reshape(-1, n)
    return most_common_count(compared_keys(table, codes, rules)[0])


def accuracy_by_agreement(scores: np.ndarray, buckets: list[str]) -> dict[str, float | None]:
    """{bucket name: official accuracy in percent} of per-question scores [Q] and each question's bucket,
    rounded as the official tool rounds its per-type means (vqa.metrics.summarize_scores); None for a
    bucket without questions (strict JSON: null). Every bucket is present, in AGREEMENT_BUCKETS order."""
    groups = summarize_scores(scores, buckets)["perAnswerType"] if len(buckets) else {}
    return {name: groups.get(name) for name, _, _ in AGREEMENT_BUCKETS}

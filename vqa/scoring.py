"""The exact string path of the official VQA accuracy (`vqa eval`): answer strings in, per-question scores out.

`official_scores` equals (==) the official per-question loop (tests/reference_eval.py), vectorized: the
compared strings of every answer and prediction become integer keys (vqa/data/keys.py: each distinct
string cleaned and normalized once), matches are array operations, and each question is scored by its
match pattern (the literal loop run once per distinct pattern, so the float sum's last bit is the
official one). The rules are docs/vqa-reference.md section 3; the closed form the training loop uses,
the summaries and calibration are in vqa/metrics.py.

The official code normalizes the ground-truth answer dicts in place (`ansDic['answer'] = ...`), so scoring
the same annotation objects twice can change the result: after a first pass "Yes" / "yes" both read "yes",
the question looks unanimous, and the prediction "YES" is no longer normalized and scores 0. Nothing here
mutates its inputs (the reference reproduces the quirk for tests with in_place=True).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vqa.data.keys import Interner, compared_keys, most_common_count, prediction_keys

Answers = list[str] | list[dict]  # one question's ground truth: distinct strings, or dicts with "answer"


def _leave_one_out(items: list[dict], res) -> float:
    """The official scoring loop on one question's (already keyed) answer dicts, literally."""
    gt_acc = []
    for gt in items:
        other = [item for item in items if item != gt]
        matching = [item for item in other if item["answer"] == res]
        gt_acc.append(min(1, float(len(matching)) / 3))
    return float(sum(gt_acc)) / len(gt_acc)


_MAX_PATTERN = 32  # questions with more distinct answers than this are scored one by one (VQA has 10)


def _pattern_score(n: int, mask: int) -> float:
    """The official loop's score for n distinct answers of which those at the set bits of `mask` equal the
    prediction. The score depends only on this pattern (the float sum's last bit on where the matches sit),
    so running the literal loop once per pattern gives every question's score bit for bit."""
    return _leave_one_out([{"answer_id": j, "answer": (mask >> j) & 1} for j in range(n)], 1)


@dataclass
class AnswerKeys:
    """The ground-truth side of the official accuracy: every answer as the integer key of the string the
    evaluator of `rules` compares (vqa.data.keys.RULES), per group of questions with the same answer
    count. Built once from the answers (`build`); `scores` then scores any predictions against it, so the
    annotation side can be kept (vqa/evaluate_cache.py keeps it per annotation file) and only the
    predictions are new work.

    keys: compared string -> key. groups: (question rows, gt_key int32 [M, L], normalized bool [M]), where
    normalized marks the questions whose prediction is normalized before it is compared.
    """

    keys: dict[str, int]
    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    questions: int
    rules: str

    @classmethod
    def build(cls, texts: list[str], lengths: np.ndarray, rules: str = "current") -> AnswerKeys:
        """The keys of every question's answer strings, listed question after question (lengths[i] >= 1
        of them for question i)."""
        lengths = np.asarray(lengths, np.int64)
        n = len(lengths)
        if int(lengths.sum()) != len(texts) or (n and lengths.min() < 1):
            raise ValueError("need at least one answer per question, lengths summing to texts")
        table = Interner()
        gt = table.codes(texts, len(texts))
        starts = np.cumsum(lengths) - lengths
        groups = []
        for size in np.unique(lengths).tolist():
            rows = np.flatnonzero(lengths == size)
            answers = gt.reshape(n, size) if len(rows) == n else gt[starts[rows, None] + np.arange(size)]
            groups.append((rows, *compared_keys(table, answers, rules)))
        used = np.zeros(len(table.strings), bool)  # keep the compared strings only
        for _, key, _ in groups:
            used[key] = True
        kept = np.flatnonzero(used)
        renumber = np.zeros(len(table.strings), np.int32)
        renumber[kept] = np.arange(len(kept), dtype=np.int32)
        keys = {table.strings[c]: i for i, c in enumerate(kept.tolist())}
        return cls(keys, [(rows, renumber[key], norm) for rows, key, norm in groups], n, rules)

    def top_counts(self) -> np.ndarray:
        """int8 [Q]: how many answers equal the most common one, as compared (vqa.agreement)."""
        top = np.zeros(self.questions, np.int8)
        for rows, gt_key, _ in self.groups:
            top[rows] = most_common_count(gt_key)
        return top

    def prediction_keys(self, preds: list[str]) -> np.ndarray:
        """int32 [Q]: the key of each question's predicted string as compared, -1 for a string no answer
        has (it matches nothing)."""
        if len(preds) != self.questions:
            raise ValueError(f"need one prediction per question: {len(preds)} for {self.questions}")
        normalized = np.zeros(self.questions, bool)
        for rows, _, norm in self.groups:
            normalized[rows] = norm
        table = Interner()
        key = prediction_keys(table, table.codes(preds, len(preds)), normalized)
        get = self.keys.get
        return np.fromiter((get(s, -1) for s in table.strings), np.int32, len(table.strings))[key]

    def scores(self, preds: list[str]) -> np.ndarray:
        """Official accuracy [Q] (float64) of one predicted string per question, each question's answers
        taken as distinct (unique answer ids, as in every VQA release)."""
        return self.scores_of(self.prediction_keys(preds))

    def scores_of(self, pred_key: np.ndarray) -> np.ndarray:
        """`scores` of predictions already keyed (`prediction_keys`)."""
        scores = np.empty(self.questions, np.float64)
        for rows, gt_key, _ in self.groups:
            scores[rows] = _match_scores(gt_key, pred_key[rows])
        return scores

    def row(self, i: int) -> np.ndarray:
        """int32 [L]: the keys of question i's answers."""
        for rows, gt_key, _ in self.groups:
            j = int(np.searchsorted(rows, i))
            if j < len(rows) and rows[j] == i:
                return gt_key[j]
        raise IndexError(f"question {i} of {self.questions}")


def _match_scores(gt_key: np.ndarray, pred_key: np.ndarray) -> np.ndarray:
    """Scores [M] of predictions pred_key [M] against answers gt_key [M, L] (keys: equal = the same
    compared string), each the literal loop's score of its match pattern."""
    match = gt_key == pred_key[:, None]  # [M, L]
    n_answers = match.shape[1]
    if n_answers > _MAX_PATTERN:  # very long answer lists: the literal loop on key ids
        return np.array(
            [
                _leave_one_out([{"answer_id": j, "answer": k} for j, k in enumerate(row)], p)
                for row, p in zip(gt_key.tolist(), pred_key.tolist())
            ],
            np.float64,
        )
    packed = np.zeros((len(match), 4), np.uint8)  # bit j of the little-endian uint32: answer j matches
    packed[:, : (n_answers + 7) // 8] = np.packbits(match, axis=1, bitorder="little")
    patterns, inverse = np.unique(packed.view("<u4").ravel(), return_inverse=True)
    values = np.array([_pattern_score(n_answers, m) for m in patterns.tolist()], np.float64)
    return values[inverse.reshape(-1)]


def _check(gts: dict[int, Answers], preds: dict[int, str]) -> None:
    missing = [qid for qid in gts if qid not in preds]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction, e.g. {missing[:5]}")
    empty = [qid for qid, answers in gts.items() if not answers]
    if empty:
        raise ValueError(f"{len(empty)} questions have no ground-truth answers, e.g. {empty[:5]}")


def _distinct_rows(answer_lists: list[Answers]) -> np.ndarray:
    """[Q] bool: whether a question's answers are pairwise distinct objects for the leave-one-out.

    The official loop leaves one answer out with `item != gtAnsDatum` on whole dicts, so answers are
    distinct by answer_id even when their text repeats; dicts without a unique answer_id may be equal and
    are scored by the literal loop (False here, conservatively). Plain strings count as distinct answers
    (as if numbered 1..n). Vectorized for integer ids 0..31 (`distinct_small_ids`); any other row is
    checked with a set.
    """
    n = len(answer_lists)
    is_str = np.fromiter((isinstance(a[0], str) for a in answer_lists), bool, n)
    out = is_str.copy()
    dict_rows = np.flatnonzero(~is_str).tolist()
    if not dict_rows:
        return out
    lists = [answer_lists[i] for i in dict_rows]
    lengths = np.fromiter(map(len, lists), np.int64, len(lists))
    try:
        ids = np.array([x.get("answer_id") for a in lists for x in a])
    except ValueError:  # ragged nested values: not plain ids
        ids = None
    # only Python ints (and bools, equal to 0 / 1 as in Python) give a 1-D int64 array
    if ids is not None and ids.ndim == 1 and ids.dtype == np.int64:
        distinct, slow = distinct_small_ids(ids, lengths)
    else:
        distinct, slow = np.zeros(len(lists), bool), np.ones(len(lists), bool)
    for j in np.flatnonzero(slow).tolist():
        try:
            keys = {x.get("answer_id") for x in lists[j]}
        except TypeError:  # unhashable ids: left to the literal loop, which compares whole dicts
            continue
        distinct[j] = None not in keys and len(keys) == len(lists[j])
    out[dict_rows] = distinct
    return out


def distinct_small_ids(ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For integer answer ids flattened question by question (lengths[i] >= 1 each): per question whether
    its ids are pairwise distinct, and whether it could not be decided here (an id outside 0..31: check
    those with a set). Ids 0..31 are distinct iff the sum of 2**id equals their bitwise or (no carry; the
    int64 sum cannot overflow)."""
    if len(lengths) == 0:
        return np.zeros(0, bool), np.zeros(0, bool)
    starts = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    in_range = (ids >= 0) & (ids < 32)
    bit = np.left_shift(1, np.where(in_range, ids, 0))
    undecided = ~np.logical_and.reduceat(in_range, starts)
    distinct = (np.add.reduceat(bit, starts) == np.bitwise_or.reduceat(bit, starts)) & ~undecided
    return distinct, undecided


def _texts(answers: Answers) -> list[str]:
    return answers if isinstance(answers[0], str) else [a["answer"] for a in answers]


def official_scores(gts: dict[int, Answers], preds: dict[int, str], legacy: bool = False) -> dict[int, float]:
    """Per-question official accuracy in [0, 1] of the string predictions, current or legacy rules, equal
    (==) to the official loop. Questions whose answers are distinct (`_distinct_rows`: every VQA release)
    are scored by their match pattern; the others (dicts without unique answer_id, which the official
    loop leaves out together) by the literal loop on dicts whose answers are their keys. The inputs are
    not modified.
    """
    _check(gts, preds)
    qids = list(gts)
    lists = list(gts.values())
    texts = [t for answers in lists for t in _texts(answers)]
    lengths = np.fromiter(map(len, lists), np.int64, len(lists))
    gt = AnswerKeys.build(texts, lengths, "legacy" if legacy else "current")
    key = gt.prediction_keys([preds[q] for q in qids])
    scores = gt.scores_of(key)
    for i in np.flatnonzero(~_distinct_rows(lists)).tolist():  # whole dicts compared, as the loop does
        keyed = [dict(a, answer=k) for a, k in zip(lists[i], gt.row(i).tolist())]
        scores[i] = _leave_one_out(keyed, int(key[i]))
    return dict(zip(qids, scores.tolist()))

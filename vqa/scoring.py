"""The exact string path of the official VQA accuracy (`vqa eval`): answer strings in, per-question scores out.

`official_scores` / `distinct_answer_scores` are bit-for-bit equal to the official per-question loop
(`official_scores_reference`, kept literal for tests and as the benchmark baseline), vectorized: each
distinct string is interned and normalized once, the compared strings become integer ids in arrays, and
each question is scored by its match pattern (the literal loop run once per distinct pattern, so the float
sum's last bit is the official one). The rules are docs/vqa-reference.md section 3; the closed form the
training loop uses, the summaries and calibration are in vqa/metrics.py.

The official code normalizes the ground-truth answer dicts in place (`ansDic['answer'] = ...`), so scoring
the same annotation objects twice can change the result: after a first pass "Yes" / "yes" both read "yes",
the question looks unanimous, and the prediction "YES" is no longer normalized and scores 0. Neither of our
paths mutates its inputs (`official_scores_reference(..., in_place=True)` reproduces the quirk for tests).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vqa.data.answers import (
    COMMA_STRIP,
    PERIOD_STRIP,
    PERIOD_STRIP_COUNT,
    PUNCTUATION,
    clean_whitespace,
    process_digit_article,
    process_punctuation,
)

Answers = list[str] | list[dict]  # one question's ground truth: distinct strings, or dicts with "answer"


class _Cache(dict):
    """str -> fn(str), computed on first use: each distinct string is normalized once."""

    def __init__(self, fn: Callable[[str], str]):
        super().__init__()
        self.fn = fn

    def __missing__(self, s: str) -> str:
        out = self[s] = self.fn(s)
        return out


class _Ids(dict):
    """Interning table: str -> int, numbered 0, 1, ... in order of first appearance."""

    def __missing__(self, s: str) -> int:
        i = self[s] = len(self)
        return i


def intern(strings: list[str]) -> tuple[np.ndarray, list[str]]:
    """(int32 code of each string, the distinct strings in order of first appearance)."""
    table = _Ids()
    codes = _ids_of(strings, table)
    return codes, list(table)


def _ids_of(strings: list[str], table: _Ids) -> np.ndarray:
    """The ids of `strings` in `table` (adding new strings), as int32 [len(strings)]."""
    return np.fromiter(map(table.__getitem__, strings), np.int32, len(strings))


def _leave_one_out(items: list[dict], res) -> float:
    """The official scoring loop on one question's (already normalized) answer dicts, literally."""
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


def _key_map(fn: Callable[[str], str], strings: list[str], keys: _Ids, needed: np.ndarray | None = None):
    """int32 [len(strings)]: keys[fn(strings[i])] for every id i in `needed` (default: all), -1 elsewhere;
    fn runs once per distinct string."""
    out = np.full(len(strings), -1, np.int32)
    if needed is None:
        todo = range(len(strings))
    else:
        mark = np.zeros(len(strings), bool)
        mark[needed] = True
        todo = np.flatnonzero(mark).tolist()
    out[list(todo)] = np.fromiter((keys[fn(strings[i])] for i in todo), np.int32, len(todo))
    return out


def distinct_answer_scores(
    texts: list[str], lengths: np.ndarray, preds: list[str], legacy: bool = False, top_count: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Official accuracy [Q] (float64) of one predicted string per question, when each question's ground
    truth answers are distinct (unique answer_id, as in every VQA release): bit for bit the official loop.

    `texts` holds every question's answer strings, question after question (lengths[i] >= 1 of them for
    question i). Vectorized (`AnswerKeys`): every distinct string is cleaned / normalized once, the compared
    strings become integer keys in a [questions, answers] array (one per answer count: VQA has only 10),
    unanimity and matches are array operations, and each question's score is that of its match pattern
    (`_pattern_score`: the literal loop, run once per distinct pattern). With `top_count`, also each
    question's top count from the same keys (int8 [Q], vqa.agreement), which costs no second pass.
    """
    gt = AnswerKeys.build(texts, lengths, legacy)
    scores = gt.scores(preds)
    return (scores, gt.top_counts()) if top_count else scores


@dataclass
class AnswerKeys:
    """The ground-truth side of the official accuracy: every answer as the integer key of the string the
    evaluator compares, per group of questions with the same answer count. Built once from the answers
    (`build`); `scores` then scores any predictions against it, so the annotation side can be kept
    (vqa.evaluate caches it per annotation file) and only the predictions are new work.

    keys: compared string -> key. groups: (question rows, gt_key int32 [M, L], split bool [M]), where split
    marks the questions whose answers are not unanimous (current rules: after whitespace cleaning), whose
    answers are normalized (legacy: punctuation only) and, under the current rules, whose prediction is.
    """

    keys: dict[str, int]
    groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    questions: int
    legacy: bool

    @classmethod
    def build(cls, texts: list[str], lengths: np.ndarray, legacy: bool = False) -> AnswerKeys:
        lengths = np.asarray(lengths, np.int64)
        n = len(lengths)
        if int(lengths.sum()) != len(texts) or (n and lengths.min() < 1):
            raise ValueError("need at least one answer per question, lengths summing to texts")
        raw = _Ids()
        gt = _ids_of(texts, raw)
        strings = list(raw)
        keys = _Ids()  # the strings the evaluator compares, as ids (shared by the groups)
        starts = np.cumsum(lengths) - lengths
        groups = []
        for size in np.unique(lengths).tolist():
            rows = np.flatnonzero(lengths == size)
            answers = gt.reshape(n, size) if len(rows) == n else gt[starts[rows, None] + np.arange(size)]
            if legacy:  # ground truth raw, punctuation only when not unanimous
                split = (answers != answers[:, :1]).any(1)  # [M] not unanimous
                gt_key = np.where(
                    split[:, None],
                    _key_map(_punctuation, strings, keys, answers[split])[answers],
                    _key_map(str, strings, keys, answers[~split])[answers],
                )
            else:  # cleaned; normalized unless the cleaned ground truth is unanimous
                clean = _key_map(clean_whitespace, strings, keys, answers)[answers]
                split = (clean != clean[:, :1]).any(1)
                norm = _key_map(_normalize, list(keys), keys, clean[split])
                gt_key = np.where(split[:, None], norm[clean], clean)
            groups.append((rows, gt_key.astype(np.int32), split))
        return cls(dict(keys), groups, n, legacy)

    def top_counts(self) -> np.ndarray:
        """int8 [Q]: how many answers equal the most common one, as compared (vqa.agreement)."""
        from vqa.agreement import most_common_count  # not at the top: vqa.agreement imports this module

        top = np.zeros(self.questions, np.int8)
        for rows, gt_key, _ in self.groups:
            top[rows] = most_common_count(gt_key)
        return top

    def scores(self, preds: list[str]) -> np.ndarray:
        """Official accuracy [Q] (float64) of one predicted string per question."""
        if len(preds) != self.questions:
            raise ValueError(f"need one prediction per question: {len(preds)} for {self.questions}")
        table = _Ids()
        pred = _ids_of(preds, table)
        strings = list(table)
        clean = _Cache(clean_whitespace)
        if self.legacy:  # the prediction always cleaned and normalized
            as_compared = [_normalize(clean[s]) for s in strings]
            key = self._lookup(as_compared)[pred]
        else:  # cleaned; normalized where the question's answers are
            key = self._lookup([clean[s] for s in strings])[pred]
            split = np.zeros(self.questions, bool)
            for rows, _, group_split in self.groups:
                split[rows] = group_split
            needed = np.flatnonzero(np.bincount(pred[split], minlength=len(strings))).tolist()
            normalized = np.full(len(strings), -1, np.int32)
            normalized[needed] = self._lookup([_normalize(clean[strings[i]]) for i in needed])
            key = np.where(split, normalized[pred], key)
        scores = np.empty(self.questions, np.float64)
        for rows, gt_key, _ in self.groups:
            scores[rows] = _match_scores(gt_key, key[rows])
        return scores

    def _lookup(self, strings: list[str]) -> np.ndarray:
        """int32 key of each string, -1 for a string no answer has (it matches nothing)."""
        get = self.keys.get
        return np.fromiter((get(s, -1) for s in strings), np.int32, len(strings))


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


# The characters process_punctuation acts on: its 21 and the period.
_TOUCHED = re.compile("[" + re.escape("".join(PUNCTUATION) + ".") + "]")


def _punctuation(s: str) -> str:
    """process_punctuation(s), exactly, about 3x faster (tests compare the two on random strings).

    Only the punctuation characters present are handled: for an absent one the official replace is a
    no-op, and whether a character is deleted or becomes a space depends only on the original string,
    so the order of the replaces does not matter. The period regex runs only when there is a period.
    """
    present = set(_TOUCHED.findall(s))
    if not present:
        return s
    out = s
    every = COMMA_STRIP.search(s) is not None  # a comma between digits: every character is deleted
    for p in present - {"."}:
        out = out.replace(p, "" if every or p + " " in s or " " + p in s else " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT) if "." in present else out


def _normalize(s: str) -> str:
    """normalize_answer(s), with the same shortcut."""
    return process_digit_article(_punctuation(s))


def _normalize_cleaned(s: str) -> str:
    return _normalize(clean_whitespace(s))


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
    """Per-question official accuracy in [0, 1] of the string predictions, current or legacy rules.

    Equal (==) to `official_scores_reference`. Questions whose answers are distinct (`_distinct_rows`: every
    VQA release) go through the vectorized `distinct_answer_scores`; the others (dicts without unique
    answer_id, which the official loop leaves out together) through the literal loop on normalized copies.
    The inputs are not modified.
    """
    _check(gts, preds)
    qids = list(gts)
    lists = list(gts.values())
    distinct = _distinct_rows(lists)
    rows = np.flatnonzero(distinct).tolist()
    scores = np.empty(len(qids), np.float64)
    texts = [t for i in rows for t in _texts(lists[i])]
    lengths = np.fromiter((len(lists[i]) for i in rows), np.int64, len(rows))
    scores[distinct] = distinct_answer_scores(texts, lengths, [preds[qids[i]] for i in rows], legacy)
    clean = _Cache(clean_whitespace).__getitem__
    norm = _Cache(_normalize).__getitem__
    punct = _Cache(_punctuation).__getitem__
    for i in np.flatnonzero(~distinct).tolist():  # the official loop on normalized copies
        answers, pred = lists[i], preds[qids[i]]
        raw = _texts(answers)
        if legacy:  # ground truth raw, punctuation only when not unanimous; prediction always normalized
            keys = list(map(punct, raw)) if len(set(raw)) > 1 else raw
            res = norm(clean(pred))
        else:
            keys = list(map(clean, raw))
            if len(set(keys)) > 1:
                keys, res = list(map(norm, keys)), norm(clean(pred))
            else:
                res = clean(pred)
        scores[i] = _leave_one_out([dict(a, answer=key) for a, key in zip(answers, keys)], res)
    return dict(zip(qids, scores.tolist()))


def official_scores_reference(
    gts: dict[int, Answers], preds: dict[int, str], legacy: bool = False, in_place: bool = False
) -> dict[int, float]:
    """The official evaluator's per-question loop, literally (vqaEval.py `evaluate`), without any cache.

    String answers become dicts numbered by answer_id 1..n. With in_place=True the caller's answer dicts are
    normalized in place as the official code does (only to demonstrate that quirk); otherwise copies are.
    """
    _check(gts, preds)
    scores: dict[int, float] = {}
    for qid, answers in gts.items():
        if isinstance(answers[0], str):
            items = [{"answer_id": i + 1, "answer": a} for i, a in enumerate(answers)]
        else:
            items = answers if in_place else [dict(a) for a in answers]
        res_ans = preds[qid]
        res_ans = res_ans.replace("\n", " ")
        res_ans = res_ans.replace("\t", " ")
        res_ans = res_ans.strip()
        if legacy:
            res_ans = process_punctuation(res_ans)
            res_ans = process_digit_article(res_ans)
            if len({item["answer"] for item in items}) > 1:
                for item in items:
                    item["answer"] = process_punctuation(item["answer"])
        else:
            for item in items:
                item["answer"] = item["answer"].replace("\n", " ")
                item["answer"] = item["answer"].replace("\t", " ")
                item["answer"] = item["answer"].strip()
            if len({item["answer"] for item in items}) > 1:
                for item in items:
                    item["answer"] = process_punctuation(item["answer"])
                    item["answer"] = process_digit_article(item["answer"])
                res_ans = process_punctuation(res_ans)
                res_ans = process_digit_article(res_ans)
        scores[qid] = _leave_one_out(items, res_ans)
    return scores

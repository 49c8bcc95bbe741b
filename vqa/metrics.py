"""Official VQA accuracy: the closed form on class indices, the exact string path, per-type summaries.

Official rule (docs/vqa-reference.md sections 2-3; pytorch-vqa derives the same formula): a prediction equal
to m of the other ground-truth answers earns min(1, m / 3) against each left-out answer, averaged over the
answers. With the 10 answers distinct (unique answer_id), that depends only on the count k of answers equal
to the prediction: 0, .3, .6, .9, 1 for k = 0, 1, 2, 3, >= 4 (`vqa.data.answers.score_from_count`).

- `batch_accuracy`: the training loop's path, from the sparse targets `answer_idx` / `answer_score`.
- `official_scores`: `vqa eval`'s path, on answer strings, bit-for-bit equal to the official per-question
  loop (`official_scores_reference`, kept literal for tests and as the benchmark baseline) but normalizing
  each distinct string once and scoring by count.

For a predicted vocab string both paths give the same number (see `AnswerVocab.build`).

The official code normalizes the ground-truth answer dicts in place (`ansDic['answer'] = ...`), so scoring
the same annotation objects twice can change the result: after a first pass "Yes" / "yes" both read "yes",
the question looks unanimous, and the prediction "YES" is no longer normalized and scores 0. Neither of our
paths mutates its inputs (`official_scores_reference(..., in_place=True)` reproduces the quirk for tests).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from vqa.data.answers import clean_whitespace, normalize_answer, process_digit_article, process_punctuation

Answers = list[str] | list[dict]  # one question's ground truth: distinct strings, or dicts with "answer"


def batch_accuracy(pred: Tensor, answer_idx: Tensor, answer_score: Tensor) -> Tensor:
    """Official accuracy of predicted class indices, closed form: sum(answer_score[answer_idx == pred]).

    pred long [B]; answer_idx long [B, K] (unique per row); answer_score float [B, K]. Padding slots hold
    index 0 with score 0, so a prediction of class 0 matching a padded slot adds nothing.
    """
    hit = answer_idx == pred.unsqueeze(1)  # [B, K] bool, at most one true per row
    return (answer_score * hit).sum(dim=1)  # [B]


class _Cache(dict):
    """str -> fn(str), computed on first use: each distinct string is normalized once."""

    def __init__(self, fn: Callable[[str], str]):
        super().__init__()
        self.fn = fn

    def __missing__(self, s: str) -> str:
        out = self[s] = self.fn(s)
        return out


def _texts(answers: Answers) -> tuple[list[str], bool]:
    """Answer texts, and whether the answers are pairwise distinct objects for the leave-one-out.

    The official loop leaves one answer out with `item != gtAnsDatum` on whole dicts, so answers are
    distinct by answer_id even when their text repeats; dicts without a unique answer_id that are otherwise
    equal are left out all at once. Plain strings count as distinct answers (as if numbered 1..n).
    """
    if not answers or isinstance(answers[0], str):
        return answers, True
    ids = {a.get("answer_id") for a in answers}
    return [a["answer"] for a in answers], None not in ids and len(ids) == len(answers)


def _leave_one_out(items: list[dict], res: str) -> float:
    """The official scoring loop on one question's (already normalized) answer dicts, literally."""
    gt_acc = []
    for gt in items:
        other = [item for item in items if item != gt]
        matching = [item for item in other if item["answer"] == res]
        gt_acc.append(min(1, float(len(matching)) / 3))
    return float(sum(gt_acc)) / len(gt_acc)


def _check(gts: dict[int, Answers], preds: dict[int, str]) -> None:
    missing = [qid for qid in gts if qid not in preds]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction, e.g. {missing[:5]}")
    empty = [qid for qid, answers in gts.items() if not answers]
    if empty:
        raise ValueError(f"{len(empty)} questions have no ground-truth answers, e.g. {empty[:5]}")


def official_scores(gts: dict[int, Answers], preds: dict[int, str], legacy: bool = False) -> dict[int, float]:
    """Per-question official accuracy in [0, 1] of the string predictions, current or legacy rules.

    Equal (==) to `official_scores_reference`: each distinct string is cleaned / normalized once (cache),
    then the score comes from the count k of ground-truth keys equal to the prediction key. For k = 1..3 the
    float sum is taken in the official order, since its last bit depends on where the matches sit. The
    inputs are not modified.
    """
    _check(gts, preds)
    clean = _Cache(clean_whitespace).__getitem__
    norm = _Cache(normalize_answer).__getitem__
    punct = _Cache(process_punctuation).__getitem__
    scores: dict[int, float] = {}
    for qid, answers in gts.items():
        raw, distinct = _texts(answers)
        if legacy:  # ground truth raw, punctuation only when not unanimous; prediction always normalized
            keys = list(map(punct, raw)) if len(set(raw)) > 1 else raw
            res = norm(clean(preds[qid]))
        else:
            keys = list(map(clean, raw))
            if len(set(keys)) > 1:
                keys = list(map(norm, keys))
                res = norm(clean(preds[qid]))
            else:
                res = clean(preds[qid])
        k = keys.count(res)
        if not distinct:
            scores[qid] = _leave_one_out([dict(a, answer=key) for a, key in zip(answers, keys)], res)
        elif k == 0:
            scores[qid] = 0.0
        elif k >= 4:
            scores[qid] = 1.0
        else:
            hit, miss = min(1, float(k - 1) / 3), min(1, float(k) / 3)
            scores[qid] = float(sum([hit if key == res else miss for key in keys])) / len(keys)
    return scores


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


def _percent(values: list[float]) -> float:
    # The official setAccuracy: round(100 * float(sum(acc)) / len(acc), 2) over unrounded scores.
    return round(100 * float(sum(values)) / len(values), 2)


def summarize(
    scores: dict[int, float], answer_types: dict[int, str], question_types: dict[int, str] | None = None
) -> dict:
    """{"overall", "perAnswerType"[, "perQuestionType"]} in percent, rounded as the official tool rounds.

    Means are over unrounded per-question scores, summed in the order of `scores` (the official order is
    the annotation file's). "perQuestionType" is present only when `question_types` is given.
    """
    if not scores:
        raise ValueError("no per-question scores to summarize")
    per_answer: dict[str, list[float]] = {}
    per_question: dict[str, list[float]] = {}
    for qid, s in scores.items():
        per_answer.setdefault(answer_types[qid], []).append(s)
        if question_types is not None:
            per_question.setdefault(question_types[qid], []).append(s)
    out = {
        "overall": _percent(list(scores.values())),
        "perAnswerType": {t: _percent(v) for t, v in per_answer.items()},
    }
    if question_types is not None:
        out["perQuestionType"] = {t: _percent(v) for t, v in per_question.items()}
    return out


def expected_calibration_error(confidence: list[float], accuracy: list[float], bins: int = 15) -> float:
    """ECE (Guo et al. 2017) with the official per-question VQA accuracy as correctness:
    sum over equal-width confidence bins of |mean accuracy - mean confidence| weighted by bin size."""
    import numpy as np

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

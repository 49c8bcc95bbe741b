"""The official evaluators, literally, per question, as the tests' reference: nothing here shares code
with the package's vectorized paths (vqa/data/keys.py, vqa/scoring.py, vqa/data/answers.py) except the
verbatim tables, so a differential test against these functions can disagree.

- `process_punctuation`: GT-Vision-Lab/VQA vqaEval.py's processPunctuation, its 21 replaces in order.
- `official_scores_reference`: vqaEval.py's `evaluate` loop (current or legacy rules).
- `vizwiz_loop`: VizWiz's vqaEval.py on one question.
- `gt_keys` / `prediction_key` / `build_targets`: the compared strings and the training targets of one
  annotation, question by question, with Python's Counter and float arithmetic.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from vqa.data.keys import (
    ARTICLES,
    COMMA_STRIP,
    CONTRACTIONS,
    NUMBER_WORDS,
    PERIOD_STRIP,
    PERIOD_STRIP_COUNT,
    PUNCTUATION,
)


def process_punctuation(s: str) -> str:
    """processPunctuation, literally: each character deleted or spaced, decided on the original string."""
    out = s
    comma_between_digits = COMMA_STRIP.search(s) is not None
    for p in PUNCTUATION:
        if p + " " in s or " " + p in s or comma_between_digits:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_STRIP_COUNT)


def process_digit_article(s: str) -> str:
    """processDigitArticle, literally (its loop over the lowercased words)."""
    out = []
    for word in s.lower().split():
        word = NUMBER_WORDS.get(word, word)  # the evaluator's manualMap.setdefault, without adding
        if word not in ARTICLES:
            out.append(word)
    for i, word in enumerate(out):
        if word in CONTRACTIONS:
            out[i] = CONTRACTIONS[word]
    return " ".join(out)


def normalize_answer(s: str) -> str:
    return process_digit_article(process_punctuation(s))


def clean(s: str) -> str:
    return s.replace("\n", " ").replace("\t", " ").strip()


def _leave_one_out(items: list[dict], res) -> float:
    gt_acc = []
    for gt in items:
        other = [item for item in items if item != gt]
        matching = [item for item in other if item["answer"] == res]
        gt_acc.append(min(1, float(len(matching)) / 3))
    return float(sum(gt_acc)) / len(gt_acc)


def official_scores_reference(gts: dict, preds: dict, legacy: bool = False, in_place: bool = False) -> dict:
    """The official evaluator's per-question loop, literally (vqaEval.py `evaluate`), without any cache.

    String answers become dicts numbered by answer_id 1..n. With in_place=True the caller's answer dicts are
    normalized in place as the official code does (only to demonstrate that quirk); otherwise copies are.
    """
    missing = [qid for qid in gts if qid not in preds]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction")
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


def vizwiz_loop(answers: list[str], prediction: str) -> float:
    """VizWiz's evaluator on one question, literally (its vqaEval.py): prediction normalized, ground
    truth as released, left out by position."""
    res = process_digit_article(process_punctuation(clean(prediction)))
    acc = []
    for i in range(len(answers)):
        other = [a for j, a in enumerate(answers) if i != j]
        acc.append(min(1, float(len([a for a in other if a == res])) / 3))
    return float(sum(acc)) / len(acc)


def gt_keys(answers: list[str], legacy: bool = False) -> list[str]:
    """The strings the evaluator compares for one question's ground-truth answers."""
    if legacy:
        return [process_punctuation(a) for a in answers] if len(set(answers)) > 1 else list(answers)
    cleaned = [clean(a) for a in answers]
    return [normalize_answer(a) for a in cleaned] if len(set(cleaned)) > 1 else cleaned


def prediction_key(answer: str, unanimous: bool, legacy: bool = False) -> str:
    """The string the evaluator compares for a prediction; `unanimous`: the question's keys are one."""
    answer = clean(answer)
    return normalize_answer(answer) if legacy or not unanimous else answer


def score_of(k: int, n: int = 10) -> float:
    """The leave-one-out average of a prediction equal to k of n distinct answers, literally."""
    return _leave_one_out([{"answer_id": j, "answer": int(j < k)} for j in range(n)], 1)


@dataclass
class Targets:
    """One question's targets as the Batch contract has them, before padding."""

    answer: int  # vocab index of the most common answer, -1 outside the vocabulary
    answer_idx: list[int]  # unique in-vocabulary keys, in order of first appearance
    answer_weight: list[float]  # count / n, renormalized to sum 1 with oov="renormalize"
    answer_score: list[float]  # the official score of a prediction equal to that key
    oov_weight: float  # count / n summed over the keys outside the vocabulary


def build_targets(answers: list[str], best: str, stoi: dict[str, int], oov: str = "drop") -> Targets:
    """Hard, soft and score targets of one question's answers and multiple-choice answer, keyed like the
    evaluator (current rules), question by question."""
    keys = gt_keys(answers)
    n = len(keys)
    answer = stoi.get(prediction_key(best, len(set(keys)) <= 1), -1)
    idx, weight, score, oov_weight = [], [], [], 0.0
    for key, count in Counter(keys).items():  # insertion order = first appearance
        if key not in stoi:
            oov_weight += count / n
            continue
        idx.append(stoi[key])
        weight.append(count / n)
        score.append(score_of(count, n))
    total = sum(weight)
    if oov == "renormalize" and total > 0:
        weight = [w / total for w in weight]
    return Targets(answer, idx, weight, score, oov_weight)

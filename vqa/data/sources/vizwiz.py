"""VizWiz-VQA (Gurari et al. 2018): questions blind people asked about their own photos.

Files (vizwiz.org): {train,val,test}.json, each a bare JSON list of {image, question, answers:
[10 x {answer, answer_confidence}], answer_type ("unanswerable" besides VQA's three), answerable (0 /
1)}; test entries have image and question only. There are no ids: an entry is keyed by its image file
name (VizWiz_val_00000000.jpg, so `vqa extract` stores file names), a question's internal id is its
row in the file. Results: [{"image", "answer"}], optionally with an "answerable" score.

Scoring follows VizWiz's own evaluator (vqaEval.py of its VQA API): the prediction is always cleaned
and normalized, the ground truth never (compared as released), answers are left out by position, and
answerability is scored by average precision (and F1 at 0.5) of the predicted `answerable` score, with
"unanswerable" the positive class. Known difference: its contraction table writes typographic
apostrophes in some expansions ("dont" -> "don’t"); the prediction here goes through the VQA table.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import numpy as np

from vqa import io
from vqa.agreement import top_counts
from vqa.data.answers import ANSWER_TYPES, ANSWERS_PER_QUESTION
from vqa.data.sources.base import Source, Split
from vqa.data.sources.official import check_results, skipped_report
from vqa.data.sources.records import Records, build_records
from vqa.errors import UserError

RESULT_HINT = 'write exactly one {"image": str, "answer": str} per image of the annotations'


class _Answer(msgspec.Struct, gc=False):
    answer: str


class _Entry(msgspec.Struct, gc=False):
    image: str
    question: str
    answers: list[_Answer] | msgspec.UnsetType = msgspec.UNSET
    answer_type: str | msgspec.UnsetType = msgspec.UNSET
    answerable: int | msgspec.UnsetType = msgspec.UNSET


def read_entries(path: Path, what: str, annotated: bool) -> list[_Entry]:
    """The entries of a VizWiz file, each checked; answers required when `annotated`."""
    entries = io.read_json_as(path, list[_Entry])
    if entries is None:
        data = io.read_json(path, what, hint="see data/README.md (VizWiz-VQA)")
        if not isinstance(data, list):
            raise UserError(
                f"{what} file {path}: the top level is not a JSON list; VizWiz files ({{train,val,test}}.json) "
                "are lists of {image, question, answers, answer_type, answerable}"
            )
        try:
            entries = msgspec.convert(data, list[_Entry])
        except msgspec.ValidationError as e:
            raise UserError(f"{what} file {path}: {e}; use the official VizWiz-VQA file") from None
    seen: set[str] = set()
    for i, e in enumerate(entries):
        if e.image in seen:
            raise UserError(f"{path}: image {e.image} appears twice (entry {i}); the file is corrupt")
        seen.add(e.image)
        if annotated:
            for key in ("answers", "answer_type", "answerable"):
                if getattr(e, key) is msgspec.UNSET:
                    raise UserError(
                        f"{path}: entry {i} ({e.image}) has no '{key}'; this split has answers in the "
                        "official release: use the official VizWiz-VQA file"
                    )
    if not entries:
        raise UserError(f"{path}: no questions; point data.root at a complete dataset")
    return entries


def read_vizwiz(source: Source, split: str, q_path: Path, a_path: Path | None) -> Records:
    annotated = source.splits[split].annotated
    entries = read_entries(q_path, "questions", annotated)
    columns = dict(
        **source.record_fields(split),
        question_id=list(range(len(entries))),
        image_key=[e.image for e in entries],
        group=[source.splits[split].images] * len(entries),
        question=[e.question for e in entries],
    )
    if not annotated:
        return build_records(**columns)
    answers = [[x.answer for x in e.answers] for e in entries]
    return build_records(
        **columns,
        answers=answers,
        best=[Counter(a).most_common(1)[0][0] if a else None for a in answers],
        answer_type=[e.answer_type for e in entries],
        answerable=[e.answerable for e in entries],
    )


def vizwiz_scores(texts: list[str], lengths: np.ndarray, preds: list[str]) -> np.ndarray:
    """Per-question accuracy [Q] under VizWiz's rules, bit for bit its loop: the prediction cleaned and
    normalized, ground truth as released, each answer left out by position (vqa.data.keys, "vizwiz")."""
    from vqa.scoring import AnswerKeys  # only when scoring: reading a split needs no scoring layer

    return AnswerKeys.build(texts, lengths, "vizwiz").scores(preds)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """scikit-learn's average_precision_score (binary), which VizWiz's evaluator calls: sum over score
    thresholds of (recall step) x precision; None without a positive label."""
    order = np.argsort(-scores, kind="mergesort")
    y, s = labels[order].astype(np.float64), scores[order]
    if y.sum() == 0:
        return None
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    tps = np.cumsum(y)[last]
    fps = 1 + last - tps
    precision, recall = tps / (tps + fps), tps / tps[-1]
    precision, recall = np.r_[precision[::-1], 1], np.r_[recall[::-1], 0]
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def _f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum(labels & predicted))
    denominator = 2 * tp + np.sum(~labels & predicted) + np.sum(labels & ~predicted)
    return 2 * tp / denominator if denominator else 0.0


def evaluate_vizwiz(annotations: Path, questions: Path | None, results, legacy: bool = False) -> dict:
    """`vqa eval --source vizwiz`: the report for a results file (a path, or its decoded entries)."""
    if legacy:
        raise UserError("--legacy applies to the VQA evaluator's rule sets; VizWiz has one (drop --legacy)")
    if questions is not None and Path(questions) != Path(annotations):
        raise UserError(
            f"--questions {questions}: a VizWiz file holds its questions and answers together; pass it "
            "as --annotations alone"
        )
    entries = read_entries(Path(annotations), "annotations", annotated=True)
    scored = [e for e in entries if len(e.answers) == ANSWERS_PER_QUESTION]  # has_all_answers
    skipped = [e.image for e in entries if len(e.answers) != ANSWERS_PER_QUESTION]
    if not scored:
        raise UserError(f"no annotation has exactly {ANSWERS_PER_QUESTION} answers, so nothing can be scored")
    data = results if isinstance(results, list) else io.read_json(results, "results")
    preds = check_results(
        data, results, {e.image for e in scored}, set(skipped), key="image", hint=RESULT_HINT
    )
    lengths = np.full(len(scored), ANSWERS_PER_QUESTION, np.int64)
    texts = [x.answer for e in scored for x in e.answers]
    scores = vizwiz_scores(texts, lengths, [preds[e.image] for e in scored])
    images, types = [e.image for e in scored], [e.answer_type for e in scored]
    top = top_counts(texts, "vizwiz")
    report = skipped_report(images, scores, types, None, "vizwiz", skipped, "images", top_counts=top)
    given = [r.get("answerable") for r in data if isinstance(r, dict) and r.get("image") in preds]
    numbers = [a for a in given if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if numbers and len(numbers) != len(given):
        raise UserError(
            f"results file {results}: {len(numbers)} entries carry a numeric 'answerable' score and "
            f"{len(given) - len(numbers)} do not; give one for every image or for none"
        )
    if numbers:
        score = {r["image"]: float(r["answerable"]) for r in data if r["image"] in preds}
        labels = np.array([1 - e.answerable for e in scored]) == 1  # unanswerable is the positive class
        predicted = 1.0 - np.array([score[e.image] for e in scored])
        ap = average_precision(labels, predicted)
        report["unanswerability"] = {
            "average_precision": None if ap is None else round(100 * ap, 2),
            "f1_score": round(100 * _f1(labels, predicted > 0.5), 2),
        }
    return report


VIZWIZ = Source(
    name="vizwiz",
    title="VizWiz-VQA",
    questions="{split}.json",
    answers="",  # the answers are in the questions file
    splits={
        "train": Split("train", annotated=True),
        "val": Split("val", annotated=True),
        "test": Split(
            "test", annotated=False, server="the test file for the VizWiz-VQA evaluation server (EvalAI)"
        ),
    },
    read=read_vizwiz,
    results_name="vizwiz_{split}_{name}_results.json",
    keyed_by="image",
    rules="vizwiz",
    layout=None,
    evaluate=evaluate_vizwiz,
    answer_types=(*ANSWER_TYPES, "unanswerable"),
)

"""`vqa eval`: score a results file with the official VQA accuracy and write the official report.

    vqa eval --results R.json --annotations A.json --questions Q.json [--legacy] [--out report.json]

The report has the official tool's structure (overall, perAnswerType, perQuestionType, per-question scores
as its evalQA) plus the rules used ("current", the server's since 2021, or "legacy", pre-2021 / OpenVQA):
on adversarial strings the two differ by many points, so a number without its rules is ambiguous.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
import numpy as np

from vqa.data.answers import ANSWERS_PER_QUESTION, has_all_answers
from vqa.errors import UserError
from vqa.io import gc_paused, read_json, read_json_as, write_json_atomic
from vqa.metrics import (
    distinct_answer_scores,
    distinct_small_ids,
    official_scores,
    percent_scores,
    summarize_scores,
)

RESULT_HINT = 'write exactly one {"question_id": int, "answer": str} per question of the annotations'
SHOW = 5  # offenders shown per problem


def _show(items: list) -> str:
    """The first few offenders (ints or pre-formatted strings), comma-separated."""
    return ", ".join(_clip(str(x)) for x in items[:SHOW]) + (", ..." if len(items) > SHOW else "")


def _short(value) -> str:
    """A JSON value as one short line (repr quotes strings and escapes newlines)."""
    return _clip(repr(value))


def _clip(s: str) -> str:
    return s if len(s) <= 60 else s[:57] + "..."


def load_results(path, question_ids: set[int], optional: set[int] = frozenset()) -> dict[int, str]:
    """{question_id: answer} from a results file covering exactly `question_ids`, strictly checked.
    Ids in `optional` (questions that are not scored) may be present or absent.

    Any problem (not a list, an entry that is not an object, a non-integer question_id, a non-string
    answer; else duplicate, missing or extra ids) raises one UserError line that names the file, counts the
    offenders of each kind and shows the first few.
    """
    data = read_json(path, "results")
    if not isinstance(data, list):
        raise UserError(
            f"results file {path}: the top level is not a JSON list ({type(data).__name__}); {RESULT_HINT}"
        )
    not_object, bad_id, bad_answer = [], [], []
    results: dict[int, str] = {}
    duplicate: list[int] = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            not_object.append(f"#{i} {_short(entry)}")
            continue
        qid, answer = entry.get("question_id"), entry.get("answer")
        if type(qid) is not int:  # bool is an int subclass: refused too
            bad_id.append(f"#{i} {_short(qid)}")
        elif not isinstance(answer, str):
            bad_answer.append(f"#{i} (question_id {qid}) {_short(answer)}")
        elif qid in results:
            duplicate.append(qid)
        else:
            results[qid] = answer
    problems = [
        f"{len(items)} {label} ({_show(items)})"
        for label, items in (
            ("entries that are not objects", not_object),
            ("entries without an integer question_id", bad_id),
            ("entries without a string answer", bad_answer),
        )
        if items
    ]
    if not problems:  # the id set is only meaningful once every entry is well-formed
        missing = sorted(question_ids - results.keys())
        extra = sorted(results.keys() - question_ids - optional)
        dup = sorted(set(duplicate))
        problems = [
            f"{len(items)} {label} ({_show(items)})"
            for label, items in (
                ("duplicate question ids", dup),
                ("missing question ids", missing),
                ("question ids not in the annotations", extra),
            )
            if items
        ]
    if problems:
        raise UserError(f"results file {path}: {'; '.join(problems)}; {RESULT_HINT}")
    return results


def _records(path, what: str, key: str, required: tuple[str, ...]) -> list[dict]:
    """The `key` list of an official file, each entry an object with the `required` keys and a unique
    integer question_id."""
    records = read_json(path, what, key=key)
    seen: set[int] = set()
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise UserError(
                f"{what} file {path}: {key}[{i}] is not an object; use an official VQA v2 {what} file"
            )
        for k in required:
            if k not in r:
                raise UserError(
                    f"{what} file {path}: {key}[{i}] has no key '{k}'; use an official VQA v2 {what} file"
                )
        qid = r["question_id"]
        if type(qid) is not int:
            raise UserError(f"{what} file {path}: {key}[{i}] has a non-integer question_id {_short(qid)}")
        if qid in seen:
            raise UserError(f"{what} file {path}: question_id {qid} appears twice in '{key}'; fix the file")
        seen.add(qid)
    return records


def load_annotations(path) -> list[dict]:
    """The `annotations` list of an official VQA v2 annotation file, with the keys scoring needs checked."""
    required = (
        "question_id",
        "image_id",
        "question_type",
        "answer_type",
        "multiple_choice_answer",
        "answers",
    )
    annotations = _records(path, "annotations", "annotations", required)
    for a in annotations:
        answers = a["answers"]
        if not isinstance(answers, list) or not all(
            isinstance(x, dict) and isinstance(x.get("answer"), str) for x in answers
        ):
            raise UserError(
                f"annotations file {path}: question_id {a['question_id']} key 'answers' is not a list of "
                f'{{"answer": str, ...}} objects; use an official VQA v2 annotation file'
            )
    return annotations


def unscored_ids(annotations: list[dict]) -> list[int]:
    """Question ids whose annotation does not have exactly 10 answers: not scored, as training leaves them
    out (vqa.data.answers.has_all_answers), and counted in the report."""
    return [a["question_id"] for a in annotations if not has_all_answers(a)]


def load_questions(path) -> list[dict]:
    """The `questions` list of an official VQA v2 question file."""
    return _records(path, "questions", "questions", ("question_id", "image_id", "question"))


def evaluate(results: dict[int, str], annotations: list[dict], legacy: bool = False) -> dict:
    """The official report for predictions `results` against `annotations` (the official evalQA and
    accuracy dicts): overall, perAnswerType, perQuestionType in percent, perQuestion {qid: round(100 *
    score, 2)}, plus the rules used and the number of questions. Questions are taken in annotation order,
    as the official tool takes them, so the rounded means match it exactly. A question whose annotation
    does not have exactly 10 answers is not scored; the report counts it under "skipped"."""
    skipped = unscored_ids(annotations)
    if skipped:
        annotations = [a for a in annotations if has_all_answers(a)]
        if not annotations:
            raise UserError(
                f"no annotation has exactly {ANSWERS_PER_QUESTION} answers, so nothing can be scored; "
                "use official-format annotations (10 answers per question)"
            )
    gts = {a["question_id"]: a["answers"] for a in annotations}
    scores = official_scores(gts, results, legacy=legacy)
    answer_types = {a["question_id"]: a["answer_type"] for a in annotations}
    question_types = {a["question_id"]: a["question_type"] for a in annotations}
    qids = list(scores)
    return _report(
        qids,
        np.fromiter(scores.values(), np.float64, len(qids)),
        [answer_types[q] for q in qids],
        [question_types[q] for q in qids],
        legacy,
        skipped,
    )


def _report(
    qids: list[int],
    scores: np.ndarray,
    answer_types: list,
    question_types: list,
    legacy: bool,
    skipped: list[int],
) -> dict:
    """The report of `evaluate` from the scored questions' ids, scores [Q] and types, in annotation order."""
    report = summarize_scores(scores, answer_types, question_types)
    report["perQuestion"] = dict(zip(qids, percent_scores(scores)))
    report["rules"] = "legacy" if legacy else "current"
    report["questions"] = len(qids)
    if skipped:
        report["skipped"] = {"reason": f"annotation without exactly {ANSWERS_PER_QUESTION} answers",
                             "questions": len(skipped), "question_ids": skipped}  # fmt: skip
    return report


# The plain official form, decoded straight into these by msgspec (only the fields named, types checked).
# A file that does not fit (a missing or mistyped key, answers without an integer answer_id, ...) is read
# by the checked path instead, which names any problem or scores the unusual form exactly.
class _Answer(msgspec.Struct, gc=False):
    answer: str
    answer_id: int


class _Annotation(msgspec.Struct, gc=False):
    question_id: int
    image_id: Any
    question_type: str
    answer_type: str
    multiple_choice_answer: Any
    answers: list[_Answer]


class _AnnotationFile(msgspec.Struct, gc=False):
    annotations: list[_Annotation]


class _Question(msgspec.Struct, gc=False):
    question_id: int
    image_id: Any
    question: Any


class _QuestionFile(msgspec.Struct, gc=False):
    questions: list[_Question]


class _Result(msgspec.Struct, gc=False):
    question_id: int
    answer: str


def typed_report(args: argparse.Namespace) -> dict | None:
    """`vqa eval`'s report from the three files decoded straight into the plain official form (the fast
    path: no dict per answer, scores vectorized), or None when a file is not in that form or fails a
    check; then `checked_report` runs, which words the problem (or scores the unusual form). For files
    in the plain form both give the same report and accept the same files (tests/test_evaluate.py)."""
    annotation_file = read_json_as(args.annotations, _AnnotationFile)
    if annotation_file is None:
        return None
    annotations = annotation_file.annotations
    all_ids = [a.question_id for a in annotations]
    ann_ids = set(all_ids)
    question_file = read_json_as(args.questions, _QuestionFile)
    if (
        len(ann_ids) != len(all_ids)
        or question_file is None
        or len(question_file.questions) != len(all_ids)
        or {q.question_id for q in question_file.questions} != ann_ids
    ):
        return None
    skipped = [
        a.question_id for a in annotations if len(a.answers) != ANSWERS_PER_QUESTION
    ]  # has_all_answers
    if skipped:
        annotations = [a for a in annotations if len(a.answers) == ANSWERS_PER_QUESTION]
    qids = [a.question_id for a in annotations]
    results = read_json_as(args.results, list[_Result])
    if not qids or results is None:
        return None
    preds = {r.question_id: r.answer for r in results}
    # exactly the scored ids, each once; the skipped ones may be there or not
    if (
        len(preds) != len(results)
        or not preds.keys() <= ann_ids
        or len(preds.keys() - set(skipped)) != len(qids)
    ):
        return None
    lengths = np.full(len(annotations), ANSWERS_PER_QUESTION, np.int64)
    ids = [x.answer_id for a in annotations for x in a.answers]
    distinct, undecided = distinct_small_ids(np.fromiter(ids, np.int64, len(ids)), lengths)
    for i in np.flatnonzero(undecided).tolist():
        distinct[i] = len({x.answer_id for x in annotations[i].answers}) == ANSWERS_PER_QUESTION
    if not distinct.all():  # equal answer ids: the official loop compares whole answer dicts
        return None
    scores = distinct_answer_scores(
        [x.answer for a in annotations for x in a.answers], lengths, [preds[q] for q in qids], args.legacy
    )
    return _report(
        qids,
        scores,
        [a.answer_type for a in annotations],
        [a.question_type for a in annotations],
        args.legacy,
        skipped,
    )


def format_report(report: dict) -> str:
    """Human-readable lines: overall, then per answer type and per question type (sorted by name)."""
    lines = [
        f"VQA accuracy ({report['rules']} rules, {report['questions']} questions): {report['overall']:.2f}"
    ]
    for title, key in (("per answer type", "perAnswerType"), ("per question type", "perQuestionType")):
        table = report.get(key, {})
        width = max((len(t) for t in table), default=0)
        lines.append(f"{title}:")
        lines += [f"  {t:<{width}}  {table[t]:6.2f}" for t in sorted(table)]
    if report.get("skipped"):
        skipped = report["skipped"]
        lines.append(f"skipped: {skipped['questions']} questions not scored, {skipped['reason']} "
                     f"(question ids {_show(skipped['question_ids'])}); training leaves them out too")  # fmt: skip
    return "\n".join(lines)


def checked_report(args: argparse.Namespace) -> dict:
    """`vqa eval`'s report with every file checked entry by entry (one UserError line names a problem)."""
    annotations = load_annotations(args.annotations)
    questions = load_questions(args.questions)
    ann_ids = {a["question_id"] for a in annotations}
    q_ids = {q["question_id"] for q in questions}
    if ann_ids != q_ids:
        only_q, only_a = sorted(q_ids - ann_ids), sorted(ann_ids - q_ids)
        raise UserError(
            f"questions file {args.questions} and annotations file {args.annotations} hold different question ids "
            f"({len(only_q)} only in the questions ({_show(only_q)}), {len(only_a)} only in the annotations "
            f"({_show(only_a)})); pass the two files of the same split"
        )
    skipped = set(unscored_ids(annotations))
    results = load_results(args.results, ann_ids - skipped, optional=skipped)
    return evaluate(results, annotations, legacy=args.legacy)


def eval_command(args: argparse.Namespace) -> int:
    """`vqa eval`: check the three files, score, print the report, write --out; 0 on success.

    Without garbage collection: nothing here builds a reference cycle, and the collector would walk the
    decoded files' half a million containers again and again."""
    with gc_paused():
        report = typed_report(args)
        if report is None:
            report = checked_report(args)
        print(format_report(report))
        if args.out:
            try:  # temp file + rename: a reader never sees a half-written report
                write_json_atomic(args.out, report, indent=1)
            except OSError as e:
                raise UserError(
                    f"cannot write report {args.out} ({e.strerror or e}); choose another --out"
                ) from None
            print(f"report written to {args.out}")
    return 0

"""`vqa eval`: score a results file with the official VQA accuracy and write the official report.

    vqa eval [--source vqa2] --results R.json --annotations A.json --questions Q.json [--legacy] [--out report.json]

--source names the dataset (vqa/data/sources): VQA v1 / v2, OK-VQA and VQA-CP files are read here
(VQA-CP's are bare lists, OK-VQA's have no multiple_choice_answer); VizWiz scores its own format
(vqa/data/sources/vizwiz.py: results keyed by image, its evaluator's rules, answerability).

The report has the official tool's structure (overall, perAnswerType, perQuestionType, per-question scores
as its evalQA) plus the rules used ("current", the server's since 2021, or "legacy", pre-2021 / OpenVQA):
on adversarial strings the two differ by many points, so a number without its rules is ambiguous. It adds
perAgreement: the accuracy of the questions grouped by how many annotators gave the most common answer
(vqa/agreement.py), the same buckets the training loop logs as `val/accuracy_agree_*`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import msgspec
import numpy as np

from vqa.agreement import AGREEMENT_BUCKETS, bucket_label, top_counts
from vqa.data.answers import ANSWERS_PER_QUESTION, has_all_answers
from vqa.data.sources import Source, get_source
from vqa.data.sources.official import (  # noqa: F401 - the checked readers, also imported from here
    RESULT_HINT,
    _show,
    check_results,
    load_annotations,
    load_questions,
    load_results,
    skipped_report,
    unscored_ids,
)
from vqa.errors import UserError
from vqa.io import gc_paused, mapped, read_json_as, write_json_atomic
from vqa.scoring import distinct_answer_scores, distinct_small_ids, official_scores


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
    rules = "legacy" if legacy else "current"
    texts = [x["answer"] for a in annotations for x in a["answers"]]
    return skipped_report(
        qids,
        np.fromiter(scores.values(), np.float64, len(qids)),
        [answer_types[q] for q in qids],
        [question_types[q] for q in qids],
        rules,
        skipped,
        top_counts=top_counts(texts, rules),
    )


# The plain official form, decoded straight into these by msgspec (only the fields named, types checked).
# A file that does not fit (a missing or mistyped key, answers without an integer answer_id, ...) is read
# by the checked path instead, which names any problem or scores the unusual form exactly.
class _Answer(msgspec.Struct, gc=False):
    answer: str
    answer_id: int


class _Annotation(msgspec.Struct, gc=False):  # where the source has no multiple_choice_answer (OK-VQA)
    question_id: int
    image_id: Any
    question_type: str
    answer_type: str
    answers: list[_Answer]


class _AnnotationMC(_Annotation, gc=False):  # the others: the key is required (checked while decoding)
    multiple_choice_answer: Any


class _Question(msgspec.Struct, gc=False):
    question_id: int
    image_id: Any
    question: Any


class _QuestionFile(msgspec.Struct, gc=False):
    questions: list[_Question]


class _Result(msgspec.Struct, gc=False):
    question_id: int
    answer: str


class _RawAnnotationFile(msgspec.Struct, gc=False):
    annotations: list[msgspec.Raw]  # each annotation's JSON text, not decoded yet (see _score_chunk)


_SHARED: dict = {}  # what the forked scoring workers read (set before they start): see typed_report
_KEEP: list = []  # a worker's decoded annotations, never freed one by one (the worker ends with os._exit)
QUESTIONS_PER_WORKER = 50_000  # fewer per process are not worth a fork


def scoring_workers(questions: int) -> int:
    """How many processes score a file of `questions` (1: this one): one per core up to 8, one per
    QUESTIONS_PER_WORKER questions; 1 where processes cannot be forked."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 8, -(-questions // QUESTIONS_PER_WORKER)))


def _chunk_text(lo: int, hi: int) -> bytes:
    """The JSON array of annotations lo..hi-1: one copy of their bytes in the mapped file (msgspec's Raw
    values point into it), or the values joined where they do not (a copy made by the decoder)."""
    data, raws = _SHARED["data"], _SHARED["raws"]
    base = np.frombuffer(data, np.uint8).ctypes.data
    first, last = raws[lo], raws[hi - 1]
    start = np.frombuffer(first, np.uint8).ctypes.data - base
    end = np.frombuffer(last, np.uint8).ctypes.data - base + len(last)
    view = memoryview(data)
    if (
        0 <= start < end <= len(data)
        and view[start : start + len(first)] == first
        and view[end - len(last) : end] == last
    ):
        return b"".join((b"[", view[start:end], b"]"))  # between two values of an array: commas, spaces
    return b"[" + b",".join(raws[lo:hi]) + b"]"


def _codes(values: list[str]) -> tuple[list[str], np.ndarray]:
    """(distinct values in order of appearance, int32 code of each)."""
    table: dict[str, int] = {}
    codes = np.fromiter((table.setdefault(v, len(table)) for v in values), np.int32, len(values))
    return list(table), codes


def _score_chunk(lo: int, hi: int) -> dict | None:
    """Decode and score annotations lo..hi-1 (in a forked worker or in this process): their ids, answer
    counts, and for those with exactly 10 answers the scores, top counts and type codes; None when a value
    is not in the plain official form (then `checked_report` runs)."""
    try:
        anns = msgspec.json.decode(_chunk_text(lo, hi), type=_SHARED["schema"])
    except msgspec.MsgspecError:
        return None
    _KEEP.append(anns)
    counts = np.fromiter((len(a.answers) for a in anns), np.int64, len(anns))
    scored = [a for a in anns if len(a.answers) == ANSWERS_PER_QUESTION]  # has_all_answers
    lengths = np.full(len(scored), ANSWERS_PER_QUESTION, np.int64)
    ids = [x.answer_id for a in scored for x in a.answers]
    distinct, undecided = distinct_small_ids(np.fromiter(ids, np.int64, len(ids)), lengths)
    for i in np.flatnonzero(undecided).tolist():
        distinct[i] = len({x.answer_id for x in scored[i].answers}) == ANSWERS_PER_QUESTION
    if not distinct.all():  # equal answer ids: the official loop compares whole answer dicts
        return None
    preds = _SHARED["preds"]
    predicted = [preds.get(a.question_id) for a in scored]
    if any(p is None for p in predicted):  # a question without a prediction: checked_report words it
        return None
    scores, top = distinct_answer_scores(
        [x.answer for a in scored for x in a.answers], lengths, predicted, _SHARED["legacy"], top_count=True
    )
    return {
        "ids": np.fromiter((a.question_id for a in anns), np.int64, len(anns)),
        "counts": counts,
        "scores": scores,
        "top": top,
        "answer_types": _codes([a.answer_type for a in scored]),
        "question_types": _codes([a.question_type for a in scored]),
    }


def _strings(chunks: list[dict], key: str) -> list[str]:
    return np.concatenate([np.array(c[key][0], object)[c[key][1]] for c in chunks]).tolist()


def typed_report(args: argparse.Namespace, workers: int | None = None) -> dict | None:
    """`vqa eval`'s report from the three files decoded straight into the plain official form (the fast
    path: no dict per answer, scores vectorized), or None when a file is not in that form or fails a
    check; then `checked_report` runs, which words the problem (or scores the unusual form). For files
    in the plain form both give the same report and accept the same files (tests/test_evaluate.py).

    The annotations are split into `workers` runs of consecutive questions (default `scoring_workers`),
    each decoded and scored by a forked process (`_score_chunk`), and joined in file order: the scores are
    per question, so the report is the same for any number of workers."""
    source = _source(args)
    wrapped = source.layout.wrapped
    mc = source.layout.multiple_choice_answer
    with mapped(args.annotations) as data:
        if data is None:
            return None
        try:
            raws = msgspec.json.decode(data, type=_RawAnnotationFile if wrapped else list[msgspec.Raw])
        except msgspec.MsgspecError:
            return None
        raws = raws.annotations if wrapped else raws
        questions = read_json_as(args.questions, _QuestionFile if wrapped else list[_Question])
        questions = questions.questions if wrapped and questions is not None else questions
        results = read_json_as(args.results, list[_Result])
        if not raws or questions is None or results is None:
            del raws
            return None
        preds = {r.question_id: r.answer for r in results}
        n = len(raws)
        workers = min(workers or scoring_workers(n), n)
        bounds = [(i * n // workers, (i + 1) * n // workers) for i in range(workers)]
        _SHARED.update(data=data, raws=raws, preds=preds, legacy=args.legacy,
                       schema=list[_AnnotationMC] if mc else list[_Annotation])  # fmt: skip
        try:
            if workers == 1:
                chunks = [_score_chunk(*bounds[0])]
            else:
                fork = multiprocessing.get_context("fork")
                with ProcessPoolExecutor(workers, mp_context=fork) as pool:
                    chunks = list(pool.map(_score_chunk, *zip(*bounds)))
        finally:
            _SHARED.clear()
            _KEEP.clear()
            del raws
    if any(c is None for c in chunks):
        return None
    all_ids = np.concatenate([c["ids"] for c in chunks]).tolist()
    counts = np.concatenate([c["counts"] for c in chunks])
    ann_ids = set(all_ids)
    if (
        len(ann_ids) != len(all_ids)
        or len(questions) != len(all_ids)
        or {q.question_id for q in questions} != ann_ids
    ):
        return None
    full = counts == ANSWERS_PER_QUESTION
    skipped = np.asarray(all_ids, np.int64)[~full].tolist()
    qids = np.asarray(all_ids, np.int64)[full].tolist()
    # exactly the scored ids, each once; the skipped ones may be there or not
    if (
        not qids
        or len(preds) != len(results)
        or not preds.keys() <= ann_ids
        or len(preds.keys() - set(skipped)) != len(qids)
    ):
        return None
    return skipped_report(
        qids,
        np.concatenate([c["scores"] for c in chunks]),
        _strings(chunks, "answer_types"),
        _strings(chunks, "question_types"),
        "legacy" if args.legacy else "current",
        skipped,
        top_counts=np.concatenate([c["top"] for c in chunks]),
    )


def format_report(report: dict) -> str:
    """Human-readable lines: overall, then per answer type and per question type (sorted by name)."""
    lines = [
        f"VQA accuracy ({report['rules']} rules, {report['questions']} questions): {report['overall']:.2f}"
    ]
    for title, key in (("per answer type", "perAnswerType"), ("per question type", "perQuestionType")):
        if key not in report:  # VizWiz has no question types
            continue
        table = report[key]
        width = max((len(t) for t in table), default=0)
        lines.append(f"{title}:")
        lines += [f"  {t:<{width}}  {table[t]:6.2f}" for t in sorted(table)]
    if "perAgreement" in report:  # buckets in their order, "-" where the split has no such question
        lines.append("per agreement (annotators giving the most common answer):")
        for name, _, _ in AGREEMENT_BUCKETS:
            value = report["perAgreement"][name]
            lines.append(f"  {bucket_label(name):<3}  " + ("     -" if value is None else f"{value:6.2f}"))
    if report.get("unanswerability"):
        u = report["unanswerability"]
        ap = (
            "n/a (no unanswerable question)"
            if u["average_precision"] is None
            else f"{u['average_precision']:.2f}"
        )
        lines.append(f"unanswerability: average precision {ap}, F1 {u['f1_score']:.2f}")
    if report.get("skipped"):
        skipped = report["skipped"]
        name = "question_ids" if "question_ids" in skipped else "images"
        lines.append(f"skipped: {skipped['questions']} questions not scored, {skipped['reason']} "
                     f"({name.replace('_', ' ')} {_show(skipped[name])}); training leaves them out too")  # fmt: skip
    return "\n".join(lines)


def checked_report(args: argparse.Namespace) -> dict:
    """`vqa eval`'s report with every file checked entry by entry (one UserError line names a problem)."""
    source = _source(args)
    annotations = load_annotations(args.annotations, source)
    questions = load_questions(args.questions, source)
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
    source = _source(args)
    with gc_paused():
        if source.evaluate is not None:  # a source that scores its own format (VizWiz)
            report = source.evaluate(args.annotations, args.questions, args.results, args.legacy)
        else:
            if args.questions is None:
                raise UserError(f"--questions: {source.title} keeps its questions in their own file; pass it")
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


def _source(args: argparse.Namespace) -> Source:
    return get_source(getattr(args, "source", "vqa2"))


def split_report(source: Source, annotations, questions, results: list[dict]) -> dict:
    """The report of `vqa eval` for results held in memory (`vqa predict --report`), from the split's
    official files, read now: the answer strings are kept nowhere else."""
    if source.evaluate is not None:
        return source.evaluate(annotations, questions, results)
    answers = check_results(results, "(in memory)", {r["question_id"] for r in results})
    return evaluate(answers, load_annotations(annotations, source))

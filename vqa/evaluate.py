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

Files in the plain official form take the fast path (vqa/evaluate_fast.py `typed_report`: forked
processes, the annotation side cached per file); anything else the checked path here (`checked_report`),
which scores the unusual form exactly or names the problem in one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vqa.agreement import AGREEMENT_BUCKETS, bucket_label, top_counts
from vqa.data.answers import ANSWERS_PER_QUESTION, has_all_answers
from vqa.data.sources import Source, get_source
from vqa.data.sources.official import (
    _show,
    check_results,
    load_annotations,
    load_questions,
    load_results,
    skipped_report,
    unscored_ids,
)
from vqa.errors import UserError
from vqa.evaluate_fast import typed_report
from vqa.io import gc_paused, refuse_inputs_as_outputs, write_json_atomic
from vqa.scoring import official_scores


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
        lines.append(
            f"skipped: {skipped['questions']} questions not scored, {skipped['reason']} "
            f"({name.replace('_', ' ')} {_show(skipped[name])}); training leaves them out too"
        )
    return "\n".join(lines)


def checked_report(
    annotations: Path, questions: Path, results: Path, source: Source, legacy: bool = False
) -> dict:
    """`vqa eval`'s report with every file checked entry by entry (one UserError line names a problem)."""
    anns = load_annotations(annotations, source)
    ann_ids = {a["question_id"] for a in anns}
    q_ids = {q["question_id"] for q in load_questions(questions, source)}
    if ann_ids != q_ids:
        only_q, only_a = sorted(q_ids - ann_ids), sorted(ann_ids - q_ids)
        raise UserError(
            f"questions file {questions} and annotations file {annotations} hold different question ids "
            f"({len(only_q)} only in the questions ({_show(only_q)}), {len(only_a)} only in the annotations "
            f"({_show(only_a)})); pass the two files of the same split"
        )
    skipped = set(unscored_ids(anns))
    answers = load_results(results, ann_ids - skipped, optional=skipped)
    return evaluate(answers, anns, legacy=legacy)


def score_files(
    annotations: Path,
    questions: Path | None,
    results: Path,
    source: Source,
    legacy: bool = False,
    cache: bool = True,
) -> dict:
    """`vqa eval`'s report of three files: by the source's own evaluator (VizWiz), else from the fast
    path (`typed_report`), else from the checked one, which names any problem in one line."""
    if source.evaluate is not None:
        return source.evaluate(annotations, questions, results, legacy)
    if questions is None:
        raise UserError(f"--questions: {source.title} keeps its questions in their own file; pass it")
    report = typed_report(annotations, questions, results, source, legacy, cache=cache)
    return report if report is not None else checked_report(annotations, questions, results, source, legacy)


def eval_command(args: argparse.Namespace) -> int:
    """`vqa eval`: check the three files, score, print the report, write --out; 0 on success.

    Without garbage collection: nothing here builds a reference cycle, and the collector would walk the
    decoded files' half a million containers again and again."""
    source = get_source(args.source)
    inputs = [("results file", args.results), ("annotations file", args.annotations)]
    refuse_inputs_as_outputs([("--out", args.out)], [*inputs, ("questions file", args.questions)])
    with gc_paused():
        report = score_files(args.annotations, args.questions, args.results, source, args.legacy, args.cache)
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


def split_report(source: Source, annotations, questions, results: list[dict]) -> dict:
    """The report of `vqa eval` for results held in memory (`vqa predict --report`), from the split's
    official files, read now: the answer strings are kept nowhere else."""
    if source.evaluate is not None:
        return source.evaluate(annotations, questions, results)
    answers = check_results(results, "(in memory)", {r["question_id"] for r in results})
    return evaluate(answers, load_annotations(annotations, source))

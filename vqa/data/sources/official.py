"""The official files of `vqa eval`, read strictly, and its report's form: question and annotation files
of the VQA format (VQA v1 / v2, OK-VQA, VQA-CP) and results files (keyed by question_id, or by image for
VizWiz).

Every problem ends in one UserError line that names the file, counts the offenders of each kind and
shows the first few; vqa/evaluate.py's fast path reads files that pass these checks without them.
"""

from __future__ import annotations

import numpy as np

from vqa.agreement import accuracy_by_agreement, bucket_names
from vqa.data.answers import ANSWERS_PER_QUESTION, has_all_answers
from vqa.data.sources.base import Source
from vqa.data.sources.vqa2 import VQA2
from vqa.errors import UserError
from vqa.io import read_json
from vqa.metrics import percent_scores, summarize_scores

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
    return check_results(read_json(path, "results"), path, question_ids, optional)


KEY_TYPES = {"question_id": (int, "an integer"), "image": (str, "a string")}


def check_results(
    data, path, keys: set, optional: set = frozenset(), key: str = "question_id", hint: str = RESULT_HINT
) -> dict:
    """`load_results` on decoded results, keyed by `key` ("question_id", or "image" for VizWiz)."""
    if not isinstance(data, list):
        raise UserError(
            f"results file {path}: the top level is not a JSON list ({type(data).__name__}); {hint}"
        )
    other = next(k for k in KEY_TYPES if k != key)
    if data and all(isinstance(e, dict) and other in e and key not in e for e in data):
        raise UserError(
            f"results file {path}: its entries are keyed by '{other}', not '{key}': results in another "
            f"dataset's format; pass --source for the dataset they answer, or {hint}"
        )
    results, duplicate, problems = _answers_of(data, key)
    if not problems:  # the id set is only meaningful once every entry is well-formed
        name = "question ids" if key == "question_id" else "images"
        problems = _counted(
            (f"duplicate {name}", sorted(set(duplicate))),
            (f"missing {name}", sorted(keys - results.keys())),
            (f"{name} not in the annotations", sorted(results.keys() - keys - optional)),
        )
    if problems:
        raise UserError(f"results file {path}: {'; '.join(problems)}; {hint}")
    return results


def _answers_of(data: list, key: str) -> tuple[dict, list, list[str]]:
    """({key: answer} of the well-formed entries, the keys seen again, the problems of the others)."""
    key_type, kind = KEY_TYPES[key]
    not_object, bad_id, bad_answer, duplicate = [], [], [], []
    results: dict = {}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            not_object.append(f"#{i} {_short(entry)}")
            continue
        qid, answer = entry.get(key), entry.get("answer")
        if type(qid) is not key_type:  # bool is an int subclass: refused too
            bad_id.append(f"#{i} {_short(qid)}")
        elif not isinstance(answer, str):
            bad_answer.append(f"#{i} ({key} {qid}) {_short(answer)}")
        elif qid in results:
            duplicate.append(qid)
        else:
            results[qid] = answer
    problems = _counted(
        ("entries that are not objects", not_object),
        (f"entries without {kind} {key}", bad_id),
        ("entries without a string answer", bad_answer),
    )
    return results, duplicate, problems


def _counted(*groups: tuple[str, list]) -> list[str]:
    """'N label (the first few)' for each (label, offenders) group that has offenders."""
    return [f"{len(items)} {label} ({_show(items)})" for label, items in groups if items]


def _records(path, what: str, required: tuple[str, ...], source: Source = VQA2) -> list[dict]:
    """The entry list of an official file (under `what` in VQA v1 / v2's layout, the whole file in
    VQA-CP's), each entry an object with the `required` keys and a unique integer question_id."""
    official = f"use an official {source.title} {what} file"
    if source.layout.wrapped:
        records = read_json(path, what, key=what)
    else:
        records = read_json(path, what)
        if not isinstance(records, list):
            raise UserError(f"{what} file {path}: the top level is not a JSON list; {official} (a bare list)")
    where = f"{what}[{{}}]" if source.layout.wrapped else "entry {}"
    seen: set[int] = set()
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise UserError(f"{what} file {path}: {where.format(i)} is not an object; {official}")
        for k in required:
            if k not in r:
                raise UserError(f"{what} file {path}: {where.format(i)} has no key '{k}'; {official}")
        qid = r["question_id"]
        if type(qid) is not int:
            raise UserError(
                f"{what} file {path}: {where.format(i)} has a non-integer question_id {_short(qid)}"
            )
        if qid in seen:
            raise UserError(f"{what} file {path}: question_id {qid} appears twice in '{what}'; fix the file")
        seen.add(qid)
    return records


def load_annotations(path, source: Source = VQA2) -> list[dict]:
    """The annotation list of an official annotation file, with the keys scoring needs checked."""
    required = ("question_id", "image_id", "question_type", "answer_type", "answers")
    if source.layout.multiple_choice_answer:
        required = (*required[:4], "multiple_choice_answer", "answers")
    annotations = _records(path, "annotations", required, source)
    for a in annotations:
        answers = a["answers"]
        if not isinstance(answers, list) or not all(
            isinstance(x, dict) and isinstance(x.get("answer"), str) for x in answers
        ):
            raise UserError(
                f"annotations file {path}: question_id {a['question_id']} key 'answers' is not a list of "
                f'{{"answer": str, ...}} objects; use an official {source.title} annotation file'
            )
    return annotations


def unscored_ids(annotations: list[dict]) -> list[int]:
    """Question ids whose annotation does not have exactly 10 answers: not scored, as training leaves them
    out (vqa.data.answers.has_all_answers), and counted in the report."""
    return [a["question_id"] for a in annotations if not has_all_answers(a)]


def load_questions(path, source: Source = VQA2) -> list[dict]:
    """The question list of an official question file."""
    return _records(path, "questions", ("question_id", "image_id", "question"), source)


def skipped_report(
    keys: list,
    scores: np.ndarray,
    answer_types: list,
    question_types: list | None,
    rules: str,
    skipped: list,
    name: str = "question_ids",
    top_counts: np.ndarray | None = None,
) -> dict:
    """The report of `evaluate` from the scored questions' keys (question ids, or VizWiz's images),
    scores [Q] and types, in annotation order; `skipped` lists the keys of the questions not scored.
    With `top_counts` (int8 [Q], vqa.agreement) it has perAgreement: {bucket: accuracy or None}."""
    report = summarize_scores(scores, answer_types, question_types)
    if top_counts is not None:
        report["perAgreement"] = accuracy_by_agreement(scores, bucket_names(top_counts))
    report["perQuestion"] = dict(zip(keys, percent_scores(scores)))
    report["rules"] = rules
    report["questions"] = len(keys)
    if skipped:
        reason = f"annotation without exactly {ANSWERS_PER_QUESTION} answers"
        report["skipped"] = {"reason": reason, "questions": len(skipped), name: skipped}
    return report

"""The VQA file format (VQA v1 / v2, OK-VQA, VQA-CP) -> Records.

Questions: [{question_id, image_id, question}] (VQA-CP adds coco_split, the COCO folder of the
image). Annotations: [{question_id, image_id, question_type, answer_type, multiple_choice_answer
(not in OK-VQA), answers: [{answer_id, answer, answer_confidence, ...}]}]. VQA v1 / v2 and OK-VQA
wrap each list in an object ({"questions": [...]}, {"annotations": [...]}); VQA-CP's files are the
bare lists (Layout.wrapped).

The files are decoded straight into the few fields used (msgspec structs: no dict per answer);
a file that does not fit is read again by the checked path, which names the entry and the key.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec

from vqa import io
from vqa.data.sources.records import Records, build_records
from vqa.errors import UserError

HINT = "run `make data` for synthetic data or see data/README.md"
QUESTION_FIELDS = {"question_id": int, "image_id": int, "question": str}


class _Question(msgspec.Struct, gc=False):
    question_id: int
    image_id: int
    question: str
    coco_split: str | msgspec.UnsetType = msgspec.UNSET


class _Answer(msgspec.Struct, gc=False):
    answer: str


class _Annotation(msgspec.Struct, gc=False):
    question_id: int
    question_type: str
    answer_type: str
    answers: list[_Answer]
    multiple_choice_answer: str | msgspec.UnsetType = msgspec.UNSET


class _Questions(msgspec.Struct, gc=False):
    questions: list[_Question]


class _Annotations(msgspec.Struct, gc=False):
    annotations: list[_Annotation]


def _field(item, key: str, tp: type, path: Path, index: int):
    value = item.get(key) if isinstance(item, dict) else None
    if not isinstance(value, tp) or isinstance(value, bool):
        raise UserError(
            f"{path}: entry {index} has no valid '{key}' ({tp.__name__}); fix or regenerate the file"
        )
    return value


def _entries(path: Path, what: str, wrapped: bool, title: str) -> list:
    """The entry list of a file, through the standard reader (its messages)."""
    if wrapped:
        return io.read_json(path, what, what, hint=HINT)
    data = io.read_json(path, what, hint=HINT)
    if not isinstance(data, list):
        raise UserError(
            f"{what} file {path}: the top level is not a JSON list; {title} {what} files are bare lists "
            "of entries (is this a VQA v1/v2 file? then set data.source)"
        )
    return data


def _read(path: Path, what: str, wrapped: bool, title: str, entry: type, fields: dict[str, type]) -> list:
    """The entries of `path` as `entry` structs: the fast typed decode, or the checked path."""
    schema = (_Questions if what == "questions" else _Annotations) if wrapped else list[entry]
    decoded = io.read_json_as(path, schema)
    if decoded is not None:
        return getattr(decoded, what) if wrapped else decoded
    items = _entries(path, what, wrapped, title)
    for i, item in enumerate(items):
        for key, tp in fields.items():
            _field(item, key, tp, path, i)
        if what == "annotations":
            for x in item["answers"]:
                _field(x, "answer", str, path, i)
    try:
        return msgspec.convert(items, list[entry])
    except msgspec.ValidationError as e:
        raise UserError(f"{what} file {path}: {e}; fix or regenerate the file") from None


def read_vqa_format(source, split: str, q_path: Path, a_path: Path | None) -> Records:
    """Records of one split of a VQA-format source (answers joined when `a_path` is given)."""
    info = source.splits[split]
    wrapped, title = source.layout.wrapped, source.title
    questions = _read(q_path, "questions", wrapped, title, _Question, QUESTION_FIELDS)
    if not questions:
        raise UserError(f"{q_path}: split '{split}' has no questions; point data.root at a complete dataset")
    row: dict[int, int] = {}
    groups = []
    for i, q in enumerate(questions):
        if q.question_id in row:
            raise UserError(f"{q_path}: question_id {q.question_id} appears twice; the file is corrupt")
        row[q.question_id] = i
        if info.images is None:  # VQA-CP: each entry names the COCO folder of its image
            if q.coco_split is msgspec.UNSET or q.coco_split not in source.image_groups:
                raise UserError(
                    f"{q_path}: entry {i} (question_id {q.question_id}) has no valid 'coco_split' "
                    f"({' or '.join(source.image_groups)}), the COCO folder of its image; use the official "
                    f"{title} files"
                )
            groups.append(q.coco_split)
    columns = dict(
        **source.record_fields(split),
        question_id=[q.question_id for q in questions],
        image_key=[q.image_id for q in questions],
        group=groups or [info.images] * len(questions),
        question=[q.question for q in questions],
    )
    if a_path is None:
        return build_records(**columns)
    return build_records(**columns, **_join(source, split, q_path, a_path, row))


def _join(source, split: str, q_path: Path, a_path: Path, row: dict[int, int]) -> dict:
    """Per-question answer columns of the annotations file, in the order of the questions file."""
    fields = {"question_id": int, "answers": list, "answer_type": str, "question_type": str}
    if source.layout.multiple_choice_answer:
        fields["multiple_choice_answer"] = str
    annotations = _read(a_path, "annotations", source.layout.wrapped, source.title, _Annotation, fields)
    n = len(row)
    answers, best, answer_type, question_type = ([None] * n for _ in range(4))  # in questions-file order
    same_files = f"use the questions and annotations files of the same split (data.questions, data.annotations; split '{split}')"
    for i, a in enumerate(annotations):
        if a.question_id not in row:
            raise UserError(
                f"{a_path}: annotation for question_id {a.question_id} has no question in {q_path}; {same_files}"
            )
        r = row[a.question_id]
        if answers[r] is not None:
            raise UserError(f"{a_path}: question_id {a.question_id} has two annotations; the file is corrupt")
        answers[r] = [x.answer for x in a.answers]
        if source.layout.multiple_choice_answer:
            if a.multiple_choice_answer is msgspec.UNSET:
                what = "no valid 'multiple_choice_answer' (str)"
                raise UserError(f"{a_path}: entry {i} has {what}; fix or regenerate the file")
            best[r] = a.multiple_choice_answer
        elif answers[r]:  # OK-VQA: the most common answer, the first one on a tie
            best[r] = Counter(answers[r]).most_common(1)[0][0]
        answer_type[r], question_type[r] = a.answer_type, a.question_type
    missing = [qid for qid, r in row.items() if answers[r] is None]
    if missing:
        raise UserError(
            f"{a_path}: {len(missing)} questions of {q_path.name} have no annotation (first: {missing[:3]}); {same_files}"
        )
    return dict(answers=answers, best=best, answer_type=answer_type, question_type=question_type)

"""Official VQA v2 JSON -> records.

Questions files: {"questions": [{question_id, image_id, question}], ...}.
Annotations files: {"annotations": [{question_id, image_id, question_type, answer_type,
multiple_choice_answer, answers: [10 x {answer_id, answer, answer_confidence}]}], ...}.
Test splits (test-dev2015, test2015) have questions only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vqa import io
from vqa.errors import UserError

# Split -> the image subtype its images (and so its features) belong to: test-dev
# images are a subset of test2015 (section 4 of the reference).
IMAGE_SUBTYPE = {"test-dev2015": "test2015"}


@dataclass
class Record:
    question_id: int
    image_id: int
    question: str
    answers: list[str] = field(default_factory=list)  # the 10 human answers, raw; empty for test splits
    multiple_choice_answer: str | None = None
    answer_type: str | None = None
    question_type: str | None = None
    annotation: dict | None = None  # the official annotation object, for exact scoring


def read_json(path: Path, key: str) -> list[dict]:
    """The list under `key` of an official JSON file, or a one-line UserError."""
    what = key if key in ("questions", "annotations") else "JSON"
    return io.read_json(path, what, key, hint="run `make data` for synthetic data or see data/README.md")


def _field(item: dict, key: str, tp: type, path: Path, index: int):
    value = item.get(key) if isinstance(item, dict) else None
    if not isinstance(value, tp) or isinstance(value, bool):
        raise UserError(
            f"{path}: entry {index} has no valid '{key}' ({tp.__name__}); fix or regenerate the file"
        )
    return value


def load_split(root: Path, split: str, questions_tpl: str, annotations_tpl: str) -> list[Record]:
    """Records of one split; annotations are joined when their file exists (never for test splits)."""
    root = Path(root)
    q_path = root / questions_tpl.format(split=split)
    questions = read_json(q_path, "questions")
    records: dict[int, Record] = {}
    for i, q in enumerate(questions):
        qid = _field(q, "question_id", int, q_path, i)
        if qid in records:
            raise UserError(f"{q_path}: question_id {qid} appears twice; the file is corrupt")
        records[qid] = Record(
            qid, _field(q, "image_id", int, q_path, i), _field(q, "question", str, q_path, i)
        )
    if not records:
        raise UserError(f"{q_path}: split '{split}' has no questions; point data.root at a complete dataset")
    a_path = root / annotations_tpl.format(split=split)
    if split.startswith("test") and not a_path.exists():
        return list(records.values())
    for i, a in enumerate(read_json(a_path, "annotations")):
        qid = _field(a, "question_id", int, a_path, i)
        if qid not in records:
            raise UserError(
                f"{a_path}: annotation for question_id {qid} has no question in {q_path}; use the questions "
                f"and annotations files of the same split (data.questions, data.annotations; split '{split}')"
            )
        answers = _field(a, "answers", list, a_path, i)
        rec = records[qid]
        if rec.annotation is not None:
            raise UserError(f"{a_path}: question_id {qid} has two annotations; the file is corrupt")
        rec.answers = [_field(x, "answer", str, a_path, i) for x in answers]
        rec.multiple_choice_answer = _field(a, "multiple_choice_answer", str, a_path, i)
        rec.answer_type = _field(a, "answer_type", str, a_path, i)
        rec.question_type = _field(a, "question_type", str, a_path, i)
        rec.annotation = a
    missing = [qid for qid, r in records.items() if r.annotation is None]
    if missing:
        raise UserError(
            f"{a_path}: {len(missing)} questions of {q_path.name} have no annotation (first: {missing[:3]}); "
            f"use the questions and annotations files of the same split (data.questions, data.annotations; split '{split}')"
        )
    return list(records.values())

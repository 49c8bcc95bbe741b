"""What a dataset source is (`Source`): its split table, how it reads a split, how its results are
named. A source file (vqa/data/sources/<name>.py) builds one; everything else (Records, features,
targets, training, `vqa predict`, `vqa eval`) is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vqa.data.answers import ANSWER_TYPES
from vqa.data.sources.records import Records
from vqa.errors import UserError


@dataclass(frozen=True)
class Split:
    images: str | None  # the image folder / feature file of its images; None: named per entry (VQA-CP)
    annotated: bool  # the release has answers for it
    server: str = ""  # what its results file is for, printed by `vqa predict` ("" for nothing)
    size: int = 0  # the release's number of questions, when known (predict compares)


@dataclass(frozen=True)
class Layout:
    """How the VQA-format evaluator reads a source's files (vqa/evaluate.py)."""

    wrapped: bool = True  # lists under "questions" / "annotations" (VQA v1/v2); False: top-level lists
    multiple_choice_answer: bool = True  # annotations carry it (OK-VQA's do not)


@dataclass(frozen=True)
class Source:
    name: str  # the registry key ("vqacp2")
    title: str  # how messages name it ("VQA-CP v2")
    questions: str  # file-name template ({split})
    answers: str  # the same for the answers, "" when the questions file holds them
    splits: dict[str, Split]
    read: Callable[..., Records]  # (source, split, questions path, answers path or None) -> Records
    results_name: str  # the results file's name ({split}, {name}): the server's where there is one
    keyed_by: str = "question_id"  # what a results file is keyed by: "question_id" or "image"
    rules: str = "current"  # how answers are compared: "current" (the VQA evaluator) or "vizwiz"
    layout: Layout | None = field(default_factory=Layout)  # None: the source scores its own (`evaluate`)
    evaluate: Callable[..., dict] | None = None  # a source's own `vqa eval` (VizWiz)
    answer_types: tuple[str, ...] = ANSWER_TYPES
    image_groups: tuple[str, ...] = ()  # the folders an entry may name (VQA-CP's coco_split)

    def split(self, name: str) -> Split:
        """The split table entry, or a UserError that lists the valid splits."""
        if name not in self.splits:
            raise UserError(
                f"{self.title} (data.source {self.name}) has no split '{name}'; choose one of "
                f"{', '.join(self.splits)} (data.train_split, data.val_split, --split)"
            )
        return self.splits[name]

    def files(
        self, root: str | Path, split: str, questions: str = "", answers: str = ""
    ) -> tuple[Path, Path | None]:
        """(questions file, answers file or None) of `split` under `root`; `questions` / `answers`
        replace the source's templates when given."""
        self.split(split)
        root = Path(root)
        q = root / (questions or self.questions).format(split=split)
        template = answers or self.answers
        return q, (root / template.format(split=split) if template else None)

    def load(self, root: str | Path, split: str, questions: str = "", answers: str = "") -> Records:
        """The Records of `split` (answers joined where the split has them, or where a test split's
        answers file exists, as the synthetic data writes one)."""
        info = self.split(split)
        q_path, a_path = self.files(root, split, questions, answers)
        if a_path is not None and not info.annotated and not a_path.exists():
            a_path = None
        return self.read(self, split, q_path, a_path)

    def results(self, answers: dict[int, str], records: Records) -> list[dict]:
        """The results file's entries for {question_id: answer}, in the release's order."""
        if self.keyed_by == "image":
            ids = records.question_id.tolist()
            return [{"image": records.image_key(i), "answer": answers[int(q)]} for i, q in enumerate(ids)]
        return [{"question_id": q, "answer": a} for q, a in sorted(answers.items())]

    def record_fields(self, split: str) -> dict:
        """The fields of `split`'s Records (vqa.data.sources.records.build_records) set by the source."""
        return dict(source=self.name, split=split, rules=self.rules, keyed_by=self.keyed_by)

    def results_file(self, split: str, name: str) -> str:
        return self.results_name.format(split=split, name=name)

"""What a dataset source is: its split table, how it reads a split, how its results are named.

A source file (vqa/data/sources/<name>.py) builds one `Source`:

    name, title          the registry key ("vqacp2") and how messages name it ("VQA-CP v2")
    questions, answers   file-name templates ({split}); answers "" when the questions file holds them
    splits               split -> Split: the image folder (feature file) of its images, whether
                         the release has answers for it, what its results file is for
    read                 (source, split, questions path, answers path or None) -> Records
    results_name         the results file's name ({split}, {name}): the server's where there is one
    keyed_by             what a results file is keyed by: "question_id" or "image"
    rules                how answer strings are compared: "current" (the VQA evaluator) or "vizwiz"
    layout               the VQA-format evaluator's view of the files (None: the source scores its own)
    evaluate             a source's own `vqa eval` (VizWiz), else None

Everything else (Records, features, targets, training, `vqa predict`, `vqa eval`) is shared.
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
    name: str
    title: str
    questions: str
    answers: str
    splits: dict[str, Split]
    read: Callable[..., Records]
    results_name: str
    keyed_by: str = "question_id"
    rules: str = "current"
    layout: Layout | None = field(default_factory=Layout)
    evaluate: Callable[..., dict] | None = None
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
            return [{"image": records.image_key(i), "answer": answers[int(q)]}
                    for i, q in enumerate(records.question_id.tolist())]  # fmt: skip
        return [{"question_id": q, "answer": a} for q, a in sorted(answers.items())]

    def results_file(self, split: str, name: str) -> str:
        return self.results_name.format(split=split, name=name)

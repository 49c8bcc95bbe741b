"""Records: one split of a dataset in the common form every source produces (DESIGN.md, Record).

Columnar and compact: numpy arrays and a few small tables, never the decoded JSON objects, so memory
stays flat at VQA v2 scale and DataLoader workers share the arrays instead of copying Python objects.
The question text and the human answers (interned: `Answers`) are kept only until the Dataset has
encoded them (`without_text`); `records[i]` builds a `Record` view of one question on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from vqa.data.keys import Interner, intern
from vqa.errors import UserError

NONE = -1  # code of a missing type


@dataclass(slots=True, frozen=True)
class Record:
    """One question, read back from Records (built on demand, never stored)."""

    question_id: int
    image_id: int | str  # the image key: a COCO image id, or a file name (VizWiz)
    question: str | None  # None once the text was dropped (after tokenizing)
    answers: list[str]  # the human answers as released; [] for test splits or once dropped
    multiple_choice_answer: str | None  # the release's, or the most common answer where it has none
    answer_type: str | None
    question_type: str | None
    answerable: int | None  # VizWiz only


@dataclass(eq=False)
class Answers:
    """The human answers of a split, interned: question i's are strings[ids[start[i]:start[i + 1]]]."""

    strings: list[str]  # every distinct answer string once
    ids: np.ndarray  # int32 [A]
    start: np.ndarray  # int64 [Q + 1]
    best: np.ndarray  # int32 [Q]: multiple_choice_answer (or the most common answer); -1: none

    @classmethod
    def build(cls, answers: list[list[str]], best: list[str | None]) -> Answers:
        table = Interner()
        flat = [a for row in answers for a in row]
        ids, best_ids = table.codes(flat, len(flat)), table.codes(best, len(best))  # None: -1
        start = np.zeros(len(answers) + 1, np.int64)
        np.cumsum([len(row) for row in answers], out=start[1:])
        return cls(table.strings, ids, start, best_ids)

    def counts(self) -> np.ndarray:
        """int64 [Q]: how many answers each question has."""
        return np.diff(self.start)

    def of(self, i: int) -> list[str]:
        return [self.strings[j] for j in self.ids[self.start[i] : self.start[i + 1]].tolist()]

    def select(self, rows: np.ndarray) -> Answers:
        """The answers of the questions at `rows` (indices or a mask), in that order."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, np.int64)
        counts = self.counts()[rows]
        start = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(counts, out=start[1:])
        flat = np.repeat(self.start[rows], counts) + (np.arange(start[-1]) - np.repeat(start[:-1], counts))
        return Answers(self.strings, self.ids[flat], start, self.best[rows])


@dataclass(eq=False)
class Records:
    """One split of one source (see the module docstring)."""

    source: str  # a key of SOURCES
    split: str
    rules: str  # how `vqa eval` compares strings: "current" (the VQA evaluator) or "vizwiz"
    keyed_by: str  # what its results files are keyed by: "question_id" or "image"
    annotated: bool  # whether answers were read (never for a test split of the release)
    question_id: np.ndarray  # int64 [Q]: the release's id (VizWiz has none: the row of the file)
    image: np.ndarray  # int32 [Q]: row of the split's image table (image_keys, image_group)
    image_keys: np.ndarray  # [I]: int64 COCO ids, or file names (an object array of str)
    image_group: np.ndarray  # int8 [I]: index into groups
    groups: tuple[str, ...]  # the feature files the images live in (data.features_file's {split})
    answer_type: np.ndarray  # int8 [Q]: into answer_types (-1: none, a test split)
    answer_types: tuple[str, ...]
    question_type: np.ndarray  # int32 [Q]: into question_types (-1: none)
    question_types: tuple[str, ...]
    answerable: np.ndarray | None = None  # int8 [Q]: VizWiz's 0 / 1 (-1: none); None for other sources
    question: list[str] | None = None  # the text, until tokenized
    answers: Answers | None = None  # until the targets are built

    def __len__(self) -> int:
        return len(self.question_id)

    def image_key(self, i: int) -> int | str:
        key = self.image_keys[self.image[i]]
        return key if isinstance(key, str) else int(key)

    def __getitem__(self, i: int) -> Record:
        def name(codes: np.ndarray, table: tuple) -> str | None:
            return None if codes[i] < 0 else table[codes[i]]

        answers = self.answers
        best = None if answers is None or answers.best[i] < 0 else answers.strings[answers.best[i]]
        return Record(
            int(self.question_id[i]),
            self.image_key(i),
            None if self.question is None else self.question[i],
            [] if answers is None else answers.of(i),
            best,
            name(self.answer_type, self.answer_types),
            name(self.question_type, self.question_types),
            None if self.answerable is None or self.answerable[i] < 0 else int(self.answerable[i]),
        )

    def __iter__(self) -> Iterator[Record]:
        return (self[i] for i in range(len(self)))

    def describe(self, i: int) -> str:
        """How messages name question i's image: "image 42 of question 42000", or "image
        VizWiz_val_00000042.jpg" where the release has no question ids."""
        image = f"image {self.image_key(i)}"
        return f"{image} of question {self.question_id[i]}" if self.keyed_by == "question_id" else image

    def select(self, rows) -> Records:
        """The questions at `rows` (indices or a mask), in that order; the image table is shared."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, np.int64)
        return replace(
            self,
            question_id=self.question_id[rows],
            image=self.image[rows],
            answer_type=self.answer_type[rows],
            question_type=self.question_type[rows],
            answerable=None if self.answerable is None else self.answerable[rows],
            question=None if self.question is None else [self.question[i] for i in rows.tolist()],
            answers=None if self.answers is None else self.answers.select(rows),
        )

    def without_text(self) -> Records:
        """These records without the question text and the answer strings (kept only until encoded)."""
        return replace(self, question=None, answers=None)

    def nbytes(self) -> int:
        """Bytes of the per-question arrays (the image table and type tables aside)."""
        arrays = (self.question_id, self.image, self.answer_type, self.question_type, self.answerable)
        return sum(a.nbytes for a in arrays if a is not None)


def build_records(
    *,
    source: str,
    split: str,
    rules: str,
    keyed_by: str,
    question_id: list[int],
    image_key: list,
    group: list[str],
    question: list[str],
    answers: list[list[str]] | None = None,
    best: list[str | None] | None = None,
    answer_type: list[str | None] | None = None,
    question_type: list[str | None] | None = None,
    answerable: list[int | None] | None = None,
) -> Records:
    """Records from per-question Python lists (a source's loader fills them from the JSON): the
    image table is built here (one row per distinct image key), types and answers interned."""
    n = len(question_id)
    image, image_keys, image_group, groups = _image_table(split, image_key, group)
    at, at_table = intern(answer_type or [None] * n, np.int8)
    qt, qt_table = intern(question_type or [None] * n)
    flags = (
        None if answerable is None else np.asarray([NONE if a is None else a for a in answerable], np.int8)
    )
    return Records(
        source=source,
        split=split,
        rules=rules,
        keyed_by=keyed_by,
        annotated=answers is not None,
        question_id=np.asarray(question_id, np.int64),
        image=image,
        image_keys=image_keys,
        image_group=image_group,
        groups=groups,
        answer_type=at,
        answer_types=tuple(at_table),
        question_type=qt,
        question_types=tuple(qt_table),
        answerable=flags,
        question=question,
        answers=None if answers is None else Answers.build(answers, best or [None] * n),
    )


def _image_table(
    split: str, image_key: list, group: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """(image int32 [Q], image_keys [I], image_group int8 [I], groups): one row per distinct image key,
    int64 COCO ids or an object array of file names; an image listed in two image folders is refused."""
    image, keys = intern(image_key)
    first = np.unique(image, return_index=True)[1]  # the first question of each image
    group_codes, groups = intern(group, np.int8)
    groups = tuple(groups)
    clash = np.flatnonzero(group_codes != group_codes[first][image])
    if len(clash):
        i = int(clash[0])
        raise UserError(
            f"split '{split}': image {image_key[i]} is listed in two image folders ({groups[group_codes[i]]} "
            f"and {groups[group_codes[first][image[i]]]}); an image lives in one feature file, fix the file"
        )
    ids = keys and not isinstance(keys[0], str)  # else file names (none at all: an empty object array)
    image_keys = np.asarray(keys, np.int64) if ids else np.array(keys, object)
    return image, image_keys, group_codes[first], groups

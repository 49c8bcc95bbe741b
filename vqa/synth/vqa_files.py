"""The VQA v2 and VQA v1 file layouts (`vqa synth --format vqa2 | vqa1`).

Both are the official layout: a questions file {info, task_type, data_type, data_subtype,
questions: [{question_id, image_id, question}], license} per split and an annotations file
{info, data_type, data_subtype, annotations: [...], license} per annotated split. VQA v1's
names lack the `v2_` prefix, its question ids are image_id * 10 + k (3 questions per image),
and it was collected without VQA v2's balancing (complementary pairs, answer balancing), so
its language prior is stronger.
"""

from __future__ import annotations

from pathlib import Path

from vqa.io import write_json_atomic
from vqa.synth.annotators import annotate, most_common_answer
from vqa.synth.ask import PAIR_P
from vqa.synth.formats import Item, Style
from vqa.synth.questions import ANSWER_TYPE, FAMILY_P, question_type

# (split, image subtype naming the feature file, first image id of the range)
SPLITS = (
    ("train2014", "train2014", 1),
    ("val2014", "val2014", 1_000_000),
    ("test-dev2015", "test2015", 2_000_000),
)
VQA2 = Style(pair_p=PAIR_P, balanced=True, family_p=FAMILY_P, qid_factor=1000, annotate=annotate)
VQA1 = Style(pair_p=0.0, balanced=False, family_p=FAMILY_P, qid_factor=10, annotate=annotate)
LICENCE = {"name": "generated data, no restrictions", "url": ""}


def info(version: str, seed: int, dataset: str) -> dict:
    return {
        "description": f"Synthetic {dataset}-format data written by `vqa synth`",
        "version": version,
        "contributor": "vqa synth",
        "seed": seed,
    }


def annotation(item: Item) -> dict:
    """The official annotation of one question (its key order is part of the files pinned byte for byte)."""
    return {
        "question_id": item.question_id,
        "image_id": item.image,
        "question_type": question_type(item.question),
        "answer_type": ANSWER_TYPE[item.family],
        "multiple_choice_answer": most_common_answer(item.answers),
        "answers": item.answers,
    }


def stats_row(ann: dict, item: Item) -> dict:
    """What vqa.synth.stats reads of one annotated question."""
    return dict(ann, question=item.question, truth=item.truth.answer)


def write_wrapped(
    folder: Path,
    names: tuple[str, str],
    split: str,
    items: list[Item],
    info: dict,
    annotations: list[dict] | None,
) -> None:
    """Questions (and, unless None, annotations) of one split in the official wrapped layout.

    Compact JSON (no indent, no trailing newline), as the official files are.
    """
    questions = [{"question_id": i.question_id, "image_id": i.image, "question": i.question} for i in items]
    head = {"info": info, "data_type": "mscoco", "data_subtype": split}  # "info" first in both files
    body = {"info": info, "task_type": "Open-Ended", **head, "questions": questions, "license": LICENCE}
    write_json_atomic(folder / names[0].format(split=split), body)
    if annotations is not None:
        body = {**head, "annotations": annotations, "license": LICENCE}
        write_json_atomic(folder / names[1].format(split=split), body)


class VqaFiles:
    """Writer of the VQA v2 or v1 files (test-dev has questions only, as in the release)."""

    def __init__(self, names: tuple[str, str], version: str, dataset: str, style: Style):
        self.names, self.version, self.dataset, self.style = names, version, dataset, style
        self.splits = SPLITS

    def info(self, seed: int) -> dict:
        return info(self.version, seed, self.dataset)

    def write_split(self, folder: Path, split: str, items: list[Item], seed: int) -> list[dict] | None:
        anns = None if split.startswith("test") else [annotation(i) for i in items]
        write_wrapped(folder, self.names, split, items, info(self.version, seed, self.dataset), anns)
        return None if anns is None else [stats_row(a, i) for a, i in zip(anns, items)]

    def finish(self, folder: Path, annotated: dict, seed: int) -> tuple[dict, dict]:
        return annotated, {}


V2_NAMES = ("v2_OpenEnded_mscoco_{split}_questions.json", "v2_mscoco_{split}_annotations.json")
V1_NAMES = ("OpenEnded_mscoco_{split}_questions.json", "mscoco_{split}_annotations.json")
WRITERS = {
    "vqa2": VqaFiles(V2_NAMES, "2.0", "VQA v2", VQA2),
    "vqa1": VqaFiles(V1_NAMES, "1.0", "VQA v1", VQA1),
}

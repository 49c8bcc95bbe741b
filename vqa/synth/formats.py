"""The dataset formats `vqa synth --format` writes (`data.synth_format` in configs).

Pure Python on purpose, like presets.py: configs and the command line (`--format` takes the names of
FORMATS) read it without importing numpy.

Each format writes one real dataset's exact file names and JSON layout (data/README.md,
"Synthetic data in the other formats"), with that dataset's annotator behaviour:

    vqa2    VQA v2: balanced answers, complementary pairs, ten annotators (the default)
    vqa1    VQA v1: no `v2_` prefix, 3 questions per image, no complementary pairs and no answer
            balancing, so the language prior is stronger (the reason VQA v2 was balanced)
    okvqa   OK-VQA: VQA v1 file names, train2014 and val2014 only, one question per image, five
            annotators each listed twice, `raw_answer` beside the processed `answer`
    vizwiz  VizWiz-VQA: top-level lists keyed by `image` file name, one question per image, an
            unanswerable share, far more annotator disagreement, no answers in test
    vqacp2  VQA-CP v2: the vqa2 train2014 + val2014 questions re-split into train and test so that
            the answers of each question type differ between the two (Agrawal et al. 2018)
"""

from __future__ import annotations

from typing import NamedTuple


class Format(NamedTuple):
    description: str
    per_image: int  # questions per image the dataset has (0: as given); sizes keep the question count


FORMATS: dict[str, Format] = {
    "vqa2": Format("VQA v2 (balanced, complementary pairs)", 0),
    "vqa1": Format("VQA v1 (no v2_ prefix, 3 questions per image, unbalanced)", 3),
    "okvqa": Format("OK-VQA (5 annotators listed twice, raw_answer)", 1),
    "vizwiz": Format("VizWiz-VQA (image file names, unanswerable questions)", 1),
    "vqacp2": Format("VQA-CP v2 (train/test answer priors differ per question type)", 0),
}


def split_sizes(fmt: str, images: int, questions_per_image: int) -> tuple[int, int]:
    """(images, questions per image) of a split in format `fmt`, keeping the question count.

    A format whose dataset has a fixed number of questions per image (VQA v1: 3, VizWiz and
    OK-VQA: 1) gets that many per image and proportionally more images, so a preset holds about
    the same number of questions in every format.
    """
    per = FORMATS[fmt].per_image
    if not per or images == 0:
        return images, questions_per_image
    return max(1, round(images * questions_per_image / per)), per


class Style(NamedTuple):
    """How a format's questions are chosen and answered (vqa.synth.generate reads it)."""

    pair_p: float  # share of questions also asked of another image with another answer
    balanced: bool  # pick among candidate questions to flatten the answers (VQA v2)
    family_p: dict  # question family -> weight (vqa.synth.questions.FAMILY_P is VQA v2's)
    qid_factor: int  # question_id = image_id * qid_factor + k (VQA v2: 1000, VQA v1: 10); 0: no ids
    annotate: object  # (truth, rnd) -> the answers list of one question, in the format's layout
    reword: object = None  # (question text, rnd) -> the text as asked (VizWiz: spoken, conversational)


class Item(NamedTuple):
    """One generated question, before it is written in a format's layout."""

    question_id: int
    image: int | str  # image id, or file name (VizWiz)
    question: str
    family: str  # question family (vqa.synth.questions.ANSWER_TYPE gives its answer type)
    truth: object  # vqa.synth.questions.Truth: the intended answer(s)
    answers: list  # the annotators' answers, in the format's layout

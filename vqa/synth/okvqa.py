"""The OK-VQA layout and annotators (`vqa synth --format okvqa`).

OK-VQA (Marino et al. 2019, okvqa.allenai.org) uses VQA v1's file names
(`OpenEnded_mscoco_{train2014,val2014}_questions.json`, `mscoco_{...}_annotations.json`): train2014
and val2014 only (val2014 is its test set), about one question per image, question ids
image_id * 10 + k (e.g. 2971475 for image 297147). Five people answered each question and each
answer is listed twice, so the ten answers come in equal pairs. Every answer keeps the worker's
text as `raw_answer` beside the processed (stemmed) `answer` ("racing" -> "race"), and its
`answer_confidence` is "yes" or "no". `question_type` is a knowledge category code ("one" ..
"ten", "other"); `answer_type` is "other".
"""

from __future__ import annotations

import random
from pathlib import Path

from vqa.synth.annotators import annotate as annotate_vqa
from vqa.synth.annotators import most_common_answer
from vqa.synth.formats import Item, Style
from vqa.synth.questions import FAMILY_P, Truth
from vqa.synth.vqa_files import V1_NAMES, info, stats_row, write_wrapped

SPLITS = (("train2014", "train2014", 1), ("val2014", "val2014", 1_000_000))
PEOPLE = 5  # each answer listed twice: ten answers
EXTRA_SLIP = 0.15  # knowledge questions admit more answers than VQA's: people differ more
PLURAL_P, ARTICLE_P, DOUBT_P = 0.2, 0.1, 0.12  # raw-answer habits the processing folds; unsure workers
# The category codes (OK-VQA's QUESTION_TYPES): attribute questions ask about objects and
# materials ("three"); the rest have no knowledge category here ("other").
CATEGORY = {"query": "three", "rel_query": "three", "check": "three", "same": "three"}
NOUNS = ("cube", "sphere", "cylinder", "cone", "ball", "block", "box", "can", "pyramid", "triangle", "circle")


def stem(raw: str) -> str:
    """The processed answer: lower case, no leading article, a plural noun made singular (a light
    stand-in for OK-VQA's stemming; numbers and yes/no are kept)."""
    words = raw.lower().split()
    if len(words) > 1 and words[0] in ("a", "an", "the"):
        words = words[1:]
    last = words[-1]
    if len(last) > 3 and last.endswith("s") and not last.endswith("ss"):
        words[-1] = last[:-1]
    return " ".join(words)


def annotate(t: Truth, rnd: random.Random) -> list[dict]:
    """Five people answer (the VQA annotators' slips and synonyms); each answer listed twice."""
    out = []
    for person in annotate_vqa(Truth(t.dist, t.kind, t.hard + EXTRA_SLIP), rnd, PEOPLE):
        raw = person["answer"]
        if raw in NOUNS:
            u = rnd.random()
            raw = raw + "s" if u < PLURAL_P else ("a " + raw if u < PLURAL_P + ARTICLE_P else raw)
        conf = "no" if person["answer_confidence"] == "no" or rnd.random() < DOUBT_P else "yes"
        for _ in range(2):
            out.append(
                {"answer_id": len(out) + 1, "raw_answer": raw, "answer_confidence": conf, "answer": stem(raw)}
            )
    return out


STYLE = Style(pair_p=0.0, balanced=False, family_p=FAMILY_P, qid_factor=10, annotate=annotate)


class OkvqaFiles:
    splits = SPLITS
    style = STYLE

    def info(self, seed: int) -> dict:
        return info("1.0", seed, "OK-VQA")

    def write_split(self, folder: Path, split: str, items: list[Item], seed: int) -> list[dict]:
        anns = [
            {
                "image_id": i.image,
                "answer_type": "other",
                "question_type": CATEGORY.get(i.family, "other"),
                "question_id": i.question_id,
                "answers": i.answers,
            }
            for i in items
        ]
        write_wrapped(folder, V1_NAMES, split, items, self.info(seed), anns)
        # no VQA question type: the prior falls back on the text
        rows = [
            dict(a, question_type="other", multiple_choice_answer=most_common_answer(i.answers))
            for a, i in zip(anns, items)
        ]
        return [stats_row(r, i) for r, i in zip(rows, items)]

    def finish(self, folder: Path, annotated: dict, seed: int) -> tuple[dict, dict]:
        answers = [x for rows in annotated.values() for r in rows for x in r["answers"]]
        folded = sum(x["raw_answer"] != x["answer"] for x in answers) / max(len(answers), 1)
        return annotated, {"raw_answer_differs": folded}


WRITERS = {"okvqa": OkvqaFiles()}

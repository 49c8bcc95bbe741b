"""The VizWiz-VQA layout and annotators (`vqa synth --format vizwiz`).

VizWiz-VQA (Gurari et al. 2018, vizwiz.org) has one spoken question per photo, taken by a blind
person, so the photo's file name keys the question: `{train,val,test}.json` are top-level lists of
{image: "VizWiz_<split>_<8 digits>.jpg", question, answers: [10 x {answer, answer_confidence}],
answer_type, answerable}, with no question or image ids; test entries hold image and question
only. `answer_type` also takes "unanswerable", and `answerable` is 0 or 1.

What the annotators do differently from VQA v2's: many photos are blurred, badly framed or miss
the object, so some questions cannot be answered (most people answer "unanswerable"), and on the
rest people slip more and phrase answers freely ("it is red", "red i think"), which the official
normalization does not fold. The questions are conversational and mostly open ("what color is
...?"), few are yes/no or counts.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from vqa.io import write_json_atomic
from vqa.synth.annotators import annotate as annotate_vqa
from vqa.synth.annotators import most_common_answer, normalize
from vqa.synth.formats import Item, Style
from vqa.synth.questions import ANSWER_TYPE, Truth, question_type
from vqa.synth.scenes import pick, weighted
from vqa.synth.vqa_files import info, stats_row

SPLITS = (("train", "train", None), ("val", "val", None), ("test", "test", None))
UNANSWERABLE = "unanswerable"
# fmt: off
FAMILY_P = {"exist": 0.02, "check": 0.02, "rel_exist": 0.005, "same": 0.005, "count": 0.02,
            "rel_count": 0.005, "query": 0.62, "rel_query": 0.16, "where": 0.145}
# Photo quality -> probability, and per quality: each person's chance to answer "unanswerable",
# and the extra slip probability (on top of the VQA annotators' own) of those who do answer.
QUALITY = {"bad": 0.245, "fair": 0.235, "good": 0.52}
SAYS_UNANSWERABLE = {"bad": 0.8, "fair": 0.22, "good": 0.03}
EXTRA_SLIP = {"bad": 0.45, "fair": 0.3, "good": 0.15}
UNSUITABLE_P = 0.1  # of "unanswerable" answers, written "unsuitable image" instead (not folded)
FREE_P = 0.15  # an answer phrased freely
PREFIXES = ("can you tell me ", "please tell me ", "could you tell me ", "hi, ", "okay, ")
PREFIX_P = 0.3
CONFIDENCE = {"yes": 0.55, "maybe": 0.35, "no": 0.1}  # of "unanswerable" and freely phrased answers
# fmt: on


def reword(text: str, rnd: random.Random) -> str:
    """The question as spoken: sometimes with a conversational opening."""
    return pick(rnd, PREFIXES) + text if rnd.random() < PREFIX_P else text


def annotate(t: Truth, rnd: random.Random) -> list[dict]:
    """Ten answers {answer, answer_confidence} (VizWiz has no answer_id)."""
    quality = weighted(rnd, QUALITY)
    people = annotate_vqa(Truth(t.dist, t.kind, t.hard + EXTRA_SLIP[quality]), rnd)
    out = []
    for p in people:
        a, conf = p["answer"], p["answer_confidence"]
        if rnd.random() < SAYS_UNANSWERABLE[quality]:
            a = "unsuitable image" if rnd.random() < UNSUITABLE_P else UNANSWERABLE
            conf = weighted(rnd, CONFIDENCE)
        elif rnd.random() < FREE_P:
            a = pick(rnd, (f"it is {a}", f"{a} i think", f"looks like {a}"))
            conf = weighted(rnd, CONFIDENCE)
        out.append({"answer": a, "answer_confidence": conf})
    return out


STYLE = Style(pair_p=0.0, balanced=False, family_p=FAMILY_P, qid_factor=0, annotate=annotate, reword=reword)


def answer_type(item: Item, mca: str) -> str:
    return UNANSWERABLE if mca == UNANSWERABLE else ANSWER_TYPE[item.family]


class VizwizFiles:
    splits = SPLITS
    style = STYLE

    def info(self, seed: int) -> dict:
        return info("1.0", seed, "VizWiz-VQA")

    def write_split(self, folder: Path, split: str, items: list[Item], seed: int) -> list[dict] | None:
        if split == "test":  # questions only, as released
            questions = [{"image": i.image, "question": i.question} for i in items]
            write_json_atomic(folder / f"{split}.json", questions)
            return None
        rows, entries = [], []
        for i in items:
            mca = most_common_answer(i.answers)
            kind = answer_type(i, mca)
            entry = {"image": i.image, "question": i.question, "answers": i.answers, "answer_type": kind}
            entries.append(dict(entry, answerable=int(kind != UNANSWERABLE)))
            typed = dict(entry, question_type=question_type(i.question), multiple_choice_answer=mca)
            rows.append(stats_row(typed, i))
        write_json_atomic(folder / f"{split}.json", entries)
        return rows

    def finish(self, folder: Path, annotated: dict, seed: int) -> tuple[dict, dict]:
        extra = {}
        for split, rows in annotated.items():
            said = Counter(normalize(x["answer"]) for r in rows for x in r["answers"])
            n = max(len(rows), 1)
            extra[split] = {
                "unanswerable": sum(r["answer_type"] == UNANSWERABLE for r in rows) / n,
                "unanswerable_answers": said[UNANSWERABLE] / max(sum(said.values()), 1),
                "answer_types": dict(sorted(Counter(r["answer_type"] for r in rows).items())),
            }
        return annotated, {"vizwiz": extra}


WRITERS = {"vizwiz": VizwizFiles()}

"""Ten simulated annotators per question, who disagree the way people do.

Perception slips (turning the intended answer into a confusable one), genuinely ambiguous
questions (the truth is a distribution), synonyms the official normalization does not fold,
and rare junk. A per-question difficulty multiplies the slip rate, which makes agreement vary
from question to question like VQA v2's.

How often each of these happens is an annotator model (`Annotators`):

    CALIBRATED  the VQA formats' people (vqa2, vqa1, vqacp2): calibrated to VQA v2's published
                human accuracy per answer type and to the agreement statistics published for VQA
                (data/README.md, "Ten simulated annotators")
    BASE        the model the OK-VQA and VizWiz annotators build on (their own extra slips are set
                on top of it)
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from typing import NamedTuple

from vqa.data.keys import normalize_answer
from vqa.synth.questions import Truth
from vqa.synth.scenes import REGIONS, pick, weighted

# fmt: off
CONFUSIONS = {
    "yes": ("no",), "no": ("yes",),
    "red": ("orange", "pink", "maroon"), "orange": ("red", "yellow", "brown"),
    "yellow": ("orange", "beige", "gold"), "green": ("teal", "blue", "olive"),
    "blue": ("purple", "teal", "navy"), "purple": ("blue", "pink", "violet"),
    "gray": ("silver", "white", "black"), "brown": ("orange", "tan", "red"),
    "cube": ("cylinder", "square", "rectangle"), "sphere": ("circle", "round"),
    "cylinder": ("cube", "can", "round"), "cone": ("triangle", "cylinder", "pyramid"),
    "small": ("large", "medium"), "large": ("small", "medium"),
    "rubber": ("plastic", "metal", "wood"), "metal": ("rubber", "steel", "plastic"),
}
VARIANTS = {  # synonyms the official normalization does not fold
    "gray": (("grey", 0.3),), "sphere": (("ball", 0.25),), "large": (("big", 0.3),),
    "small": (("little", 0.1), ("tiny", 0.1)), "metal": (("metallic", 0.2), ("shiny", 0.1)),
    "rubber": (("matte", 0.15),), "center": (("middle", 0.3),), "cube": (("block", 0.1), ("box", 0.05)),
}
JUNK_P = 0.008  # "i don't know", "nothing", "yes" to a question that is not yes/no
NUMBER_WORD_P = 0.04  # a count written as a word ("two"), which the official normalization folds
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# fmt: on


class Annotators(NamedTuple):
    """How often the ten people slip, and how, for each kind of question (Truth.kind)."""

    slip: dict[str, float]  # kind -> slip probability of one person at difficulty x1
    difficulty: dict[float, float]  # slip multiplier -> probability, drawn once per question
    hard_scale: float  # multiplies Truth.hard (the extra slip of larger counts, close comparisons)
    max_slip: float  # the most a question's slip probability can be


# fmt: off
BASE = Annotators(
    slip={"yesno": 0.08, "count": 0.08, "color": 0.4, "shape": 0.3, "size": 0.4, "material": 0.35,
          "where": 0.25},
    difficulty={0.2: 0.35, 1.0: 0.3, 2.5: 0.2, 5.0: 0.15},
    hard_scale=1.0, max_slip=0.7,
)
# Calibrated to VQA v2 (data/README.md, "Ten simulated annotators"): against BASE, a fifth of the
# questions nobody slips on (x0), fewer yes/no slips, twice the slips on the other answer types,
# count slips that grow faster with the count, and at most half the people slip, so that the
# intended answer stays the most likely one.
CALIBRATED = Annotators(
    slip={"yesno": 0.03, "count": 0.08, "color": 0.8, "shape": 0.6, "size": 0.8, "material": 0.7,
          "where": 0.5},
    difficulty={0.0: 0.2, 0.5: 0.15, 1.0: 0.3, 2.5: 0.2, 5.0: 0.15},
    hard_scale=2.2, max_slip=0.5,
)
# fmt: on
# stats.json's "annotators" of the VQA formats: data without it (or with another name) comes from another
# annotator model, and vqa.synth.generate.stale_reason asks for it to be written again
CALIBRATED_NAME = "v2"

# The official normalization (one implementation, vqa.data.answers), cached: the statistics
# normalize every answer of every split and the strings repeat.
normalize = functools.lru_cache(maxsize=65536)(normalize_answer)


def annotate(t: Truth, rnd: random.Random, n: int = 10, model: Annotators = BASE) -> list[dict]:
    """`n` people (ten in VQA) answer independently (answer_id 1..n), in the official answer format,
    with annotator model `model` (BASE, the OK-VQA and VizWiz annotators' base, by default)."""
    difficulty = weighted(rnd, model.difficulty)
    slip = min(model.max_slip, difficulty * model.slip[t.kind] + t.hard * model.hard_scale)
    probs = dict(t.dist)
    out = []
    for k in range(1, n + 1):
        a, conf, u = weighted(rnd, probs), "yes", rnd.random()
        if u < JUNK_P:
            a = pick(rnd, ("i don't know",) if t.kind == "yesno" else ("i don't know", "yes", "nothing"))
            conf = "no" if rnd.random() < 0.6 else "maybe"
        elif u < JUNK_P + slip:
            if t.kind == "count":
                c = int(a)
                a = str(c + 1 if c == 0 or rnd.random() < 0.45 else c - 1)
            elif t.kind == "where":
                a = pick(rnd, [r for r in REGIONS if r != a])
            else:
                a = pick(rnd, CONFUSIONS[a])
            conf = weighted(rnd, {"maybe": 0.6, "yes": 0.3, "no": 0.1})
        elif rnd.random() < 0.08:
            conf = "maybe"
        u = rnd.random()
        for variant, p in VARIANTS.get(a, ()):
            if u < p:
                a = variant
                break
            u -= p
        if t.kind == "count" and a.isdigit() and int(a) <= 10 and rnd.random() < NUMBER_WORD_P:
            a = NUMBER_WORDS[int(a)]  # folded by the official normalization
        out.append({"answer_id": k, "answer": a, "answer_confidence": conf})
    return out


def calibrated(own: random.Random):
    """The VQA formats' Style.annotate, (truth, rnd) -> answers: the CALIBRATED people answer from
    their own stream `own`. The split's stream `rnd` first draws one round of BASE answers, which
    are not written: the split's later draws (scenes, questions, boxes) follow that order, so a
    seed's files stay the ones its digests in tests/test_synthetic.py pin.
    """

    def answer(t: Truth, rnd: random.Random) -> list[dict]:
        annotate(t, rnd)
        return annotate(t, own, model=CALIBRATED)

    return answer


def most_common_answer(answers: list[dict]) -> str:
    """Most frequent normalized answer; ties go to the alphabetically first."""
    return top(Counter(normalize(a["answer"]) for a in answers))


def top(counts: Counter) -> str:
    """The most frequent key of `counts`; ties go to the alphabetically first."""
    return min(counts, key=lambda a: (-counts[a], a))

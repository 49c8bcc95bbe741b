"""Built-in synthetic VQA v2 data (`vqa synth`): official-format JSON plus HDF5 features.

Scenes are a few objects (colour, shape, size, material) in the cells of an S x S grid.
Questions come from templates whose wording starts with an official question type; a
good share are asked, word for word, of two images with different answers
(complementary pairs, as in VQA v2), so a question-only prior scores far below a model
that looks. Ten simulated annotators answer each question and disagree the way people
do: perception slips, genuinely ambiguous questions, synonyms the official normalization
does not fold, rare junk. Image features are a fixed random non-linear encoding of each
grid cell and each box plus noise, so a model has to learn to read them.

Layout of the written files: data/README.md, "Synthetic data".
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from vqa.data.answers import normalize_answer, score_from_count
from vqa.errors import UserError

# Tables below are kept compact by hand.
# fmt: off
PRESETS: dict[str, dict] = {
    # Big enough that AVG beats the question-only prior in 2 epochs (tests), still ~1 s to write.
    "tiny": dict(train_images=400, val_images=100, test_images=20, questions_per_image=8,
                 grid_size=7, grid_dim=64, box_dim=64),
    "small": dict(train_images=3000, val_images=1000, test_images=200, questions_per_image=5,
                  grid_size=7, grid_dim=128, box_dim=128),
    # The paper's 14x14 grid; 2048 channels would not fit the disk budget (~3 GB here).
    "paper": dict(train_images=20000, val_images=5000, test_images=1000, questions_per_image=5,
                  grid_size=14, grid_dim=256, box_dim=512),
    # VQA v2's image counts (82,783 train / 40,504 val) and about its question counts (5 per image
    # against 5.4), with small features so it fits the disk: for memory-growth measurements.
    "vqa2": dict(train_images=82783, val_images=40504, test_images=0, questions_per_image=5,
                 grid_size=7, grid_dim=16, box_dim=32),
}
# (split, image subtype naming the feature file, first image id of the range)
SPLITS = (("train2014", "train2014", 1), ("val2014", "val2014", 1_000_000),
          ("test-dev2015", "test2015", 2_000_000))
ID_RANGE = 999_999

# The 65 official question types (shared/docs/vqa-question-types.txt, in file order).
OFFICIAL_QUESTION_TYPES = (
    "how many", "is the", "what", "what color is the", "what is the", "is this", "is this a",
    "what is", "are the", "what kind of", "is there a", "what type of", "is it", "what are the",
    "where is the", "is there", "does the", "what color are the", "are these", "are there", "which",
    "is", "what is the man", "is the man", "are", "how", "does this", "what is on the",
    "what does the", "how many people are", "what is in the", "what is this", "do", "what are",
    "are they", "what time", "what sport is", "are there any", "is he", "what color is", "why",
    "where are the", "what color", "who is", "what animal is", "is the woman", "is this an",
    "do you", "how many people are in", "what room is", "has", "is this person",
    "what is the woman", "can you", "why is the", "is the person", "what is the color of the",
    "what is the person", "could", "was", "is that a", "what number is", "what is the name",
    "what brand", "none of the above",
)

ATTRIBUTES = {  # rendering order: "large red metal cube"
    "size": ("small", "large"),
    "color": ("gray", "red", "blue", "green", "brown", "purple", "yellow", "orange"),
    "material": ("rubber", "metal"),
    "shape": ("cube", "sphere", "cylinder", "cone"),
}
ATTR_ORDER = tuple(ATTRIBUTES)
SUBSETS = [s for r in range(5) for s in itertools.combinations(ATTR_ORDER, r)]
RELATIONS = ("left of", "right of", "above", "below")
REGIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
STUFF = ("floor", "wall", "table", "shadow")  # background boxes; empty grid cells are "floor"
IMAGE_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375), (448, 448), (640, 360))
N_OBJECTS_P = (0.03, 0.09, 0.14, 0.17, 0.17, 0.14, 0.11, 0.08, 0.07)  # P(0..8 objects)
ANSWER_TYPE = {"exist": "yes/no", "check": "yes/no", "rel_exist": "yes/no", "more": "yes/no",
               "same": "yes/no", "count": "number", "rel_count": "number",
               "query": "other", "rel_query": "other", "where": "other"}
FAMILY_P = {"exist": 0.14, "check": 0.10, "rel_exist": 0.05, "more": 0.04, "same": 0.05,
            "count": 0.10, "rel_count": 0.04, "query": 0.30, "rel_query": 0.10, "where": 0.08}
QUERY_P = {"color": 0.4, "shape": 0.25, "size": 0.15, "material": 0.2}
PAIR_P, PAIR_TRIES, AMBIGUOUS_P = 0.6, 40, 0.1

# Annotators. A slip turns the intended answer into a confusable one; the per-question
# difficulty multiplies the slip rate, which makes agreement vary like VQA v2's.
SLIP = {"yesno": 0.08, "count": 0.08, "color": 0.4, "shape": 0.3, "size": 0.4,
        "material": 0.35, "where": 0.25}
DIFFICULTY = {0.2: 0.35, 1.0: 0.3, 2.5: 0.2, 5.0: 0.15}  # slip multiplier -> probability
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
JUNK_P, HARD_COUNT = 0.008, 0.09  # HARD_COUNT: extra slip per counted object
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# Feature encoder: fixed for all data seeds so every split and run reads the same "camera".
ENCODER_SEED, HIDDEN, NOISE = 20170823, 256, 0.3
IN_DIM = 16 + 1 + len(STUFF) + 12  # attribute one-hots, object flag, stuff one-hot, position
CHUNK = 512  # images per grid block
# fmt: on


class Obj(NamedTuple):
    row: int
    col: int
    size: str
    color: str
    material: str
    shape: str


class Scene(NamedTuple):
    width: int
    height: int
    objects: tuple[Obj, ...]


class Truth(NamedTuple):
    dist: tuple[tuple[str, float], ...]  # intended answers and their probabilities
    kind: str  # "yesno", "count", an attribute name or "where": picks the slips
    hard: float  # extra slip probability (large counts, close comparisons)

    @property
    def answer(self) -> str | None:  # the answer when the question is unambiguous
        return self.dist[0][0] if len(self.dist) == 1 else None


# ---------------------------------------------------------------- scenes and questions


def _pick(rnd: random.Random, seq):
    return seq[int(rnd.random() * len(seq))]


def _weighted(rnd: random.Random, items: dict):
    u, acc = rnd.random() * sum(items.values()), 0.0
    for key, p in items.items():
        acc += p
        if u < acc:
            return key
    return key


def _shuffle(rnd: random.Random, items: list) -> list:
    for i in range(len(items) - 1, 0, -1):  # Fisher-Yates on rnd.random(), stable across versions
        j = int(rnd.random() * (i + 1))
        items[i], items[j] = items[j], items[i]
    return items


def _make_scene(rnd: random.Random, grid: int) -> Scene:
    n = min(_weighted(rnd, dict(enumerate(N_OBJECTS_P))), grid * grid)
    cells = _shuffle(rnd, list(range(grid * grid)))[:n]
    objects = tuple(
        Obj(c // grid, c % grid, *(_pick(rnd, ATTRIBUTES[a]) for a in ATTR_ORDER)) for c in sorted(cells)
    )
    return Scene(*_pick(rnd, IMAGE_SIZES), objects)


def _phrase(desc: tuple, plural: bool = False) -> str:
    words = [v for a, v in desc if a != "shape"] + [dict(desc).get("shape", "object")]
    return " ".join(words) + ("s" if plural else "")


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _matches(o: Obj, desc: tuple) -> bool:
    return all(getattr(o, a) == v for a, v in desc)


def _select(objects, desc: tuple) -> list[Obj]:
    return [o for o in objects if _matches(o, desc)]


def _related(objects, ref: Obj, rel: str) -> list[Obj]:
    if rel == "left of":
        return [o for o in objects if o.col < ref.col]
    if rel == "right of":
        return [o for o in objects if o.col > ref.col]
    if rel == "above":
        return [o for o in objects if o.row < ref.row]
    return [o for o in objects if o.row > ref.row]


def _desc_of(o: Obj, attrs) -> tuple:
    return tuple((a, getattr(o, a)) for a in ATTR_ORDER if a in attrs)


def _some_attrs(rnd: random.Random, k: int) -> list[str]:
    return _shuffle(rnd, list(ATTR_ORDER))[:k]


def _random_desc(rnd: random.Random, k: int) -> tuple:
    chosen = _some_attrs(rnd, k)
    return tuple((a, _pick(rnd, ATTRIBUTES[a])) for a in ATTR_ORDER if a in chosen)


def _mutate(rnd: random.Random, desc: tuple) -> tuple:
    i = int(rnd.random() * len(desc))
    a, v = desc[i]
    other = _pick(rnd, [x for x in ATTRIBUTES[a] if x != v])
    return desc[:i] + ((a, other),) + desc[i + 1 :]


def _refer(rnd: random.Random, o: Obj, objects, skip: str = "", ambiguous: bool = False):
    """A descriptor that picks out `o` (or, if `ambiguous`, `o` and others); None if none does."""
    subsets = sorted(
        (s for s in SUBSETS if skip not in s),
        key=lambda s: len(s) + 0.6 * ("shape" not in s) + 0.8 * rnd.random(),
    )
    for s in subsets:
        desc = _desc_of(o, s)
        n = len(_select(objects, desc))
        if (n > 1) if ambiguous else (n == 1):
            return desc
    return None


def _region(o: Obj, grid: int) -> tuple[tuple[str, float], ...]:
    """Where an object is, in thirds of the image; cells on a border split the annotators."""

    def bands(i, names):
        f = (i + 0.5) / grid
        band = min(int(f * 3), 2)
        edge = min((abs(f - b), b) for b in (1 / 3, 2 / 3))
        p_alt = max(0.0, 0.5 - edge[0] * grid)
        if p_alt <= 0:
            return [(names[band], 1.0)]
        alt = band + (1 if f < edge[1] else -1)
        return [(names[band], 1 - p_alt), (names[alt], p_alt)]

    out = Counter()
    for rname, rp in bands(o.row, ("top", "middle", "bottom")):
        for cname, cp in bands(o.col, ("left", "center", "right")):
            if rname == "middle":
                name = "center" if cname == "center" else cname
            else:
                name = rname if cname == "center" else f"{rname} {cname}"
            out[name] += rp * cp
    return tuple(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _dist(answers: list[str]) -> tuple[tuple[str, float], ...]:
    c = Counter(answers)
    return tuple(sorted(((a, n / len(answers)) for a, n in c.items()), key=lambda kv: (-kv[1], kv[0])))


def _yn(answers: list[bool]) -> Truth:
    return Truth(_dist(["yes" if x else "no" for x in answers]), "yesno", 0.0)


def _evaluate(q: tuple, scene: Scene, grid: int) -> Truth | None:
    """The answer of question `q` (a parameter tuple) on `scene`; None if it does not apply."""
    fam, objs = q[0], scene.objects
    if fam == "exist":
        return _yn([bool(_select(objs, q[1]))])
    if fam == "more":
        a, b = len(_select(objs, q[1])), len(_select(objs, q[2]))
        return Truth(_yn([a > b]).dist, "yesno", 0.12 if abs(a - b) <= 1 and max(a, b) >= 3 else 0.0)
    if fam == "count":
        n = len(_select(objs, q[1]))
        return Truth(((str(n), 1.0),), "count", HARD_COUNT * n)
    if fam == "same":
        pairs = [(x, y) for x in _select(objs, q[1]) for y in _select(objs, q[2]) if x != y]
        return _yn([getattr(x, q[3]) == getattr(y, q[3]) for x, y in pairs]) if pairs else None
    refs = _select(objs, q[2] if fam in ("rel_exist", "rel_count", "rel_query") else q[1])
    if not refs:
        return None
    if fam == "check":
        return _yn([getattr(o, q[2]) == q[3] for o in refs])
    if fam == "query":
        return Truth(_dist([getattr(o, q[2]) for o in refs]), q[2], 0.0)
    if fam == "where":
        if len(refs) == 1:
            return Truth(_region(refs[0], grid), "where", 0.0)
        return Truth(_dist([_region(o, grid)[0][0] for o in refs]), "where", 0.0)
    related = [_related(objs, r, q[3]) for r in refs]
    if fam == "rel_exist":
        return _yn([any(_matches(o, q[1]) for o in rel) for rel in related])
    if fam == "rel_count":
        counts = [sum(_matches(o, q[1]) for o in rel) for rel in related]
        return Truth(_dist([str(n) for n in counts]), "count", HARD_COUNT * max(counts))
    targets = [getattr(o, q[1]) for rel in related for o in rel]  # rel_query
    return Truth(_dist(targets), q[1], 0.0) if targets else None


def _sample(fam: str, scene: Scene, rnd: random.Random) -> tuple | None:
    """Random parameters of a question of family `fam` about `scene` (None: not possible)."""
    objs = scene.objects
    if not objs:  # only existence and counting make sense in an empty scene
        ok = fam in ("exist", "count")
        return (fam, _random_desc(rnd, 1 + int(rnd.random() * 2)), int(rnd.random() * 2)) if ok else None
    o = _pick(rnd, objs)
    if fam == "exist":
        if rnd.random() < 0.75:
            desc = _desc_of(o, _some_attrs(rnd, _weighted(rnd, {1: 0.35, 2: 0.45, 3: 0.2})))
            desc = _mutate(rnd, desc) if rnd.random() < 0.45 else desc
        else:
            desc = _random_desc(rnd, 1 + int(rnd.random() * 3))
        return ("exist", desc, int(rnd.random() * 2))
    if fam == "count":
        u = rnd.random()
        if u < 0.2:
            desc = ()  # "how many objects ..."
        elif u < 0.85:
            desc = _desc_of(o, _some_attrs(rnd, 1 if rnd.random() < 0.6 else 2))
        else:
            desc = _random_desc(rnd, 1)
        return ("count", desc, int(rnd.random() * 2))
    if fam == "more":
        attr = _pick(rnd, ATTR_ORDER)
        a = getattr(o, attr)
        b = getattr(_pick(rnd, objs), attr)
        b = b if b != a else _pick(rnd, [v for v in ATTRIBUTES[attr] if v != a])
        return ("more", ((attr, a),), ((attr, b),))
    if fam in ("check", "query", "where"):
        attr = _pick(rnd, ATTR_ORDER) if fam == "check" else _weighted(rnd, QUERY_P)
        ref = _refer(rnd, o, objs, skip=attr if fam != "where" else "", ambiguous=rnd.random() < AMBIGUOUS_P)
        if ref is None:
            return None
        if fam == "where":
            return ("where", ref)
        if fam == "query":
            return ("query", ref, attr, int(rnd.random() * 2))
        value = getattr(o, attr) if rnd.random() < 0.5 else _pick(rnd, ATTRIBUTES[attr])
        return ("check", ref, attr, value)
    if fam == "same":
        others = [x for x in objs if x != o]
        if not others:
            return None
        attr = _pick(rnd, ATTR_ORDER)
        ra, rb = _refer(rnd, o, objs, skip=attr), _refer(rnd, _pick(rnd, others), objs, skip=attr)
        return None if ra is None or rb is None else ("same", ra, rb, attr)
    rel = _pick(rnd, RELATIONS)
    if fam == "rel_query":  # the target `o` must be the only object in relation to a referable anchor
        anchors = [(r, rl) for r in objs for rl in RELATIONS if _related(objs, r, rl) == [o]]
        if not anchors:
            return None
        r, rel = _pick(rnd, anchors)
        ref = _refer(rnd, r, objs)
        return None if ref is None else ("rel_query", _weighted(rnd, QUERY_P), ref, rel)
    ref = _refer(rnd, o, objs)
    if ref is None:
        return None
    near = _related(objs, o, rel)
    if fam == "rel_exist":
        if near and rnd.random() < 0.65:
            desc = _desc_of(_pick(rnd, near), _some_attrs(rnd, 1 + int(rnd.random() * 2)))
        else:
            desc = _random_desc(rnd, 1 + int(rnd.random() * 2))
        return ("rel_exist", desc, ref, rel)
    desc = () if rnd.random() < 0.4 or not near else _desc_of(_pick(rnd, near), _some_attrs(rnd, 1))
    return ("rel_count", desc, ref, rel)


def _render(q: tuple) -> str:
    fam = q[0]
    if fam == "exist":
        return f"is there {_a(_phrase(q[1]))}?" if q[2] == 0 else f"are there any {_phrase(q[1], True)}?"
    if fam == "count":
        tail = "are there" if q[2] == 0 else "are in the picture"
        return f"how many {_phrase(q[1], True)} {tail}?"
    if fam == "more":
        return f"are there more {_phrase(q[1], True)} than {_phrase(q[2], True)}?"
    if fam == "same":
        return f"does the {_phrase(q[1])} have the same {q[3]} as the {_phrase(q[2])}?"
    if fam == "where":
        return f"where is the {_phrase(q[1])}?"
    if fam == "check":
        ref, attr, value = _phrase(q[1]), q[2], q[3]
        if attr == "material":
            return f"is the {ref} made of {value}?"
        return f"is the {ref} {_a(value)}?" if attr == "shape" else f"is the {ref} {value}?"
    if fam == "query":
        ref, attr, phr = _phrase(q[1]), q[2], q[3]
        if attr == "color":
            return f"what color is the {ref}?" if phr == 0 else f"what is the color of the {ref}?"
        if attr == "shape":
            return f"what is the shape of the {ref}?" if phr == 0 else f"what type of object is the {ref}?"
        return f"what size is the {ref}?" if attr == "size" else f"what is the {ref} made of?"
    ref, rel = _phrase(q[2]), q[3]
    if fam == "rel_exist":
        return f"is there {_a(_phrase(q[1]))} {rel} the {ref}?"
    if fam == "rel_count":
        return f"how many {_phrase(q[1], True)} are {rel} the {ref}?"
    return {
        "color": f"what color is the object {rel} the {ref}?",  # rel_query
        "shape": f"what kind of object is {rel} the {ref}?",
        "size": f"what size is the object {rel} the {ref}?",
        "material": f"what is the object {rel} the {ref} made of?",
    }[q[1]]


@functools.lru_cache(maxsize=65536)
def question_type(text: str) -> str:
    """The longest official question type whose words begin the question."""
    words = text.rstrip("?").split()
    best = ""
    for t in OFFICIAL_QUESTION_TYPES:
        tw = t.split()
        if words[: len(tw)] == tw and len(t) > len(best):
            best = t
    return best or "none of the above"


def _propose(scene: Scene, grid: int, rnd: random.Random, balance: Counter):
    """One question about `scene`, picked among a few candidates to flatten answer counts."""
    fam = _weighted(rnd, FAMILY_P)
    target = "yes" if balance["yes"] <= balance["no"] else "no"
    best = None
    for _ in range(8 if ANSWER_TYPE[fam] == "yes/no" else 4):
        q = _sample(fam, scene, rnd)
        t = None if q is None else _evaluate(q, scene, grid)
        if t is None:
            continue
        if ANSWER_TYPE[fam] == "yes/no":
            best = (q, t)
            if t.dist[0][0] == target:
                break
        elif best is None or balance[fam, t.dist[0][0]] < balance[fam, best[1].dist[0][0]]:
            best = (q, t)
    return best


def _count(balance: Counter, q: tuple, t: Truth) -> None:
    balance[t.dist[0][0] if ANSWER_TYPE[q[0]] == "yes/no" else (q[0], t.dist[0][0])] += 1


def _ask(scenes: list[Scene], per_image: int, grid: int, rnd: random.Random) -> list[dict]:
    """Questions per image as {text: (params, truth)}; a share are complementary pairs."""
    asked: list[dict] = [{} for _ in scenes]
    balance: Counter = Counter()
    for i in _shuffle(rnd, list(range(len(scenes)))):
        for _ in range(200):
            if len(asked[i]) >= per_image:
                break
            qt = _propose(scenes[i], grid, rnd, balance)
            if qt is None or _render(qt[0]) in asked[i]:
                continue
            text = _render(qt[0])
            asked[i][text] = qt
            _count(balance, *qt)
            if qt[1].answer is None or rnd.random() >= PAIR_P:
                continue
            for _ in range(PAIR_TRIES):  # the same words on another image, another answer
                j = int(rnd.random() * len(scenes))
                if len(asked[j]) >= per_image or text in asked[j]:
                    continue
                t = _evaluate(qt[0], scenes[j], grid)
                if t is not None and t.answer is not None and t.answer != qt[1].answer:
                    asked[j][text] = (qt[0], t)
                    _count(balance, qt[0], t)
                    break
        if len(asked[i]) < per_image:
            raise RuntimeError(f"could not find {per_image} distinct questions for image {i}")
    return asked


# The official normalization (one implementation, vqa.data.answers), cached: the statistics
# normalize every answer of every split and the strings repeat.
normalize = functools.lru_cache(maxsize=65536)(normalize_answer)


def _annotate(t: Truth, rnd: random.Random) -> list[dict]:
    """Ten people answer independently (answer_id 1..10)."""
    slip = min(0.7, _weighted(rnd, DIFFICULTY) * SLIP[t.kind] + t.hard)
    probs = dict(t.dist)
    out = []
    for k in range(1, 11):
        a, conf, u = _weighted(rnd, probs), "yes", rnd.random()
        if u < JUNK_P:
            a = _pick(rnd, ("i don't know",) if t.kind == "yesno" else ("i don't know", "yes", "nothing"))
            conf = "no" if rnd.random() < 0.6 else "maybe"
        elif u < JUNK_P + slip:
            if t.kind == "count":
                n = int(a)
                a = str(n + 1 if n == 0 or rnd.random() < 0.45 else n - 1)
            elif t.kind == "where":
                a = _pick(rnd, [r for r in REGIONS if r != a])
            else:
                a = _pick(rnd, CONFUSIONS[a])
            conf = _weighted(rnd, {"maybe": 0.6, "yes": 0.3, "no": 0.1})
        elif rnd.random() < 0.08:
            conf = "maybe"
        u = rnd.random()
        for variant, p in VARIANTS.get(a, ()):
            if u < p:
                a = variant
                break
            u -= p
        if t.kind == "count" and a.isdigit() and int(a) <= 10 and rnd.random() < 0.04:
            a = NUMBER_WORDS[int(a)]  # folded by the official normalization
        out.append({"answer_id": k, "answer": a, "answer_confidence": conf})
    return out


def most_common_answer(answers: list[dict]) -> str:
    """Most frequent normalized answer; ties go to the alphabetically first."""
    c = Counter(normalize(a["answer"]) for a in answers)
    return min(c, key=lambda a: (-c[a], a))


# ---------------------------------------------------------------- features


def _encoder(out_dim: int, tag: int):
    """Fixed random 2-layer MLP, the same for every data seed and split."""
    rng = np.random.default_rng([ENCODER_SEED, tag, out_dim])
    w1 = rng.standard_normal((IN_DIM, HIDDEN)).astype(np.float32) * (2.0 / math.sqrt(IN_DIM))
    b1 = rng.standard_normal(HIDDEN).astype(np.float32) * 0.5
    w2 = rng.standard_normal((HIDDEN, out_dim)).astype(np.float32) / math.sqrt(HIDDEN)
    b2 = rng.standard_normal(out_dim).astype(np.float32) * 0.2
    return lambda x: np.tanh(x @ w1 + b1) @ w2 + b2  # [R, IN_DIM] -> [R, out_dim], pre-noise


def _position(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[R] centres in 0..1 -> [R, 12] sinusoids."""
    k = np.pi * np.arange(1, 4, dtype=np.float32)
    xs, ys = x.astype(np.float32)[:, None] * k, y.astype(np.float32)[:, None] * k
    return 0.5 * np.concatenate([np.sin(xs), np.cos(xs), np.sin(ys), np.cos(ys)], axis=1)


def _cell_position(cells: np.ndarray, grid: int) -> np.ndarray:
    """[C] cell indices (row * S + col) -> [C, 12] position code of the cell centres."""
    return _position((cells % grid + 0.5) / grid, (cells // grid + 0.5) / grid)


def _content(o: Obj | None, stuff: str = "floor") -> np.ndarray:
    """Encoder input without position: attribute one-hots and object flag, or a stuff one-hot."""
    vec = np.zeros(IN_DIM - 12, np.float32)
    if o is None:
        vec[17 + STUFF.index(stuff)] = 1.0
        return vec
    base = 0
    for a in ATTR_ORDER:
        vec[base + ATTRIBUTES[a].index(getattr(o, a))] = 1.0
        base += len(ATTRIBUTES[a])
    vec[16] = 1.0
    return vec


def _layout_boxes(scenes: list[Scene], grid: int, rnd: random.Random):
    """Boxes of every image: one per object, sometimes a part box, 2-4 background boxes.

    Returns boxes [R, 4] (pixels), encoder inputs [R, IN_DIM], pos_boxes [N, 2] and, per
    image, the row (within the image) of each object's box.
    """
    boxes, inputs, pos, obj_rows = [], [], [], []
    for s in scenes:
        cw, ch = s.width / grid, s.height / grid
        items = []  # (box, input without position, object index or -1)
        for j, o in enumerate(s.objects):
            half = (0.3 if o.size == "small" else 0.48) * (1 + 0.1 * (rnd.random() - 0.5))
            cx = (o.col + 0.5 + 0.2 * (rnd.random() - 0.5)) * cw
            cy = (o.row + 0.5 + 0.2 * (rnd.random() - 0.5)) * ch
            box = (cx - half * cw, cy - half * ch, cx + half * cw, cy + half * ch)
            items.append((box, _content(o), j))
            if rnd.random() < 0.25:  # a part of the object, like overlapping detector boxes
                f = 0.5 + 0.3 * rnd.random()
                part = (box[0], box[1], box[0] + f * (box[2] - box[0]), box[1] + f * (box[3] - box[1]))
                items.append((part, 0.6 * _content(o) + 0.4 * _content(None, "table"), -1))
        for _ in range(2 + int(rnd.random() * 3)):
            w, h = (0.3 + 0.6 * rnd.random()) * s.width, (0.2 + 0.5 * rnd.random()) * s.height
            x, y = rnd.random() * (s.width - w), rnd.random() * (s.height - h)
            items.append(((x, y, x + w, y + h), _content(None, _pick(rnd, STUFF)), -1))
        _shuffle(rnd, items)
        rows = [0] * len(s.objects)
        for k, (_, _, j) in enumerate(items):
            if j >= 0:
                rows[j] = k
        start = len(boxes)
        boxes += [
            tuple(min(max(v, 0.0), lim) for v, lim in zip(b, (s.width, s.height) * 2)) for b, _, _ in items
        ]
        inputs += [v for _, v, _ in items]
        pos.append((start, len(boxes)))
        obj_rows.append(rows)
    bb = np.array(boxes, np.float32).reshape(-1, 4)
    wh = np.repeat([(s.width, s.height) for s in scenes], [b - a for a, b in pos], axis=0).reshape(-1, 2)
    centre = (bb[:, :2] + bb[:, 2:]) / 2 / np.maximum(wh, 1)
    x = np.concatenate(
        [np.array(inputs, np.float32).reshape(-1, IN_DIM - 12), _position(centre[:, 0], centre[:, 1])], axis=1
    )
    return bb, x, np.array(pos, np.int64).reshape(-1, 2), obj_rows


def _grid_block(scenes: list[Scene], grid: int, enc, base: np.ndarray, rng) -> np.ndarray:
    """Grid features of a block of images: [n, D, S, S] float16."""
    n = len(scenes)
    pre = np.repeat(base[None], n, axis=0)  # [n, S*S, D] background cells (depend on position only)
    objs = [(i, o) for i, s in enumerate(scenes) for o in s.objects]
    if objs:
        img = np.array([i for i, _ in objs])
        cell = np.array([o.row * grid + o.col for _, o in objs])
        x = np.concatenate([np.stack([_content(o) for _, o in objs]), _cell_position(cell, grid)], axis=1)
        pre[img, cell] = enc(x)  # [objects, D]
    pre += rng.standard_normal(pre.shape, dtype=np.float32) * NOISE
    np.maximum(pre, 0, out=pre)
    return pre.astype(np.float16).transpose(0, 2, 1).reshape(n, -1, grid, grid)


def _write_features(path: Path, ids, scenes, boxes, grid, grid_dim, box_dim, seed, rng) -> None:
    bb, x, pos, _ = boxes
    genc, benc = _encoder(grid_dim, 0), _encoder(box_dim, 1)
    cells = np.arange(grid * grid)
    base = genc(
        np.concatenate([np.tile(_content(None), (len(cells), 1)), _cell_position(cells, grid)], axis=1)
    )
    wh = np.array([(s.width, s.height) for s in scenes], np.int32).reshape(-1, 2)
    feats = benc(x) + rng.standard_normal((len(x), box_dim), dtype=np.float32) * NOISE
    size = np.repeat(wh, pos[:, 1] - pos[:, 0], axis=0).astype(np.float32)
    spatial = np.concatenate([bb / np.tile(size, 2), (bb[:, 2:] - bb[:, :2]) / size], axis=1)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w", track_order=True) as f:
            for k, v in (
                ("format", "vqa-features"),
                ("version", 1),
                ("grid_size", grid),
                ("generator", "vqa synth"),
                ("seed", seed),
            ):
                f.attrs[k] = v
            f.create_dataset("ids", data=np.asarray(ids, np.int64), track_times=False)
            g = f.create_dataset("grid", (len(scenes), grid_dim, grid, grid), np.float16, track_times=False)
            for a in range(0, len(scenes), CHUNK):
                g[a : a + CHUNK] = _grid_block(scenes[a : a + CHUNK], grid, genc, base, rng)
            for name, data in (
                ("image_features", np.maximum(feats, 0).astype(np.float16)),
                ("image_bb", bb),
                ("spatial_features", spatial.astype(np.float32)),
                ("pos_boxes", pos),
                ("image_w", wh[:, 0]),
                ("image_h", wh[:, 1]),
            ):
                f.create_dataset(name, data=data, track_times=False)

    _atomic(path, write)


# ---------------------------------------------------------------- statistics


TYPES = ("yes/no", "number", "other")


def _by_type(scores: list[tuple[str, float]]) -> dict:
    out = {"overall": sum(s for _, s in scores) / max(len(scores), 1)}
    for t in TYPES:
        sel = [s for a, s in scores if a == t]
        out[t] = sum(sel) / len(sel) if sel else None
    return out


def _split_stats(anns: list[dict]) -> dict:
    mca, human, uniq, unanimous, known, right, pairs = [], [], 0, 0, 0, 0, defaultdict(set)
    for a in anns:
        norm = [normalize(x["answer"]) for x in a["answers"]]
        c = Counter(norm)
        uniq += len(c)
        unanimous += len({x["answer"] for x in a["answers"]}) == 1
        mca.append((a["answer_type"], score_from_count(c[a["multiple_choice_answer"]])))
        human.append((a["answer_type"], sum(score_from_count(c[x] - 1, 9) for x in norm) / 10))
        pairs[a["question"]].add(a["multiple_choice_answer"])
        if a["truth"] is not None:
            known += 1
            right += a["multiple_choice_answer"] == normalize(a["truth"])
    yn = [a["multiple_choice_answer"] for a in anns if a["answer_type"] == "yes/no"]
    num = Counter(a["multiple_choice_answer"] for a in anns if a["answer_type"] == "number")
    n = max(len(anns), 1)
    return {
        "mean_unique_answers": uniq / n,
        "unanimous": unanimous / n,
        "answer_types": dict(Counter(a["answer_type"] for a in anns)),
        "mca_is_true_answer": right / max(known, 1),
        "paired_questions": sum(len(pairs[a["question"]]) > 1 for a in anns) / n,
        "yes_share": yn.count("yes") / max(len(yn), 1),
        "top_number_share": max(num.values(), default=0) / max(sum(num.values()), 1),
        "mca_accuracy": _by_type(mca),
        "human_accuracy": _by_type(human),
    }


def _prior_accuracy(train: list[dict], val: list[dict]) -> dict:
    """Answer the most common training answer of the same question string, else question type."""
    by_q, by_type = defaultdict(Counter), defaultdict(Counter)
    for a in train:
        by_q[a["question"]][a["multiple_choice_answer"]] += 1
        by_type[a["question_type"]][a["multiple_choice_answer"]] += 1
    overall = Counter(a["multiple_choice_answer"] for a in train)

    def top(c: Counter) -> str:
        return min(c, key=lambda x: (-c[x], x))

    scores = []
    for a in val:
        c = by_q.get(a["question"]) or by_type.get(a["question_type"]) or overall
        guess = top(c)
        scores.append(
            (a["answer_type"], score_from_count(sum(normalize(x["answer"]) == guess for x in a["answers"])))
        )
    return _by_type(scores)


def format_stats(stats: dict) -> str:
    """The statistics as a compact table (shares and accuracies in percent)."""

    def pct(d: dict) -> str:
        return "".join("     -" if d[k] is None else f"{100 * d[k]:6.1f}" for k in ("overall",) + TYPES)

    cols = "".join(f"{h:>6}" for h in ("all", "y/n", "num", "other"))
    lines = [
        f"{'split':<13}{'images':>7}{'questions':>10}{'uniq/q':>7}{'unanim':>7}{'paired':>7}{'MCA=true':>9}"
        f"  | MCA acc{cols}  | human acc{cols}"
    ]
    for split, s in stats["splits"].items():
        row = f"{split:<13}{s['images']:>7}{s['questions']:>10}"
        if "mca_accuracy" in s:
            row += (
                f"{s['mean_unique_answers']:>7.2f}{100 * s['unanimous']:>7.1f}{100 * s['paired_questions']:>7.1f}"
                f"{100 * s['mca_is_true_answer']:>9.1f}  |        {pct(s['mca_accuracy'])}  |          "
                f"{pct(s['human_accuracy'])}"
            )
        lines.append(row)
    t = stats["splits"]["train2014"]
    lines.append(f"{'question-only prior, val':<60}  |        {pct(stats['prior_accuracy_val'])}  |")
    lines.append(
        f"(percent; prior: most common train answer of the same question, else question type; "
        f"train yes {100 * t['yes_share']:.1f}% of yes/no, top count {100 * t['top_number_share']:.1f}% of number)"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- writing


def _atomic(path: Path, write) -> None:
    """Write through a temp file in the same folder, then rename: never a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj) -> None:
    _atomic(path, lambda tmp: tmp.write_text(json.dumps(obj), encoding="utf-8"))


def _check(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(
            f"{name} (--{name.replace('_', '-')}) = {value!r}: must be an integer from {low} to {high}"
        )


def _make_split(split_no: int, n: int, seed: int, per_image: int, grid: int):
    """Image ids, scenes, questions and annotations of one split (rows in ascending image id)."""
    split, _, first = SPLITS[split_no]
    rnd = random.Random(f"vqa-synth/{seed}/{split}")
    ids = first + np.sort(np.random.default_rng([seed, split_no]).choice(ID_RANGE, n, replace=False))
    scenes = [_make_scene(rnd, grid) for _ in range(n)]
    questions, anns, truths = [], [], []
    for image_id, asked in zip(ids.tolist(), _ask(scenes, per_image, grid, rnd)):
        for k, (text, (q, truth)) in enumerate(asked.items()):
            qid = image_id * 1000 + k  # the official numbering
            answers = _annotate(truth, rnd)
            questions.append({"question_id": qid, "image_id": image_id, "question": text})
            anns.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": question_type(text),
                    "answer_type": ANSWER_TYPE[q[0]],
                    "multiple_choice_answer": most_common_answer(answers),
                    "answers": answers,
                }
            )
            truths.append(truth.answer)
    return ids, scenes, questions, anns, truths, _layout_boxes(scenes, grid, rnd)


def generate(
    out_dir,
    *,
    seed: int = 0,
    train_images: int,
    val_images: int,
    test_images: int,
    questions_per_image: int,
    grid_size: int = 7,
    grid_dim: int = 128,
    box_dim: int = 128,
    features: bool = True,
    render: bool = False,
    quiet: bool = False,
) -> dict:
    """Write a synthetic VQA v2 dataset into `out_dir`; return (and save as stats.json) its statistics.

    The same arguments give byte-identical files. Every file is written atomically. `render` also
    draws every image as out_dir/images/<subtype>/COCO_<subtype>_<12-digit id>.png (vqa.data.render).
    """
    _check("seed", seed, 0, 2**63 - 1)
    counts = (train_images, val_images, test_images)
    for name, value, low in zip(("train_images", "val_images", "test_images"), counts, (1, 1, 0)):
        _check(name, value, low, ID_RANGE)
    _check("questions_per_image", questions_per_image, 1, 20)
    _check("grid_size", grid_size, 3, 64)
    _check("grid_dim", grid_dim, 1, 8192)
    _check("box_dim", box_dim, 1, 8192)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"output folder {out}: exists and is not a folder; pass another path to --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"output folder {out}: cannot create it ({e.strerror}); pass another path to --out"
        ) from e
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    start = time.perf_counter()
    options = dict(
        train_images=train_images,
        val_images=val_images,
        test_images=test_images,
        questions_per_image=questions_per_image,
        grid_size=grid_size,
        grid_dim=grid_dim,
        box_dim=box_dim,
    )
    info = {
        "description": "Synthetic VQA v2-format data written by `vqa synth`",
        "version": "2.0",
        "contributor": "vqa synth",
        "seed": seed,
    }
    licence = {"name": "generated data, no restrictions", "url": ""}
    stats = {"generator": "vqa synth", "seed": seed, "options": options, "splits": {}}
    annotated, drawn = {}, {}
    for split_no, ((split, subtype, _), n) in enumerate(zip(SPLITS, counts)):
        ids, scenes, questions, anns, truths, boxes = _make_split(
            split_no, n, seed, questions_per_image, grid_size
        )
        _write_json(
            out / f"v2_OpenEnded_mscoco_{split}_questions.json",
            {
                "info": info,
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "data_subtype": split,
                "questions": questions,
                "license": licence,
            },
        )
        if split != "test-dev2015":  # test-dev has questions only, as in VQA v2
            _write_json(
                out / f"v2_mscoco_{split}_annotations.json",
                {
                    "info": info,
                    "data_type": "mscoco",
                    "data_subtype": split,
                    "annotations": anns,
                    "license": licence,
                },
            )
            annotated[split] = [
                dict(a, question=q["question"], truth=t) for a, q, t in zip(anns, questions, truths)
            ]
        scene_rows = [
            {
                "image_id": i,
                "width": s.width,
                "height": s.height,
                "objects": [dict(o._asdict(), box=r) for o, r in zip(s.objects, rows)],
            }
            for i, s, rows in zip(ids.tolist(), scenes, boxes[3])
        ]
        _write_json(
            out / f"scenes_{subtype}.json",
            {"info": info, "data_subtype": subtype, "grid_size": grid_size, "scenes": scene_rows},
        )
        if render:
            drawn[subtype] = scene_rows
        if features:
            _write_features(
                out / f"features_{subtype}.h5",
                ids,
                scenes,
                boxes,
                grid_size,
                grid_dim,
                box_dim,
                seed,
                np.random.default_rng([seed, split_no, 1]),
            )
        stats["splits"][split] = {"images": n, "questions": len(questions)}
        if split in annotated:
            stats["splits"][split].update(_split_stats(annotated[split]))
        say(f"wrote {split}: {n} images, {len(questions)} questions ({time.perf_counter() - start:.1f} s)")
    stats["prior_accuracy_val"] = _prior_accuracy(annotated["train2014"], annotated["val2014"])
    _write_json(out / "stats.json", stats)
    if render:
        from vqa.data.render import render_split

        for subtype, scene_rows in drawn.items():
            folder = render_split(out, subtype, scene_rows, grid_size)
            say(f"rendered {len(scene_rows)} images into {folder} ({time.perf_counter() - start:.1f} s)")
    say(format_stats(stats))
    return stats


def add_synth_args(p: argparse.ArgumentParser) -> None:
    """Options of `vqa synth`; the counts and shapes default to the preset's."""
    p.add_argument("--out", required=True, type=Path, help="folder to write the dataset into")
    p.add_argument("--preset", choices=list(PRESETS), default="small", help="sizes (default: small)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default: 0)")
    for key in PRESETS["small"]:
        p.add_argument(
            "--" + key.replace("_", "-"),
            type=int,
            default=None,
            help=f"override the preset's {key.replace('_', ' ')}",
        )
    p.add_argument(
        "--render",
        action="store_true",
        help="also draw every image as OUT/images/<subtype>/COCO_<subtype>_<id>.png (for vqa extract)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing")


def synth_command(args) -> int:
    """`vqa synth`: generate the dataset and print its statistics."""
    options = dict(PRESETS[args.preset])
    for key in options:
        if getattr(args, key, None) is not None:
            options[key] = getattr(args, key)
    generate(args.out, seed=args.seed, render=args.render, quiet=args.quiet, **options)
    return 0

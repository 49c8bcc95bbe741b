"""Question templates: a question is a parameter tuple whose first item names its family.

For each family: how to sample parameters about a scene (`sample`), the words (`wording`,
which always start with an official question type), and the true answer on any scene
(`evaluate`; the same words asked of another image give that image's answer, which is how
complementary pairs are made in ask.py).
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from typing import NamedTuple

from vqa.synth.scenes import (
    ATTR_ORDER,
    ATTRIBUTES,
    RELATIONS,
    SUBSETS,
    Obj,
    Scene,
    desc_of,
    matches,
    pick,
    region,
    related,
    select,
    shuffle,
    weighted,
)

# The 65 official question types (shared/docs/vqa-question-types.txt, in file order).
# fmt: off
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
ANSWER_TYPE = {"exist": "yes/no", "check": "yes/no", "rel_exist": "yes/no", "more": "yes/no",
               "same": "yes/no", "count": "number", "rel_count": "number",
               "query": "other", "rel_query": "other", "where": "other"}
FAMILY_P = {"exist": 0.14, "check": 0.10, "rel_exist": 0.05, "more": 0.04, "same": 0.05,
            "count": 0.10, "rel_count": 0.04, "query": 0.30, "rel_query": 0.10, "where": 0.08}
QUERY_P = {"color": 0.4, "shape": 0.25, "size": 0.15, "material": 0.2}
AMBIGUOUS_P = 0.1  # share of referring expressions that fit several objects (answers then split)
HARD_COUNT = 0.09  # extra annotator slip per counted object
# fmt: on


class Truth(NamedTuple):
    dist: tuple[tuple[str, float], ...]  # intended answers and their probabilities
    kind: str  # "yesno", "count", an attribute name or "where": picks the slips
    hard: float  # extra slip probability (large counts, close comparisons)

    @property
    def answer(self) -> str | None:  # the answer when the question is unambiguous
        return self.dist[0][0] if len(self.dist) == 1 else None


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


# ---------------------------------------------------------------- descriptors


def _some_attrs(rnd: random.Random, k: int) -> list[str]:
    return shuffle(rnd, list(ATTR_ORDER))[:k]


def _random_desc(rnd: random.Random, k: int) -> tuple:
    chosen = _some_attrs(rnd, k)
    return tuple((a, pick(rnd, ATTRIBUTES[a])) for a in ATTR_ORDER if a in chosen)


def _mutate(rnd: random.Random, desc: tuple) -> tuple:
    i = int(rnd.random() * len(desc))
    a, v = desc[i]
    other = pick(rnd, [x for x in ATTRIBUTES[a] if x != v])
    return desc[:i] + ((a, other),) + desc[i + 1 :]


def _refer(rnd: random.Random, o: Obj, objects, skip: str = "", ambiguous: bool = False):
    """A descriptor that picks out `o` (or, if `ambiguous`, `o` and others); None if none does."""
    subsets = sorted(
        (s for s in SUBSETS if skip not in s),
        key=lambda s: len(s) + 0.6 * ("shape" not in s) + 0.8 * rnd.random(),
    )
    for s in subsets:
        desc = desc_of(o, s)
        n = len(select(objects, desc))
        if (n > 1) if ambiguous else (n == 1):
            return desc
    return None


def _phrase(desc: tuple, plural: bool = False) -> str:
    words = [v for a, v in desc if a != "shape"] + [dict(desc).get("shape", "object")]
    return " ".join(words) + ("s" if plural else "")


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


# ---------------------------------------------------------------- true answers


def _dist(answers: list[str]) -> tuple[tuple[str, float], ...]:
    c = Counter(answers)
    return tuple(sorted(((a, n / len(answers)) for a, n in c.items()), key=lambda kv: (-kv[1], kv[0])))


def _yn(answers: list[bool]) -> Truth:
    return Truth(_dist(["yes" if x else "no" for x in answers]), "yesno", 0.0)


def evaluate(q: tuple, scene: Scene, grid: int) -> Truth | None:
    """The answer of question `q` (a parameter tuple) on `scene`; None if it does not apply."""
    fam, objs = q[0], scene.objects
    if fam == "exist":
        return _yn([bool(select(objs, q[1]))])
    if fam == "more":
        a, b = len(select(objs, q[1])), len(select(objs, q[2]))
        return Truth(_yn([a > b]).dist, "yesno", 0.12 if abs(a - b) <= 1 and max(a, b) >= 3 else 0.0)
    if fam == "count":
        n = len(select(objs, q[1]))
        return Truth(((str(n), 1.0),), "count", HARD_COUNT * n)
    if fam == "same":
        pairs = [(x, y) for x in select(objs, q[1]) for y in select(objs, q[2]) if x != y]
        return _yn([getattr(x, q[3]) == getattr(y, q[3]) for x, y in pairs]) if pairs else None
    refs = select(objs, q[2] if fam in ("rel_exist", "rel_count", "rel_query") else q[1])
    if not refs:
        return None
    if fam == "check":
        return _yn([getattr(o, q[2]) == q[3] for o in refs])
    if fam == "query":
        return Truth(_dist([getattr(o, q[2]) for o in refs]), q[2], 0.0)
    if fam == "where":
        if len(refs) == 1:
            return Truth(region(refs[0], grid), "where", 0.0)
        return Truth(_dist([region(o, grid)[0][0] for o in refs]), "where", 0.0)
    near = [related(objs, r, q[3]) for r in refs]
    if fam == "rel_exist":
        return _yn([any(matches(o, q[1]) for o in rel) for rel in near])
    if fam == "rel_count":
        counts = [sum(matches(o, q[1]) for o in rel) for rel in near]
        return Truth(_dist([str(n) for n in counts]), "count", HARD_COUNT * max(counts))
    targets = [getattr(o, q[1]) for rel in near for o in rel]  # rel_query
    return Truth(_dist(targets), q[1], 0.0) if targets else None


# ---------------------------------------------------------------- sampling and wording


def _sample_exist(o: Obj, objs, rnd: random.Random) -> tuple:
    if rnd.random() < 0.75:
        desc = desc_of(o, _some_attrs(rnd, weighted(rnd, {1: 0.35, 2: 0.45, 3: 0.2})))
        desc = _mutate(rnd, desc) if rnd.random() < 0.45 else desc
    else:
        desc = _random_desc(rnd, 1 + int(rnd.random() * 3))
    return ("exist", desc, int(rnd.random() * 2))


def _sample_count(o: Obj, objs, rnd: random.Random) -> tuple:
    u = rnd.random()
    if u < 0.2:
        desc = ()  # "how many objects ..."
    elif u < 0.85:
        desc = desc_of(o, _some_attrs(rnd, 1 if rnd.random() < 0.6 else 2))
    else:
        desc = _random_desc(rnd, 1)
    return ("count", desc, int(rnd.random() * 2))


def _sample_more(o: Obj, objs, rnd: random.Random) -> tuple:
    attr = pick(rnd, ATTR_ORDER)
    a = getattr(o, attr)
    b = getattr(pick(rnd, objs), attr)
    b = b if b != a else pick(rnd, [v for v in ATTRIBUTES[attr] if v != a])
    return ("more", ((attr, a),), ((attr, b),))


def _sample_about(fam: str, o: Obj, objs, rnd: random.Random) -> tuple | None:
    """check, query and where: a question about one attribute (or the place) of a referred object."""
    attr = pick(rnd, ATTR_ORDER) if fam == "check" else weighted(rnd, QUERY_P)
    ref = _refer(rnd, o, objs, skip=attr if fam != "where" else "", ambiguous=rnd.random() < AMBIGUOUS_P)
    if ref is None:
        return None
    if fam == "where":
        return ("where", ref)
    if fam == "query":
        return ("query", ref, attr, int(rnd.random() * 2))
    value = getattr(o, attr) if rnd.random() < 0.5 else pick(rnd, ATTRIBUTES[attr])
    return ("check", ref, attr, value)


def _sample_same(o: Obj, objs, rnd: random.Random) -> tuple | None:
    others = [x for x in objs if x != o]
    if not others:
        return None
    attr = pick(rnd, ATTR_ORDER)
    ra, rb = _refer(rnd, o, objs, skip=attr), _refer(rnd, pick(rnd, others), objs, skip=attr)
    return None if ra is None or rb is None else ("same", ra, rb, attr)


def _sample_related(fam: str, o: Obj, objs, rnd: random.Random) -> tuple | None:
    """rel_query, rel_exist and rel_count: a question about what stands in a relation to an object."""
    rel = pick(rnd, RELATIONS)
    if fam == "rel_query":  # the target `o` must be the only object in relation to a referable anchor
        anchors = [(r, rl) for r in objs for rl in RELATIONS if related(objs, r, rl) == [o]]
        if not anchors:
            return None
        r, rel = pick(rnd, anchors)
        ref = _refer(rnd, r, objs)
        return None if ref is None else ("rel_query", weighted(rnd, QUERY_P), ref, rel)
    ref = _refer(rnd, o, objs)
    if ref is None:
        return None
    near = related(objs, o, rel)
    if fam == "rel_exist":
        if near and rnd.random() < 0.65:
            desc = desc_of(pick(rnd, near), _some_attrs(rnd, 1 + int(rnd.random() * 2)))
        else:
            desc = _random_desc(rnd, 1 + int(rnd.random() * 2))
        return ("rel_exist", desc, ref, rel)
    desc = () if rnd.random() < 0.4 or not near else desc_of(pick(rnd, near), _some_attrs(rnd, 1))
    return ("rel_count", desc, ref, rel)


_SAMPLERS = {"exist": _sample_exist, "count": _sample_count, "more": _sample_more, "same": _sample_same}


def sample(fam: str, scene: Scene, rnd: random.Random) -> tuple | None:
    """Random parameters of a question of family `fam` about `scene` (None: not possible)."""
    objs = scene.objects
    if not objs:  # only existence and counting make sense in an empty scene
        ok = fam in ("exist", "count")
        return (fam, _random_desc(rnd, 1 + int(rnd.random() * 2)), int(rnd.random() * 2)) if ok else None
    o = pick(rnd, objs)
    if fam in ("check", "query", "where"):
        return _sample_about(fam, o, objs, rnd)
    return _SAMPLERS[fam](o, objs, rnd) if fam in _SAMPLERS else _sample_related(fam, o, objs, rnd)


def wording(q: tuple) -> str:
    """The question's words: lower case, ending in "?", starting with an official question type."""
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

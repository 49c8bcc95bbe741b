"""Scenes: a few objects (size, colour, material, shape) in the cells of an S x S grid.

Also the seeded random helpers every synth module draws with. They draw only through
`random.Random.random()`, so the stream does not depend on how a Python version implements
`choice` or `shuffle`: the same seed writes the same bytes.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

# fmt: off
ATTRIBUTES = {  # rendering order: "large red metal cube"
    "size": ("small", "large"),
    "color": ("gray", "red", "blue", "green", "brown", "purple", "yellow", "orange"),
    "material": ("rubber", "metal"),
    "shape": ("cube", "sphere", "cylinder", "cone"),
}
ATTR_ORDER = tuple(ATTRIBUTES)
SUBSETS = [s for r in range(5) for s in itertools.combinations(ATTR_ORDER, r)]  # attribute sets, smallest first
RELATIONS = ("left of", "right of", "above", "below")
REGIONS = ("top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right")
STUFF = ("floor", "wall", "table", "shadow")  # background boxes; empty grid cells are "floor"
IMAGE_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375), (448, 448), (640, 360))
N_OBJECTS_P = (0.03, 0.09, 0.14, 0.17, 0.17, 0.14, 0.11, 0.08, 0.07)  # P(0..8 objects)
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


# ---------------------------------------------------------------- seeded random helpers


def pick(rnd: random.Random, seq: Sequence):
    """A uniform element of `seq`."""
    return seq[int(rnd.random() * len(seq))]


def weighted(rnd: random.Random, items: dict):
    """A key of `items` drawn with probability proportional to its value."""
    u, acc = rnd.random() * sum(items.values()), 0.0
    for key, p in items.items():
        acc += p
        if u < acc:
            return key
    return key  # rounding left u at the very top: the last key


def shuffle(rnd: random.Random, items: list) -> list:
    """Shuffle `items` in place and return it."""
    for i in range(len(items) - 1, 0, -1):  # Fisher-Yates on rnd.random(), stable across versions
        j = int(rnd.random() * (i + 1))
        items[i], items[j] = items[j], items[i]
    return items


# ---------------------------------------------------------------- scenes and object queries


def make_scene(rnd: random.Random, grid: int) -> Scene:
    """A random image size and 0-8 objects in distinct cells (sorted by cell)."""
    n = min(weighted(rnd, dict(enumerate(N_OBJECTS_P))), grid * grid)
    cells = shuffle(rnd, list(range(grid * grid)))[:n]
    objects = tuple(
        Obj(c // grid, c % grid, *(pick(rnd, ATTRIBUTES[a]) for a in ATTR_ORDER)) for c in sorted(cells)
    )
    return Scene(*pick(rnd, IMAGE_SIZES), objects)


def matches(o: Obj, desc: tuple) -> bool:
    """Whether `o` has every (attribute, value) of `desc`."""
    return all(getattr(o, a) == v for a, v in desc)


def select(objects, desc: tuple) -> list[Obj]:
    return [o for o in objects if matches(o, desc)]


def related(objects, ref: Obj, rel: str) -> list[Obj]:
    """The objects in relation `rel` ("left of", ...) to `ref`, by grid row and column."""
    if rel == "left of":
        return [o for o in objects if o.col < ref.col]
    if rel == "right of":
        return [o for o in objects if o.col > ref.col]
    if rel == "above":
        return [o for o in objects if o.row < ref.row]
    return [o for o in objects if o.row > ref.row]


def desc_of(o: Obj, attrs) -> tuple:
    """The descriptor ((attribute, value), ...) of `o` on `attrs`, in ATTR_ORDER."""
    return tuple((a, getattr(o, a)) for a in ATTR_ORDER if a in attrs)


def region(o: Obj, grid: int) -> tuple[tuple[str, float], ...]:
    """Where an object is, in thirds of the image; cells on a border split the annotators.

    Returns (region name, probability) pairs, most likely first.
    """

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

"""Which questions each image gets: balanced answers and complementary pairs, as in VQA v2.

A good share of questions are asked, word for word, of a second image with a different answer,
so a model that ignores the image cannot tell the two apart; and the choice among candidate
questions evens out yes against no and the counts of each family's answers, so the
question-only prior scores far below a model that looks.
"""

from __future__ import annotations

import random
from collections import Counter

from vqa.synth.questions import ANSWER_TYPE, FAMILY_P, Truth, evaluate, sample, wording
from vqa.synth.scenes import Scene, shuffle, weighted

PAIR_P = 0.6  # chance that an unambiguous question is also asked of another image
PAIR_TRIES = 40  # images tried for the second half of a pair before giving up


def _propose(scene: Scene, grid: int, rnd: random.Random, balance: Counter) -> tuple[tuple, Truth] | None:
    """One question about `scene`, picked among a few candidates to flatten answer counts."""
    fam = weighted(rnd, FAMILY_P)
    target = "yes" if balance["yes"] <= balance["no"] else "no"
    best = None
    for _ in range(8 if ANSWER_TYPE[fam] == "yes/no" else 4):
        q = sample(fam, scene, rnd)
        t = None if q is None else evaluate(q, scene, grid)
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


def ask(scenes: list[Scene], per_image: int, grid: int, rnd: random.Random) -> list[dict[str, tuple]]:
    """Questions per image as {text: (params, truth)}; a share are complementary pairs."""
    asked: list[dict] = [{} for _ in scenes]
    balance: Counter = Counter()
    for i in shuffle(rnd, list(range(len(scenes)))):
        for _ in range(200):
            if len(asked[i]) >= per_image:
                break
            qt = _propose(scenes[i], grid, rnd, balance)
            if qt is None or wording(qt[0]) in asked[i]:
                continue
            text = wording(qt[0])
            asked[i][text] = qt
            _count(balance, *qt)
            if qt[1].answer is None or rnd.random() >= PAIR_P:
                continue
            for _ in range(PAIR_TRIES):  # the same words on another image, another answer
                j = int(rnd.random() * len(scenes))
                if len(asked[j]) >= per_image or text in asked[j]:
                    continue
                t = evaluate(qt[0], scenes[j], grid)
                if t is not None and t.answer is not None and t.answer != qt[1].answer:
                    asked[j][text] = (qt[0], t)
                    _count(balance, qt[0], t)
                    break
        if len(asked[i]) < per_image:
            raise RuntimeError(f"could not find {per_image} distinct questions for image {i}")
    return asked

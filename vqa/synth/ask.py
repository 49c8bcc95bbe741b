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


def _propose(
    scene: Scene, grid: int, rnd: random.Random, balance: Counter, family_p: dict, balanced: bool
) -> tuple[tuple, Truth] | None:
    """One question about `scene`, picked among a few candidates to flatten answer counts (or the
    first candidate, when not `balanced`)."""
    fam = weighted(rnd, family_p)
    target = "yes" if balance["yes"] <= balance["no"] else "no"
    best = None
    for _ in range(1 if not balanced else 8 if ANSWER_TYPE[fam] == "yes/no" else 4):
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


def ask(
    scenes: list[Scene],
    per_image: int,
    grid: int,
    rnd: random.Random,
    pair_p: float = PAIR_P,
    balanced: bool = True,
    family_p: dict = FAMILY_P,
) -> list[dict[str, tuple]]:
    """Questions per image as {text: (params, truth)}; a share `pair_p` are complementary pairs.

    `balanced` picks among candidates to flatten the answers (VQA v2); `family_p` weighs the
    question families. The defaults are VQA v2's (vqa.synth.formats has the other datasets')."""
    asked: list[dict] = [{} for _ in scenes]
    balance: Counter = Counter()
    for i in shuffle(rnd, list(range(len(scenes)))):
        for _ in range(200):
            if len(asked[i]) >= per_image:
                break
            qt = _propose(scenes[i], grid, rnd, balance, family_p, balanced)
            if qt is None or wording(qt[0]) in asked[i]:
                continue
            text = wording(qt[0])
            asked[i][text] = qt
            _count(balance, *qt)
            if qt[1].answer is None or rnd.random() >= pair_p:
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

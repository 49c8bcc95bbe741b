"""The VQA-CP v2 layout and re-split (`vqa synth --format vqacp2`).

VQA-CP v2 (Agrawal et al. 2018, "Don't Just Assume; Look and Answer") re-splits VQA v2's
train2014 + val2014 questions into train and test so that for every question type the answer
distribution differs between the two: questions are grouped by (question type, answer) and the
groups are shared between the splits. There is no val split; results are reported on test.

Here the same train2014 + val2014 questions that `--format vqa2` writes (same seed, same
answers) are grouped by (question_type, multiple_choice_answer). The groups of each question type
are taken in a seeded random order: the first goes to train, the next ones to test while the
type's test share is under TEST_SHARE, the rest to train. Then a share `mix` (MIX) of every group
crosses to the other split: a test group leaves its first round(mix * n) questions in train, and
the type's train groups send as many questions in all to test (their last ones, in proportion to
their sizes), so the type's test share stays. A yes/no type so has mostly one answer in train and
mostly the other in test, in either direction.

MIX = 0.2 comes from the real split's statistics, not from any model's results: the synthetic
question-only prior then scores 33.8 on test yes/no where a question-only model scores 35.1 on VQA-CP
v2 (Cadene et al. 2019), against 16.4 with whole groups (data/README.md; docs/debias.md, "The
synthetic VQA-CP shift"). VQA-CP's test answers are nearly all among its training answers; here some
answers belong to one question type (counts, regions), so a test group whose answer is the most common
answer of no train question leaves at least its first COVER_SHARE (rounded up) in train.

Files: `vqacp_v2_{train,test}_{questions,annotations}.json`, top-level lists (no wrapper); each
entry carries `coco_split` (train2014 or val2014), the COCO folder, and so the feature file
(`features_{coco_split}.h5`), its image lives in.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from pathlib import Path

from vqa.data.answers import score_from_count
from vqa.io import write_json_atomic
from vqa.synth.annotators import normalize, top
from vqa.synth.formats import Item
from vqa.synth.scenes import shuffle
from vqa.synth.vqa_files import VQA2, annotation, info, stats_row

SPLITS = (("train2014", "train2014", 1), ("val2014", "val2014", 1_000_000))
TEST_SHARE = 1 / 3  # VQA-CP v2: about 438k train and 220k test questions
COVER_SHARE = 0.1  # of a test group whose answer train lacks, left in train (see the module docstring)
MIX = 0.2  # share of each (question type, answer) group that crosses to the other split (the docstring)
QUESTION_KEYS = ("question_id", "image_id", "question", "coco_split")


def _test_groups(by_type: dict[str, list]) -> set:
    """The (question type, answer) groups that go to test: per type, in the seeded order, the first
    stays in train, the next ones go to test while the type's test share is under TEST_SHARE."""
    test_groups = set()
    for qt in sorted(by_type):
        total, in_test = sum(n for n, _ in by_type[qt]), 0
        for n, a in by_type[qt][1:]:
            if in_test < TEST_SHARE * total:
                test_groups.add((qt, a))
                in_test += n
    return test_groups


def _crossing(groups: dict[tuple, list], test_groups: set, mix: float) -> dict[tuple, int]:
    """How many questions of each group cross to the other split: a test group leaves its first
    round(mix * n) in train (at least its first COVER_SHARE, rounded up, when no train group has its
    answer); a train group sends its last questions to test, as many in all as its type's test
    groups left in train, shared in proportion to the groups' sizes."""
    train_answers = {a for (qt, a) in groups if (qt, a) not in test_groups}
    cross, left, kept = {}, Counter(), Counter()
    for g, rows in groups.items():
        n = len(rows)
        if g in test_groups:
            cover = math.ceil(COVER_SHARE * n) if g[1] not in train_answers else 0
            cross[g] = max(int(mix * n + 0.5), cover)
            left[g[0]] += int(mix * n + 0.5)
        else:
            kept[g[0]] += n
    for g, rows in groups.items():
        if g not in test_groups:
            cross[g] = int(left[g[0]] * len(rows) / kept[g[0]] + 0.5)
    return cross


def resplit(rows: list[dict], seed: int, mix: float = MIX) -> dict[str, list[dict]]:
    """{"train": rows, "test": rows}: (question type, answer) groups assigned to one split each, a
    `mix` share of every group crossing to the other (0: whole groups; the module docstring)."""
    rnd = random.Random(f"vqa-synth/{seed}/vqacp2")
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        groups[r["question_type"], r["multiple_choice_answer"]].append(r)
    by_type: dict[str, list] = defaultdict(list)
    for (qt, a), g in groups.items():
        by_type[qt].append((len(g), a))
    for qt in sorted(by_type):  # a seeded order of each type's groups (sorted first: reproducible)
        by_type[qt] = shuffle(rnd, sorted(by_type[qt], key=lambda x: x[1]))
    test_groups = _test_groups(by_type)
    cross = _crossing(groups, test_groups, mix)
    out, seen = {"train": [], "test": []}, Counter()
    for r in rows:  # question order kept: train2014 first, then val2014, ascending ids
        group = (r["question_type"], r["multiple_choice_answer"])
        seen[group] += 1
        if group in test_groups:
            to_test = seen[group] > cross[group]  # its first questions stay in train
        else:
            to_test = seen[group] > len(groups[group]) - cross[group]  # its last ones go to test
        out["test" if to_test else "train"].append(r)
    return out


def _answers_by_type(rows: list[dict]) -> dict[str, Counter]:
    out: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        out[r["question_type"]][r["multiple_choice_answer"]] += 1
    return out


def _top_share(c: Counter) -> list:
    """[the most common answer, its share]."""
    return [top(c), c[top(c)] / sum(c.values())]


def prior_shift(train: list[dict], test: list[dict]) -> dict:
    """How far the test answers of each question type are from the train ones.

    tv_distance: total variation distance between a type's train and test answer distributions,
    averaged over test questions (0: the same prior, 1: disjoint answers); type_prior: the VQA
    accuracy on test of answering the most common train answer of the question type;
    covered: test questions whose answer occurs among the train answers.
    """
    tr, te = _answers_by_type(train), _answers_by_type(test)
    tv, score = 0.0, 0.0
    for qt, c in te.items():
        p, n = tr.get(qt, Counter()), sum(c.values())
        m = max(sum(p.values()), 1)
        tv += n * 0.5 * sum(abs(p[a] / m - c[a] / n) for a in sorted(set(p) | set(c)))  # sorted: one order
    for r in test:
        guess = top(tr[r["question_type"]]) if r["question_type"] in tr else ""
        score += score_from_count(sum(normalize(x["answer"]) == guess for x in r["answers"]))
    seen = {r["multiple_choice_answer"] for r in train}
    n = max(len(test), 1)
    largest = sorted(te, key=lambda qt: (-sum(te[qt].values()), qt))[:3]
    examples = {
        qt: {"train": _top_share(tr[qt]) if qt in tr else None, "test": _top_share(te[qt])} for qt in largest
    }
    return {
        "tv_distance": tv / n,
        "type_prior": score / n,
        "covered": sum(r["multiple_choice_answer"] in seen for r in test) / n,
        "examples": examples,
    }


class VqacpFiles:
    splits = SPLITS
    style = VQA2  # the vqa2 questions and answers, re-split

    def __init__(self, mix: float = MIX):
        self.mix = mix  # resplit's share of each group that crosses to the other split

    def info(self, seed: int) -> dict:
        return info("2.0", seed, "VQA-CP v2")

    def write_split(self, folder: Path, split: str, items: list[Item], seed: int) -> list[dict]:
        return [dict(stats_row(annotation(i), i), coco_split=split) for i in items]

    def finish(self, folder: Path, annotated: dict, seed: int) -> tuple[dict, dict]:
        iid = prior_shift(annotated["train2014"], annotated["val2014"])
        cp = resplit(annotated["train2014"] + annotated["val2014"], seed, self.mix)
        for split, rows in cp.items():
            questions = [{k: r[k] for k in QUESTION_KEYS} for r in rows]
            write_json_atomic(folder / f"vqacp_v2_{split}_questions.json", questions)
            anns = [{k: v for k, v in r.items() if k not in ("question", "truth")} for r in rows]
            write_json_atomic(folder / f"vqacp_v2_{split}_annotations.json", anns)
        shift = {"vqacp2": prior_shift(cp["train"], cp["test"]), "vqa2": iid}
        return cp, {"vqacp_mix": self.mix, "prior_shift": shift}

    def stale_reason(self, stats: dict) -> str | None:
        """What stats.json says of a folder's re-split when it is not this one (None: it is)."""
        have = stats.get("vqacp_mix", 0.0)  # a folder without the key holds whole groups
        return (
            None if have == self.mix else f"the VQA-CP re-split with mix {have} (vqa synth writes {self.mix})"
        )


WRITERS = {"vqacp2": VqacpFiles()}

"""Statistics of the written splits: agreement, answer balance, accuracies, question-only prior.

They are computed from the annotations exactly as written (answers normalized the official
way), saved as stats.json and printed by `vqa synth`, so a reader can check at a glance that the
data looks like VQA v2: human accuracy well under 100%, yes/no about balanced, and a
question-only prior far below what a model that looks can reach.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from vqa.data.answers import ANSWER_TYPES, score_from_count
from vqa.data.keys import Interner, normalize_answer, remap, unanimous
from vqa.synth.annotators import top

# score_from_count(k, n) for n = 10 (a prediction against the ten answers) and n = 9 (one answer against
# the other nine), k = 0 .. n
_SCORE = {n: np.array([score_from_count(k, n) for k in range(n + 1)]) for n in (9, 10)}


def _types(scores: list[tuple[str, float]]) -> tuple[str, ...]:
    """VQA's answer types, then any other a format has (VizWiz: "unanswerable")."""
    return ANSWER_TYPES + tuple(sorted({t for t, _ in scores} - set(ANSWER_TYPES)))


def _by_type(scores: list[tuple[str, float]]) -> dict:
    """Mean score overall and per answer type (None for a type with no question)."""
    out = {"overall": sum(s for _, s in scores) / max(len(scores), 1)}
    for t in _types(scores):
        sel = [s for a, s in scores if a == t]
        out[t] = sum(sel) / len(sel) if sel else None
    return out


def _keys(table: Interner, anns: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(answers int32 [Q, n] as written, keys int32 [Q, n]: normalized the official way) of every
    annotation's answers, interned in `table`: equal codes, equal strings."""
    answers = [x["answer"] for a in anns for x in a["answers"]]
    codes = table.codes(answers, len(answers)).reshape(len(anns), -1 if anns else 10)
    return codes, remap(table, normalize_answer, codes)


def split_stats(anns: list[dict]) -> dict:
    """Statistics of one annotated split.

    `anns` are the official annotations plus each question's text ("question") and intended
    answer ("truth", None when the question is ambiguous).
    """
    table = Interner()
    answers, keys = _keys(table, anns)  # [Q, 10]
    types = [a["answer_type"] for a in anns]
    mcas = [a["multiple_choice_answer"] for a in anns]
    mca = table.codes(mcas, len(mcas))
    known = [i for i, a in enumerate(anns) if a["truth"] is not None]
    truth = remap(table, normalize_answer, table.codes((anns[i]["truth"] for i in known), len(known)))
    uniq = (1 + (np.diff(np.sort(keys, axis=1), axis=1) != 0).sum(1)).tolist()  # distinct normalized answers
    same = (keys[:, :, None] == keys[:, None, :]).sum(2)  # [Q, 10]: how many answers equal each one
    human = np.cumsum(_SCORE[9][same - 1], axis=1)[:, -1] / 10  # each answer against the other nine, in order
    pairs = defaultdict(set)
    for question, m in zip((a["question"] for a in anns), mcas):
        pairs[question].add(m)
    yn = [m for m, t in zip(mcas, types) if t == "yes/no"]
    num = Counter(m for m, t in zip(mcas, types) if t == "number")
    unanimous_raw = unanimous(answers).tolist()
    n = max(len(anns), 1)
    return {
        "mean_unique_answers": sum(uniq) / n,
        "unanimous": sum(unanimous_raw) / n,
        "answer_types": dict(Counter(types)),
        "mca_is_true_answer": int((truth == mca[known]).sum()) / max(len(known), 1),
        "paired_questions": sum(len(pairs[a["question"]]) > 1 for a in anns) / n,
        "yes_share": yn.count("yes") / max(len(yn), 1),
        "top_number_share": max(num.values(), default=0) / max(sum(num.values()), 1),
        "mca_accuracy": _by_type(list(zip(types, _SCORE[10][(keys == mca[:, None]).sum(1)].tolist()))),
        "human_accuracy": _by_type(list(zip(types, human.tolist()))),
        "unanimous_by_type": _by_type(list(zip(types, unanimous_raw))),
        "unique_answers_by_type": _by_type(list(zip(types, uniq))),
    }


def prior_accuracy(train: list[dict], val: list[dict]) -> dict:
    """Answer the most common training answer of the same question string, else question type."""
    by_q, by_type = defaultdict(Counter), defaultdict(Counter)
    for a in train:
        by_q[a["question"]][a["multiple_choice_answer"]] += 1
        by_type[a["question_type"]][a["multiple_choice_answer"]] += 1
    overall = Counter(a["multiple_choice_answer"] for a in train)

    guesses = [top(by_q.get(a["question"]) or by_type.get(a["question_type"]) or overall) for a in val]
    table = Interner()
    _, keys = _keys(table, val)
    matches = (keys == table.codes(guesses, len(guesses))[:, None]).sum(1)
    return _by_type(list(zip((a["answer_type"] for a in val), _SCORE[10][matches].tolist())))


SHORT = {"overall": "all", "yes/no": "y/n", "number": "num", "other": "other", "unanswerable": "unans"}

# Published agreement of the real datasets, shown beside the synthetic one (data/README.md, "Ten
# simulated annotators", says where each number comes from; None: not published). Shares in [0, 1].
PUBLISHED = {
    # human accuracy: the VQA Challenge 2021 leaderboard's "Human Performance" row, test-dev
    "VQA v2": {"unanimous_by_type": {}, "unique_answers_by_type": {},
               "human_accuracy": {"overall": 0.8073, "yes/no": 0.9547, "number": 0.8120, "other": 0.6782}},
    # human accuracy: Antol et al. 2015, Table 1 (real images, question + image, test-standard);
    # unique answers: Antol et al. 2015, section 4; unanimous: the train2014 annotations, raw strings
    "VQA v1": {"unanimous_by_type": {"overall": 0.366}, "unique_answers_by_type": {"overall": 2.70},
               "human_accuracy": {"overall": 0.8330, "yes/no": 0.9577, "number": 0.8339, "other": 0.7267}},
}  # fmt: skip


def format_stats(stats: dict) -> str:
    """The statistics as a compact table (shares and accuracies in percent), then what the format
    adds (VizWiz: the unanswerable share; VQA-CP: the prior shift; OK-VQA: raw answers)."""
    annotated = {k: s for k, s in stats["splits"].items() if "mca_accuracy" in s}
    keys = ["overall"]
    for s in annotated.values():
        keys += [k for k in s["human_accuracy"] if k not in keys]

    def pct(d: dict) -> str:
        return "".join("     -" if d.get(k) is None else f"{100 * d[k]:6.1f}" for k in keys)

    cols = "".join(f"{SHORT.get(k, k[:5]):>6}" for k in keys)
    lines = [
        f"{'split':<13}{'images':>7}{'questions':>10}{'uniq/q':>7}{'unanim':>7}{'paired':>7}{'MCA=true':>9}"
        f"  | MCA acc{cols}  | human acc{cols}"
    ]
    for split, s in stats["splits"].items():
        row = f"{split:<13}{s['images']:>7}{s['questions']:>10}"
        if split in annotated:
            row += (
                f"{s['mean_unique_answers']:>7.2f}{100 * s['unanimous']:>7.1f}{100 * s['paired_questions']:>7.1f}"
                f"{100 * s['mca_is_true_answer']:>9.1f}  |        {pct(s['mca_accuracy'])}  |          "
                f"{pct(s['human_accuracy'])}"
            )
        lines.append(row)
    first, second = list(annotated)[:2]
    t = annotated[first]
    first, second = first.removesuffix("2014"), second.removesuffix("2014")  # "train", "val", "test"
    lines.append(f"{'question-only prior, ' + second:<60}  |        {pct(stats['prior_accuracy_val'])}  |")
    balance = (
        f"; {first} yes {100 * t['yes_share']:.1f}% of yes/no, top count {100 * t['top_number_share']:.1f}% of number"
        if t["answer_types"].get("yes/no")
        else ""
    )
    lines.append(
        f"(percent; prior: most common {first} answer of the same question, else question type{balance})"
    )
    return "\n".join(lines + _agreement_lines(stats, annotated) + _format_lines(stats))


def _agreement_lines(stats: dict, annotated: dict) -> list[str]:
    """Agreement per answer type: unanimous share, unique answers per question, human accuracy; for
    the VQA formats, beside what was published for VQA v2 and v1 ("-": not published)."""
    keys = ["overall", *[k for k in next(iter(annotated.values()))["human_accuracy"] if k != "overall"]]
    blocks = (
        ("unanimous_by_type", "unanimous %", 100, "6.1f"),
        ("unique_answers_by_type", "unique answers", 1, "6.2f"),
        ("human_accuracy", "human acc %", 100, "6.1f"),
    )
    cols = "".join(f"{SHORT.get(k, k[:5]):>6}" for k in keys)
    width = 6 * len(keys)
    titles = "".join(f"  | {title:<{width}}" for _, title, _, _ in blocks)
    lines = [(f"{'agreement':<22}" + titles).rstrip(), f"{'':<22}" + f"  | {cols}" * len(blocks)]

    def row(name: str, s: dict) -> str:
        cells = [
            "".join("     -" if s[key].get(k) is None else f"{scale * s[key][k]:{fmt}}" for k in keys)
            for key, _, scale, fmt in blocks
        ]
        return f"{name:<22}" + "".join(f"  | {c}" for c in cells)

    lines += [row(split, s) for split, s in annotated.items()]
    if stats.get("format", "vqa2") in ("vqa2", "vqa1", "vqacp2"):
        lines += [row(f"{name} (published)", s) for name, s in PUBLISHED.items()]
    return lines


def _format_lines(stats: dict) -> list[str]:
    """The lines of a format's own statistics."""
    lines = []
    for split, v in stats.get("vizwiz", {}).items():
        types = ", ".join(
            f"{k} {100 * n / stats['splits'][split]['questions']:.1f}%" for k, n in v["answer_types"].items()
        )
        lines.append(
            f"vizwiz {split}: unanswerable {100 * v['unanswerable']:.1f}% of questions (answerable 0), "
            f"'unanswerable' {100 * v['unanswerable_answers']:.1f}% of all answers; answer types: {types}"
        )
    if "raw_answer_differs" in stats:
        lines.append(
            f"okvqa: 5 annotators, each answer listed twice; raw_answer differs from answer in "
            f"{100 * stats['raw_answer_differs']:.1f}% of answers"
        )
    for name, p in stats.get("prior_shift", {}).items():
        split = "train/test" if name == "vqacp2" else "train2014/val2014"
        lines.append(
            f"prior shift, {name} {split}: answer distributions per question type differ by "
            f"{100 * p['tv_distance']:.1f}% (total variation, mean over test questions); the train answer of the "
            f"question type scores {100 * p['type_prior']:.1f}% on test; test answers seen in train {100 * p['covered']:.1f}%"
        )
        if name == "vqacp2":
            for qt, e in p["examples"].items():
                tr = "-" if e["train"] is None else f"{e['train'][0]} {100 * e['train'][1]:.0f}%"
                lines.append(f"  '{qt}': train top {tr}, test top {e['test'][0]} {100 * e['test'][1]:.0f}%")
    return lines

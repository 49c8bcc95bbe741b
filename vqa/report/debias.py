"""The debiasing table of `vqa compare` (debias.md): the table of the VQA-CP papers (Clark et al. 2019,
Cadene et al. 2019, Liang et al. 2021, Han et al. 2021) for the runs of a comparison that train with a
debiasing method (train.debias, vqa/debias).

Per (model, arm): the test accuracy (All, Y/N, Num, Other) at the epoch the validation split chose,
read from the run's test.json (data.test_split scored once at that epoch, vqa/training/selection.py),
and the in-distribution accuracy: the validation split's at that epoch (with data.val_split heldout,
a part of train: the training distribution), mean ± sample std over seeds. Each method's runs are
paired by seed with the baseline, the runs of the same model and train.loss without a method (arm
`bce` for the ARMS variants), and the per-seed differences get a 95% t interval: on test the
method's gain, in distribution its cost. A run that chose its epoch on a test split (test-set
selection) is marked so; a run without a test split shows n/a for the test columns.
"""

from __future__ import annotations

from vqa.report.runs import COLUMNS, Run, num, ordered
from vqa.report.stats import CONFIDENCE, describe, paired_difference
from vqa.report.tables import markdown_table, mean_ci, mean_std

TEST_KEYS = {c: key.replace("val/", "test/", 1) for c, key in COLUMNS.items()}
STATS = (*COLUMNS, "in_distribution")
HEADERS = {"all": "Test All", "yes_no": "Y/N", "number": "Num", "other": "Other"}


def debias_of(r: Run) -> str:
    return r.config.get("train.debias", "none")


def run_numbers(r: Run) -> dict:
    """One run's test accuracies at the selected epoch, its in-distribution accuracy at that epoch
    and how the epoch was chosen."""
    best = r.best_row
    val_split = str(r.config.get("data.val_split"))
    out = {
        "name": r.name,
        "model": r.model,
        "arm": r.arm,
        "seed": r.seed,
        "debias": debias_of(r),
        "baseline": r.loss,
        "epoch": int(best["epoch"]),
        "in_distribution": num(best.get("val/accuracy")),
    }
    if r.test is not None:
        out.update({c: num(r.test.get(k)) for c, k in TEST_KEYS.items()})
        out["selection"] = f"on {r.test.get('selected_on')}"
        out["epoch"] = int(r.test["epoch"])
    elif val_split.startswith("test"):
        out.update({c: num(best.get(k)) for c, k in COLUMNS.items()})
        out["selection"], out["in_distribution"] = "test-set selection", float("nan")
    else:
        out.update({c: float("nan") for c in COLUMNS})
        out["selection"] = f"on {val_split}, no test split"
    return out


def debias_summary(runs: list[Run]) -> dict | None:
    """groups (per model and arm: mean ± std of STATS), differences (each method's arm minus its
    baseline, paired by seed, with a t interval) and verdicts; None when no run uses a method."""
    if all(debias_of(r) == "none" for r in runs):
        return None
    rows = [run_numbers(r) for r in runs]
    groups, differences = [], []
    for model in ordered(r["model"] for r in rows):
        arms = ordered(r["arm"] for r in rows if r["model"] == model)
        plain = {r["arm"] for r in rows if r["debias"] == "none"}
        for arm in sorted(arms, key=lambda a: a not in plain):  # the baselines first
            rs = [r for r in rows if (r["model"], r["arm"]) == (model, arm)]
            group = {"model": model, "arm": arm, "n": len(rs), "debias": rs[0]["debias"]}
            group["selection"] = ", ".join(dict.fromkeys(r["selection"] for r in rs))
            group.update({k: describe(r[k] for r in rs) for k in STATS})
            groups.append(group)
            if rs[0]["debias"] == "none":
                continue
            base = {
                r["seed"]: r
                for r in rows
                if (r["model"], r["arm"], r["debias"]) == (model, rs[0]["baseline"], "none")
            }
            paired = [r for r in rs if r["seed"] in base]
            diff = {"model": model, "arm": arm, "minus": rs[0]["baseline"], "n": len(paired)}
            diff.update({k: paired_difference(r[k] - base[r["seed"]][k] for r in paired) for k in STATS})
            differences.append(diff)
    return {
        "runs": rows,
        "groups": groups,
        "differences": differences,
        "confidence": CONFIDENCE,
        "verdicts": [verdict(d) for d in differences],
    }


def _side(d: dict) -> str:
    """Where the paired interval puts the method: above, below or not told apart from its baseline."""
    if d["n"] < 2 or d["ci_low"] is None:
        return "undecided (no interval)"
    if d["ci_low"] > 0:
        return "above the baseline"
    return "below the baseline" if d["ci_high"] < 0 else "undecided (the interval holds 0)"


def verdict(diff: dict) -> str:
    """One line: the method against its baseline on test All and in distribution."""
    test, cost = diff["all"], diff["in_distribution"]
    return (
        f"{diff['model'].upper()} {diff['arm']} vs {diff['minus']}: test All {mean_ci(test)} -> {_side(test)}; "
        f"in distribution {mean_ci(cost)} -> {_side(cost)} (n={diff['n']} seed pairs)"
    )


def debias_markdown(summary: dict) -> str:
    """debias.md: the table, then the verdict lines."""
    header = ["Model", "Method", "n", *HEADERS.values(), "In-distribution", "Selection"]
    rows = []
    for g in summary["groups"]:
        rows.append([g["model"].upper(), g["arm"], g["n"], *(mean_std(g[k]) for k in STATS), g["selection"]])
        for d in (d for d in summary["differences"] if (d["model"], d["arm"]) == (g["model"], g["arm"])):
            name = f"{d['arm']} - {d['minus']}"
            rows.append([g["model"].upper(), name, d["n"], *(mean_ci(d[k]) for k in STATS), ""])
    note = (
        "\nTest accuracy (%, official VQA metric) at the epoch chosen on the validation split, and the "
        "validation split's accuracy at that epoch (in-distribution: with data.val_split heldout a part of "
        "train, so the training split's answer priors), mean ± sample std over n seeds. Rows 'x - base': "
        f"mean of the per-seed differences from the same model without a method [{summary['confidence']:.0%} "
        "t interval, n - 1 degrees of freedom]: the gain on test, the cost in distribution.\n"
        "\nVerdicts (95% t interval of the paired difference):\n"
    )
    verdicts = "".join(f"- {v}\n" for v in summary["verdicts"])
    return markdown_table(header, rows) + note + verdicts

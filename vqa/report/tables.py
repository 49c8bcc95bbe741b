"""The text of `vqa compare`: the paper's Table 1 as Markdown and CSV, and report.md (every section).

Everything here renders the summary dict of vqa.report.compare.compare (plain data, NaN or None where
a number is undefined); nothing is computed that the summary does not hold.
"""

from __future__ import annotations

import csv
import io
import math

from vqa.report.claims import CLAIMS_NOTE, claim_lines, family_line
from vqa.report.runs import COLUMNS, REFERENCE
from vqa.report.stats import CONFIDENCE

HEADERS = {"all": "All", "yes_no": "Y/N", "number": "Num", "other": "Other"}  # the paper's column names
RUN_HEADER = (
    "run|model|loss|seed|epochs|best epoch|All|epoch to threshold|r(val loss, val acc)|best-loss epoch|"
    "val-loss rise|hard-CE rise|ECE|entropy"
).split("|")
NO_BUCKETS = "no agreement buckets logged in these runs (no val/accuracy_agree_* keys in metrics.jsonl)"
REGIME = {"all": ("best All", 2), "best_loss_epoch": ("lowest-val-loss epoch", 1),  # INTERVAL_STATS
          "best_epoch": ("best-accuracy epoch", 1), "gap": ("gap (epochs)", 1),
          "loss_rise": ("val-loss rise", 4), "hard_ce_rise": ("val hard-CE rise", 4)}  # fmt: skip


def number(x, digits: int = 2, sign: bool = False) -> str:
    """`x` with `digits` decimals (a sign with `sign`); 'n/a' for None, NaN or infinity."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def mean_std(d: dict, digits: int = 2, of: int | None = None) -> str:
    """'mean ± std'; 'mean' for one value; 'n/a' for none; '(n=k)' when only k of `of` runs have a value."""
    if d["n"] == 0:
        return "n/a"
    text = number(d["mean"], digits) + (f" ± {number(d['std'], digits)}" if d["std"] is not None else "")
    return text + (f" (n={d['n']})" if of is not None and d["n"] != of else "")


def mean_ci(d: dict, digits: int = 2, sign: bool = True) -> str:
    """'+mean [+low, +high]'; the interval is n/a with one pair."""
    if d["n"] == 0:
        return "n/a"
    low, high = (number(d[k], digits, sign) for k in ("ci_low", "ci_high"))
    ci = "CI n/a" if d["ci_low"] is None else f"{low}, {high}"
    return f"{number(d['mean'], digits, sign)} [{ci}]"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table of `rows` under `header`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]) + "\n"


def _key(g: dict) -> list:
    return [g["model"].upper(), g["loss"], g["n"]]


def _differences_of(summary: dict, group: dict) -> list[dict]:
    return [d for d in summary["differences"] if (d["model"], d["loss"]) == (group["model"], group["loss"])]


def _table1_rows(summary: dict, values) -> list[list]:
    """Table 1's rows: per group the mean ± std of each of `values(group)`, then its differences' mean
    [t interval] of each of `values(difference)`."""
    rows = []
    for g in summary["groups"]:
        rows.append([*_key(g), *(mean_std(x, of=g["n"]) for x in values(g))])
        for d in _differences_of(summary, g):
            rows.append([g["model"].upper(), f"{d['loss']} - {d['minus']}", d["n"], *map(mean_ci, values(d))])
    return rows


def table_markdown(summary: dict) -> str:
    """The paper's Table 1: best validation accuracy per (model, loss), each loss then minus hard_ce."""
    rows = _table1_rows(summary, lambda x: [x[c] for c in COLUMNS])
    note = (
        "\nBest validation accuracy (%, official VQA metric; All, Y/N, Num, Other from the epoch of the "
        "best All), mean ± sample std over n seeds. Rows 'x - hard_ce': mean of the per-seed differences "
        f"[{CONFIDENCE:.0%} t interval, n - 1 degrees of freedom].\n"
    )
    return markdown_table(["Model", "Loss", "n", *HEADERS.values()], rows) + note


def buckets_markdown(summary: dict) -> str:
    """Table 1 for the annotator-agreement buckets: each arm's accuracy per bucket, then minus hard_ce."""
    names = summary["buckets"]
    rows = _table1_rows(summary, lambda x: [x["buckets"][b] for b in names])
    note = (
        "\nVal accuracy (%) of the questions in each annotator-agreement bucket (val/accuracy_agree_<name>) "
        "at the epoch of the best All, mean ± sample std over n seeds; rows 'x - hard_ce': mean of the "
        f"per-seed differences [{CONFIDENCE:.0%} t interval].\n"
    )
    return markdown_table(["Model", "Loss", "n", *names], rows) + note


def table_csv(summary: dict) -> str:
    """Table 1 unrounded: one row per (model, loss) and per difference; empty cells where undefined."""
    stats = ("mean", "std", "ci_low", "ci_high")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "loss", "row", "n", "seeds", *(f"{c}_{s}" for c in COLUMNS for s in stats)])

    def cells(d: dict) -> list:
        return ["" if d.get(s) is None else round(d[s], 6) for s in stats]

    def write(x: dict, row: str) -> None:
        seeds = " ".join(map(str, x["seeds"]))
        w.writerow([x["model"], x["loss"], row, x["n"], seeds, *(v for c in COLUMNS for v in cells(x[c]))])

    for g in summary["groups"]:
        write(g, "mean")
        for d in _differences_of(summary, g):
            write(d, f"minus_{d['minus']}")
    return buf.getvalue()


def _claims_section(summary: dict) -> str:
    claims = "".join(f"- {x}\n" for x in claim_lines(summary["claims"]))
    return f"## Claims of the paper\n\n{CLAIMS_NOTE}\n{family_line(summary['claims_family'])}\n\n{claims}"


def _convergence_section(summary: dict, budgets: list[str]) -> str:
    thresholds = "; ".join(
        f"{m.upper()} {number(r['threshold'])} (= {summary['fraction']:.0%} of {number(r['mean'])}, n={r['n']})"
        if r["n"]
        else f"{m.upper()} n/a (no {REFERENCE} runs)"
        for m, r in summary["references"].items()
    )
    rows = []
    for g in summary["groups"]:
        reached = f"{g['reached']}/{g['n']}" if summary["references"][g["model"]]["n"] else "n/a"
        at = [mean_std(g["accuracy_at"][b], of=g["n"]) for b in budgets]
        rows.append([*_key(g), reached, mean_std(g["epoch_to_threshold"], 1), *at])
    header = ["Model", "Loss", "n", "reached", "epoch to threshold", *(f"acc@{b}" for b in budgets)]
    return (
        "## Convergence\n\nFirst epoch whose val accuracy reaches the model's threshold, mean ± std over "
        f"the runs that reach it ('reached' counts them). Thresholds: {thresholds}. Then val accuracy at "
        "epoch budgets, mean ± std.\n\n" + markdown_table(header, rows)
    )


def _discrepancy_section(summary: dict) -> str:
    disc, regime = [], []
    for g in summary["groups"]:
        epochs = [mean_std(g[k], 1, g["n"]) for k in ("best_loss_epoch", "best_epoch")]
        disc.append([*_key(g), mean_std(g["pearson_loss_accuracy"], 3, g["n"]), *epochs])
        regime.append(
            [*_key(g), *(mean_ci(g["intervals"][k], d, sign=False) for k, (_, d) in REGIME.items())]
        )
    header = ["Model", "Loss", "n", "r(val loss, val acc)", "best-loss epoch", "best-accuracy epoch"]
    return (
        "## Loss-accuracy discrepancy\n\nPearson r between val loss (the run's own loss) and val accuracy "
        "across epochs (near -1: they move together; towards 0 or positive: the loss stops tracking the "
        "accuracy), and the epochs of the lowest val loss and of the best val accuracy.\n\n"
        + markdown_table(header, disc)
        + "\nThe overfitting regime: mean [95% t interval over seeds] of the best All, the epochs of the "
        "lowest val loss and of the best val accuracy, their gap (best-accuracy epoch - lowest-loss epoch), "
        "the rise of the val loss after its minimum (last epoch - minimum) and the same for the val "
        "cross-entropy on the most common answer (val/hard_ce: one scale for every loss).\n\n"
        + markdown_table(["Model", "Loss", "n", *(name for name, _ in REGIME.values())], regime)
    )


def _calibration_section(summary: dict) -> str:
    rows = [
        [*_key(g), mean_std(g["ece"], 4, g["n"]), mean_std(g["entropy"], 3, g["n"])]
        for g in summary["groups"]
    ]
    return (
        "## Calibration at the best epoch\n\nExpected calibration error (15 bins, the official "
        "per-question accuracy as correctness) and mean entropy of the predicted answer distribution "
        "(nats).\n\n" + markdown_table(["Model", "Loss", "n", "ECE", "entropy"], rows)
    )


def _runs_section(summary: dict) -> str:
    rows = []
    for s in summary["runs"]:
        epochs = f"{s['epochs_done']}/{s['epochs_planned']}" + ("" if s["complete"] else " (incomplete)")
        never = "never" if summary["references"][s["model"]]["n"] else "n/a"
        row = [s["name"], s["model"], s["loss"], s["seed"], epochs, s["best_epoch"], number(s["all"])]
        row += [s["epoch_to_threshold"] or never, number(s["pearson_loss_accuracy"], 3), s["best_loss_epoch"]]
        row += [
            number(s["loss_rise"], 4),
            number(s["hard_ce_rise"], 4),
            number(s["ece"], 4),
            number(s["entropy"], 3),
        ]
        rows.append(row)
    return "## Runs\n\n" + markdown_table(RUN_HEADER, rows)


def report_markdown(summary: dict, command: str) -> str:
    """Every section: Table 1, claims, agreement buckets, convergence, loss-accuracy discrepancy,
    calibration, runs, figures; then the incomplete runs and the warnings, where there are any."""
    buckets = buckets_markdown(summary) if summary["buckets"] else NO_BUCKETS + ".\n"
    parts = [
        f"# Loss comparison: {len(summary['runs'])} runs\n\nMade by `{command}`.\n",
        "## Best validation accuracy (Table 1)\n\n" + table_markdown(summary),
        _claims_section(summary),
        "## Agreement buckets\n\n" + buckets,
        _convergence_section(summary, [*map(str, summary["budgets"]), "last"]),
        _discrepancy_section(summary),
        _calibration_section(summary),
        _runs_section(summary),
        "## Figures\n\n" + "".join(f"![{m}](figure_{m}.png)\n" for m in summary["references"]),
    ]
    if summary.get("incomplete"):
        lines = [
            f"- {i['path']}: {i['epochs_done']} of {i['epochs_planned']} epochs, "
            + ("included" if i["included"] else "left out")
            + "\n"
            for i in summary["incomplete"]
        ]
        parts.append("## Incomplete runs\n\n" + "".join(lines))
    if summary.get("warnings"):
        parts.append("## Warnings\n\n" + "".join(f"- {w}\n" for w in summary["warnings"]))
    return "\n".join(parts)

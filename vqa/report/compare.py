"""`vqa compare`: run folders -> the paper's Table 1 and Figures 1-2, with statistics over seeds.

Ilievski & Feng (2017) report one run per (model, loss). Here runs are grouped by (model, arm) (an
arm is a loss or a named variant of one, runs.ARMS) and paired across arms by (model, seed): same
data, same seed, config otherwise equal. From each run's metrics.jsonl (one row per epoch) come (a)
the best validation accuracy (All, Y/N, Num, Other and each agreement bucket from the row of the best
val/accuracy, as the paper takes them), each arm minus hard_ce per seed with a 95% t interval; (b)
convergence: the first epoch reaching FRACTION of the model's hard_ce best, and the accuracy at epoch
budgets; (c) the loss-accuracy discrepancy: Pearson r of val/loss and val/accuracy, the epochs of the
lowest loss and of the best accuracy, their gap and the rise of the loss after its minimum; (d) ECE
and entropy at the best epoch; (e) the verdicts on the paper's claims (claims.py); (f) one figure per
model (figures.py); (g) for runs with a debiasing method, the VQA-CP papers' table (debias.py).

Outputs in --out: table.md, table.csv, report.md (every section; tables.py), summary.json (every
number), figure_<model>.png, and debias.md when a run uses a debiasing method.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vqa.errors import UserError
from vqa.io import output_folder, write_json_atomic, write_text_atomic
from vqa.report.claims import claim_lines, family_line, verdicts
from vqa.report.debias import debias_markdown, debias_summary
from vqa.report.figures import write_figures
from vqa.report.runs import COLUMNS, REFERENCE, Run, load_runs, num, ordered
from vqa.report.stats import CONFIDENCE, describe, mean_interval, paired_difference, pearson
from vqa.report.tables import NO_BUCKETS, buckets_markdown, report_markdown, table_csv, table_markdown

BUDGETS = (1, 2, 5, 10, 20, 50, 100)  # epochs at which accuracy is reported (the cli's --budgets default)
FRACTION = 0.95  # convergence: first epoch reaching this fraction of the hard_ce best accuracy
BUCKET_PREFIX = "val/accuracy_agree_"  # agreement buckets: val/accuracy_agree_<name>, whichever a run logged
# per-run numbers aggregated by (model, arm) as mean ± std, and those also as mean [t interval]
GROUP_STATS = (
    *COLUMNS,
    "best_epoch",
    "epoch_to_threshold",
    "pearson_loss_accuracy",
    "best_loss_epoch",
    "ece",
    "entropy",
    "gap",
    "loss_rise",
    "hard_ce_rise",
)
INTERVAL_STATS = ("all", "best_loss_epoch", "best_epoch", "gap", "loss_rise", "hard_ce_rise")


def rise(values: np.ndarray) -> float:
    """Value at the last finite epoch minus the minimum (>= 0; 0 when the last is the lowest); NaN if none."""
    ok = values[np.isfinite(values)]
    return float(ok[-1] - ok.min()) if ok.size else float("nan")


def buckets_of(runs: list[Run]) -> list[str]:
    """The agreement bucket names any run logged, in order of first appearance."""
    keys = (k for r in runs for row in r.rows for k in row if k.startswith(BUCKET_PREFIX))
    return [k[len(BUCKET_PREFIX) :] for k in dict.fromkeys(keys)]


def run_summary(r: Run, budgets: list[int], threshold: float | None, buckets: list[str]) -> dict:
    """One run's numbers: best epoch and its accuracies and calibration, convergence, discrepancy."""
    best = r.best_row
    acc, loss, epochs = r.series("val/accuracy"), r.series("val/loss"), r.epochs  # [epochs]
    # the first of equal minima
    best_loss_epoch = int(epochs[np.nanargmin(loss)]) if np.isfinite(loss).any() else None
    reached = np.nonzero(acc >= threshold)[0] if threshold is not None else []
    accuracy_at = {str(e): float(acc[epochs == e][0]) for e in budgets if (epochs == e).any()}
    accuracy_at["last"] = float(acc[-1])
    return {
        "name": r.name,
        "path": str(r.path),
        "model": r.model,
        "loss": r.arm,
        "seed": r.seed,
        "complete": r.complete,
        "epochs_done": int(epochs[-1]),
        "epochs_planned": r.config["train.epochs"],
        "best_epoch": int(best["epoch"]),
        **{c: num(best.get(key)) for c, key in COLUMNS.items()},
        "val_loss": num(best.get("val/loss")),
        "ece": num(best.get("val/ece")),
        "entropy": num(best.get("val/entropy")),
        "epoch_to_threshold": int(epochs[reached[0]]) if len(reached) else None,
        "accuracy_at": accuracy_at,
        "pearson_loss_accuracy": pearson(loss, acc),
        "best_loss_epoch": best_loss_epoch,
        "gap": int(best["epoch"]) - best_loss_epoch if best_loss_epoch is not None else None,
        "loss_rise": rise(loss),
        "hard_ce_rise": rise(r.series("val/hard_ce")),
        "buckets": {b: num(best.get(BUCKET_PREFIX + b)) for b in buckets},
    }


def _group(model: str, loss: str, rs: list[dict], budgets: list[int], buckets: list[str]) -> dict:
    """The per-(model, arm) statistics of the run summaries `rs`."""
    group = {"model": model, "loss": loss, "n": len(rs), "seeds": [s["seed"] for s in rs]}
    group["runs"] = [s["name"] for s in rs]
    group.update({k: describe(s[k] for s in rs) for k in GROUP_STATS})
    group["reached"] = sum(s["epoch_to_threshold"] is not None for s in rs)
    at = [*map(str, budgets), "last"]
    group["accuracy_at"] = {b: describe(s["accuracy_at"].get(b) for s in rs) for b in at}
    group["intervals"] = {k: mean_interval(s[k] for s in rs) for k in INTERVAL_STATS}
    group["buckets"] = {b: describe(s["buckets"][b] for s in rs) for b in buckets}
    return group


def _difference(model: str, loss: str, rs: list[dict], hard: dict, buckets: list[str]) -> dict:
    """The paired per-seed differences of `rs` minus the hard_ce run summaries `hard` (by seed)."""
    paired = [s for s in rs if s["seed"] in hard]
    diff = {"model": model, "loss": loss, "minus": REFERENCE, "n": len(paired)}
    diff["seeds"] = [s["seed"] for s in paired]
    diff["unpaired_seeds"] = sorted({s["seed"] for s in rs} ^ set(hard))
    diff["confidence"] = CONFIDENCE
    for c in COLUMNS:
        diff[c] = paired_difference(s[c] - hard[s["seed"]][c] for s in paired)
    diff["buckets"] = {
        b: paired_difference(s["buckets"][b] - hard[s["seed"]]["buckets"][b] for s in paired) for b in buckets
    }
    return diff


def compare(runs: list[Run], budgets: Iterable[int] = BUDGETS) -> dict:
    """Every number of the report as plain data (NaN or None where undefined).

    references: per model, the hard_ce runs' best accuracy (mean over seeds) and the convergence
    threshold; runs: `run_summary` of each; groups: per (model, arm) mean ± std of GROUP_STATS, of
    the accuracy at each budget and of each bucket, and the mean [t interval] of INTERVAL_STATS;
    differences: per (model, arm != hard_ce) the paired per-seed differences minus hard_ce of All,
    Y/N, Num, Other and of each bucket with their t interval; buckets: the agreement bucket names
    logged; claims and claims_family: claims.verdicts. ("loss" fields hold the arm.)
    """
    last = max(int(r.epochs[-1]) for r in runs)
    budgets = [b for b in budgets if b <= last]
    models, losses = ordered(r.model for r in runs), ordered(r.arm for r in runs)
    references = {}
    for m in models:
        ref = describe(r.best_row["val/accuracy"] for r in runs if r.model == m and r.arm == REFERENCE)
        references[m] = ref | {"threshold": FRACTION * ref["mean"] if ref["n"] else None}
    buckets = buckets_of(runs)
    per_run = [run_summary(r, budgets, references[r.model]["threshold"], buckets) for r in runs]
    groups, differences = [], []
    for m in models:
        hard = {s["seed"]: s for s in per_run if s["model"] == m and s["loss"] == REFERENCE}
        for loss in losses:
            rs = [s for s in per_run if s["model"] == m and s["loss"] == loss]
            if rs:
                groups.append(_group(m, loss, rs, budgets, buckets))
            if rs and hard and loss != REFERENCE:
                differences.append(_difference(m, loss, rs, hard, buckets))
    summary = {"fraction": FRACTION, "budgets": budgets, "references": references, "runs": per_run}
    summary |= {"groups": groups, "differences": differences, "buckets": buckets}
    summary["claims"], summary["claims_family"] = verdicts(summary)
    return summary


def _json_safe(x):
    """NaN / Infinity -> None, so summary.json is strict JSON (null: undefined)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def _write(summary: dict, runs: list[Run], out: Path) -> tuple[dict[str, str], list[str]]:
    """Every output file into `out` (each atomically); (the texts by file name, the figure names)."""
    texts = {
        "table.md": table_markdown(summary),
        "table.csv": table_csv(summary),
        "report.md": report_markdown(summary, summary["command"]),
        **({"debias.md": debias_markdown(summary["debias"])} if summary["debias"] else {}),
    }
    for name, text in texts.items():
        write_text_atomic(out / name, text)
    write_json_atomic(out / "summary.json", _json_safe(summary), indent=1)
    return texts, write_figures(runs, list(summary["references"]), out)


def _print(summary: dict, texts: dict[str, str], allow_incomplete: bool) -> None:
    """The terminal's share: Table 1, the buckets, the claims, the debiasing table, notes, warnings."""
    print(texts["table.md"], end="")
    print("\n" + (buckets_markdown(summary) if summary["buckets"] else NO_BUCKETS + "\n"), end="")
    print("\nClaims of the paper (t tests over seeds, Holm-corrected; report.md defines each):")
    print(f"  {family_line(summary['claims_family'])}")
    print("".join(f"  {line}\n" for line in claim_lines(summary["claims"])), end="")
    if summary["debias"]:
        print("\nDebiasing methods (debias.md):\n" + texts["debias.md"], end="")
    for i in summary["incomplete"]:
        what = "included" if allow_incomplete else "left out (--allow-incomplete includes it)"
        print(f"note: {i['path']} is incomplete ({i['epochs_done']} of {i['epochs_planned']} epochs); {what}")
    for w in summary["warnings"]:
        print(f"warning: {w}")


def compare_runs(
    paths: Iterable[str | Path],
    out: str | Path,
    allow_incomplete: bool = False,
    budgets: Iterable[int] = BUDGETS,
    command: str = "vqa compare",
) -> dict:
    """Read run folders, write every output into `out`, print the table; return the summary.

    Every input is read and checked before anything is written; each file is written atomically."""
    paths = list(paths)
    for run in paths:
        if Path(out).resolve().is_relative_to(Path(run).resolve()):
            raise UserError(
                f"--out {out} is inside the run folder {run}, an input; choose a folder outside the runs"
            )
    runs, incomplete, warnings = load_runs(paths, allow_incomplete)
    summary = compare(runs, budgets)
    summary["incomplete"] = [
        {"path": str(r.path), "epochs_done": int(r.epochs[-1]), "epochs_planned": r.config["train.epochs"]}
        | {"included": allow_incomplete}
        for r in incomplete
    ]
    summary |= {"warnings": warnings, "command": command, "debias": debias_summary(runs)}
    out = output_folder(out, "--out")
    texts, figures = _write(summary, runs, out)
    _print(summary, texts, allow_incomplete)
    print(f"compare: {len(runs)} runs -> {out}/ ({', '.join([*texts, 'summary.json', *figures])})")
    return summary


def parse_budgets(text: str) -> list[int]:
    """'1,2,5' -> [1, 2, 5] (sorted, unique); a UserError unless every entry is a positive integer."""
    try:
        budgets = sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        budgets = [0]
    if not budgets or budgets[0] < 1:
        raise UserError(f"--budgets '{text}': give positive epochs separated by commas, e.g. 1,2,5,10")
    return budgets


def compare_command(args: argparse.Namespace) -> int:
    """`vqa compare RUN_DIR ... --out DIR [--allow-incomplete] [--budgets 1,2,5]` (vqa.cli parses)."""
    command = " ".join(["vqa compare", *args.runs, "--out", args.out])
    command += " --allow-incomplete" if args.allow_incomplete else ""
    compare_runs(args.runs, args.out, args.allow_incomplete, parse_budgets(args.budgets), command)
    return 0

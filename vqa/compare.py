"""`vqa compare`: run folders -> the paper's Table 1 and Figures 1-2, with statistics over seeds.

Ilievski & Feng (2017) report one run per (model, loss). Here runs are grouped by
(model.name, train.loss) and paired across losses by (model, seed): same data, same seed,
config otherwise equal. From each run's metrics.jsonl (one row per epoch) we report

(a) best validation accuracy (All, Y/N, Num, Other from the row of the epoch with the best
    val/accuracy, as the paper does): mean and sample std (ddof=1) over seeds, and for every
    loss other than hard_ce the paired per-seed difference minus hard_ce with a 95% t interval;
(b) convergence: the first epoch reaching 95% of the model's hard_ce best accuracy (mean over
    seeds) and the accuracy at fixed epoch budgets;
(c) the loss-accuracy discrepancy: Pearson r between val/loss and val/accuracy across epochs,
    and the epochs of the lowest val/loss and of the best val/accuracy;
(d) calibration at the best epoch: ECE and mean entropy of the predicted answer distribution;
(e) one figure per model in the paper's style.

Outputs in --out: table.md, table.csv, report.md (every section), summary.json (every number),
figure_<model>.png. No scipy: the t quantile inverts the t CDF (regularized incomplete beta).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from vqa.errors import UserError

REFERENCE = "hard_ce"  # every other loss is compared with it
COLUMNS = {  # table column -> metrics.jsonl key
    "all": "val/accuracy",
    "yes_no": "val/accuracy_yes_no",
    "number": "val/accuracy_number",
    "other": "val/accuracy_other",
}
HEADERS = {"all": "All", "yes_no": "Y/N", "number": "Num", "other": "Other"}
REQUIRED = ("epoch", "train/loss", "val/loss", "val/accuracy")
BUDGETS = (1, 2, 5, 10, 20, 50, 100)
FRACTION = 0.95  # convergence: first epoch reaching this fraction of the hard_ce best accuracy
CONFIDENCE = 0.95
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
# keys that may differ between paired runs without making the comparison unfair
PAIRING_IGNORES = {"name", "out_dir", "train.loss", "train.seed", "train.device", "train.log_every",
                   "data.num_workers", "data.preload"}  # fmt: skip


# ----------------------------------------------------------------------------- statistics


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny = 1e-300

    def clamp(v: float) -> float:
        return v if abs(v) > tiny else tiny

    c, d = 1.0, 1.0 / clamp(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 500):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for coef in (even, odd):
            d = 1.0 / clamp(1.0 + coef * d)
            c = clamp(1.0 + coef / c)
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of `t_cdf` in p (0.5 < p < 1 is what a two-sided interval needs), by bisection."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def describe(values) -> dict:
    """n, mean and sample std (ddof=1; None with fewer than 2 values) of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    return {
        "n": int(v.size),
        "mean": float(v.mean()) if v.size else None,
        "std": float(v.std(ddof=1)) if v.size > 1 else None,
    }


def paired_difference(differences) -> dict:
    """Mean of per-seed differences with a CONFIDENCE t interval (n - 1 degrees of freedom)."""
    out = describe(differences)
    out.update(ci_low=None, ci_high=None, t=None)
    if out["n"] > 1:
        t = t_quantile(0.5 + CONFIDENCE / 2.0, out["n"] - 1)
        half = t * out["std"] / math.sqrt(out["n"])
        out.update(ci_low=out["mean"] - half, ci_high=out["mean"] + half, t=t)
    return out


def pearson(x, y) -> float:
    """Pearson r over the epochs where both are finite; NaN with fewer than 3 or a constant series."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    dx, dy = x[ok] - x[ok].mean(), y[ok] - y[ok].mean()
    den = math.sqrt(float((dx * dx).sum() * (dy * dy).sum()))
    return float((dx * dy).sum() / den) if den > 0 else float("nan")


# ----------------------------------------------------------------------------- run folders


def read_rows(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl, checked: JSON objects with the required keys, epochs increasing."""
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path} line {i}: malformed JSON; rerun or resume the run") from None
        missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
        if missing:
            raise UserError(f"{path} line {i}: missing {', '.join(repr(k) for k in missing)}")
        if rows and row["epoch"] <= rows[-1]["epoch"]:
            raise UserError(
                f"{path} line {i}: epoch {row['epoch']} does not follow epoch {rows[-1]['epoch']}"
            )
        rows.append(row)
    return rows


def stopped_early(rows: list[dict], patience: int) -> bool:
    """Whether early stopping ended the run: `patience` epochs without a strictly better accuracy
    since the best (the rule of vqa.train.fit, whose first best is the first epoch's)."""
    if patience <= 0 or not rows:
        return False
    best = int(np.argmax([r["val/accuracy"] for r in rows]))  # first maximum, as fit's strict '>'
    return len(rows) - 1 - best >= patience


def is_complete(rows: list[dict], epochs: int, patience: int = 0) -> bool:
    return bool(rows) and (rows[-1]["epoch"] >= epochs or stopped_early(rows, patience))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@dataclass
class Run:
    path: Path
    config: dict  # flattened: {"train.loss": ..., ...}
    rows: list[dict]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> str:
        return self.config["model.name"]

    @property
    def loss(self) -> str:
        return self.config["train.loss"]

    @property
    def seed(self) -> int:
        return self.config["train.seed"]

    @property
    def data(self) -> tuple:
        root = os.path.normpath(os.path.abspath(str(self.config["data.root"])))
        return root, self.config.get("data.train_split"), self.config.get("data.val_split")

    @property
    def complete(self) -> bool:
        return is_complete(
            self.rows, self.config["train.epochs"], self.config.get("train.early_stop_patience", 0)
        )

    def series(self, key: str) -> np.ndarray:
        """[epochs] float values of `key` (NaN where missing)."""
        return np.asarray([_num(r.get(key)) for r in self.rows], dtype=np.float64)

    @property
    def epochs(self) -> np.ndarray:
        return np.asarray([r["epoch"] for r in self.rows])

    @property
    def best_row(self) -> dict:
        return self.rows[int(np.nanargmax(self.series("val/accuracy")))]


def _num(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else float("nan")


def load_run(path: str | Path) -> Run:
    """A run folder written by `vqa train`; a UserError naming the folder when it is not one."""
    path = Path(path)
    hint = "pass run folders written by `vqa train` (runs/<name>)"
    if not path.is_dir():
        raise UserError(f"{path}: not a folder; {hint}")
    for f in ("config.yaml", "metrics.jsonl"):
        if not (path / f).is_file():
            raise UserError(f"{path}: no {f}; {hint}")
    try:
        raw = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path / 'config.yaml'}: not valid YAML ({str(e).splitlines()[0]})") from None
    config = _flatten(raw) if isinstance(raw, dict) else {}
    for key in ("model.name", "train.loss", "train.seed", "train.epochs", "data.root"):
        if key not in config:
            raise UserError(f"{path / 'config.yaml'}: missing '{key}'; {hint}")
    rows = read_rows(path / "metrics.jsonl")
    if not rows:
        raise UserError(f"{path / 'metrics.jsonl'}: empty (no finished epoch); resume or rerun the run")
    if not np.isfinite(Run(path, config, rows).series("val/accuracy")).any():
        raise UserError(f"{path / 'metrics.jsonl'}: no finite val/accuracy")
    return Run(path, config, rows)


def load_runs(paths, allow_incomplete: bool = False) -> tuple[list[Run], list[Run], list[str]]:
    """(runs to compare, incomplete runs, warnings). Checks one dataset and one run per (model, loss, seed)."""
    runs, seen = [], set()
    for p in paths:
        if Path(p).resolve() not in seen:
            seen.add(Path(p).resolve())
            runs.append(load_run(p))
    if not runs:
        raise UserError("compare: no run folders given")
    first = runs[0]
    for r in runs[1:]:
        if r.data != first.data:
            raise UserError(
                f"{r.path}: data {r.config['data.root']} ({r.data[2]}) differs from {first.config['data.root']} "
                f"({first.data[2]}) of {first.path}; compare runs of one dataset"
            )
    by_key: dict[tuple, Run] = {}
    for r in runs:
        key = (r.model, r.loss, r.seed)
        if key in by_key:
            raise UserError(
                f"{r.path}: same model, loss and seed as {by_key[key].path} ({r.model}, {r.loss}, seed {r.seed}); "
                "pass one of them"
            )
        by_key[key] = r
    incomplete = [r for r in runs if not r.complete]
    chosen = runs if allow_incomplete else [r for r in runs if r.complete]
    if not chosen:
        raise UserError(
            f"compare: none of the {len(runs)} runs is complete ({incomplete[0].path}: "
            f"{len(incomplete[0].rows)} of {incomplete[0].config['train.epochs']} epochs); "
            "resume them or pass --allow-incomplete"
        )
    warnings = []
    for model in _ordered(r.model for r in chosen):
        first, *others = [r for r in chosen if r.model == model]
        for r in others:
            keys = sorted(set(first.config) | set(r.config))
            diff = [k for k in keys if k not in PAIRING_IGNORES and first.config.get(k) != r.config.get(k)]
            if diff:
                k = diff[0]
                warnings.append(
                    f"{r.path} differs from {first.path} in {', '.join(diff)} ({k}: {r.config.get(k)!r} vs "
                    f"{first.config.get(k)!r}); the loss should be the only difference"
                )
    return chosen, incomplete, warnings


def _ordered(items) -> list:
    """Unique items in order of first appearance, the reference loss first."""
    out = list(dict.fromkeys(items))
    return sorted(out, key=lambda x: x != REFERENCE)


# ----------------------------------------------------------------------------- the comparison

# per-run numbers aggregated by (model, loss) as mean ± std
GROUP_STATS = (*COLUMNS, "best_epoch", "epoch_to_threshold", "pearson_loss_accuracy", "best_loss_epoch",
               "ece", "entropy")  # fmt: skip


def run_summary(r: Run, budgets: list[int], threshold: float | None) -> dict:
    """One run's numbers: best epoch and its accuracies and calibration, convergence, discrepancy."""
    best = r.best_row
    acc, loss, epochs = r.series("val/accuracy"), r.series("val/loss"), r.epochs  # [epochs]
    reached = np.nonzero(acc >= threshold)[0] if threshold is not None else []
    accuracy_at = {str(e): float(acc[epochs == e][0]) for e in budgets if (epochs == e).any()}
    accuracy_at["last"] = float(acc[-1])
    out = {
        "name": r.name,
        "path": str(r.path),
        "model": r.model,
        "loss": r.loss,
        "seed": r.seed,
        "complete": r.complete,
        "epochs_done": int(epochs[-1]),
        "epochs_planned": r.config["train.epochs"],
        "best_epoch": int(best["epoch"]),
        **{c: _num(best.get(key)) for c, key in COLUMNS.items()},
        "val_loss": _num(best.get("val/loss")),
        "ece": _num(best.get("val/ece")),
        "entropy": _num(best.get("val/entropy")),
        "epoch_to_threshold": int(epochs[reached[0]]) if len(reached) else None,
        "accuracy_at": accuracy_at,
        "pearson_loss_accuracy": pearson(loss, acc),
        "best_loss_epoch": int(epochs[np.nanargmin(loss)]) if np.isfinite(loss).any() else None,
    }
    return out


def compare(runs: list[Run], budgets=BUDGETS) -> dict:
    """Every number of the report as plain data (NaN or None where undefined).

    references: per model, the hard_ce runs' best accuracy (mean over seeds) and the convergence
    threshold; runs: `run_summary` of each; groups: per (model, loss) mean ± std of GROUP_STATS and of
    the accuracy at each budget; differences: per (model, loss != hard_ce) the paired per-seed
    differences minus hard_ce of All, Y/N, Num, Other with their t interval.
    """
    last = max(int(r.epochs[-1]) for r in runs)
    budgets = [b for b in budgets if b <= last]
    models = _ordered(r.model for r in runs)
    losses = _ordered(r.loss for r in runs)
    references = {}
    for m in models:
        ref = describe(r.best_row["val/accuracy"] for r in runs if r.model == m and r.loss == REFERENCE)
        ref["threshold"] = FRACTION * ref["mean"] if ref["n"] else None
        references[m] = ref
    per_run = [run_summary(r, budgets, references[r.model]["threshold"]) for r in runs]
    groups, differences = [], []
    for m in models:
        hard = {s["seed"]: s for s in per_run if s["model"] == m and s["loss"] == REFERENCE}
        for loss in losses:
            rs = [s for s in per_run if s["model"] == m and s["loss"] == loss]
            if not rs:
                continue
            group = {"model": m, "loss": loss, "n": len(rs), "seeds": [s["seed"] for s in rs]}
            group["runs"] = [s["name"] for s in rs]
            group.update({k: describe(s[k] for s in rs) for k in GROUP_STATS})
            group["reached"] = sum(s["epoch_to_threshold"] is not None for s in rs)
            group["accuracy_at"] = {
                b: describe(s["accuracy_at"].get(b) for s in rs) for b in [*map(str, budgets), "last"]
            }
            groups.append(group)
            if loss == REFERENCE or not hard:
                continue
            paired = [s for s in rs if s["seed"] in hard]
            diff = {"model": m, "loss": loss, "minus": REFERENCE, "n": len(paired)}
            diff["seeds"] = [s["seed"] for s in paired]
            diff["unpaired_seeds"] = sorted({s["seed"] for s in rs} ^ set(hard))
            diff["confidence"] = CONFIDENCE
            for c in COLUMNS:
                diff[c] = paired_difference(s[c] - hard[s["seed"]][c] for s in paired)
            differences.append(diff)
    return {
        "fraction": FRACTION,
        "budgets": budgets,
        "references": references,
        "runs": per_run,
        "groups": groups,
        "differences": differences,
    }


# ----------------------------------------------------------------------------- rendering


def _f(x, digits: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _pm(d: dict, digits: int = 2, of: int | None = None) -> str:
    """'mean ± std'; 'mean' for one value; 'n/a' for none; '(n=k)' when only k of `of` runs have a value."""
    if d["n"] == 0:
        return "n/a"
    text = _f(d["mean"], digits) + (f" ± {_f(d['std'], digits)}" if d["std"] is not None else "")
    return text + (f" (n={d['n']})" if of is not None and d["n"] != of else "")


def _ci(d: dict) -> str:
    """'+mean [+low, +high]'; the interval is n/a with one pair."""
    if d["n"] == 0:
        return "n/a"
    ci = "CI n/a" if d["ci_low"] is None else f"{_f(d['ci_low'], sign=True)}, {_f(d['ci_high'], sign=True)}"
    return f"{_f(d['mean'], sign=True)} [{ci}]"


def _md(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]) + "\n"


def _differences_of(summary: dict, group: dict) -> list[dict]:
    return [d for d in summary["differences"] if (d["model"], d["loss"]) == (group["model"], group["loss"])]


def table_markdown(summary: dict) -> str:
    """The paper's Table 1: best validation accuracy per (model, loss), each loss then minus hard_ce."""
    rows = []
    for g in summary["groups"]:
        rows.append([g["model"].upper(), g["loss"], g["n"], *(_pm(g[c], of=g["n"]) for c in COLUMNS)])
        for d in _differences_of(summary, g):
            rows.append(
                [g["model"].upper(), f"{d['loss']} - {d['minus']}", d["n"], *(_ci(d[c]) for c in COLUMNS)]
            )
    note = (
        "\nBest validation accuracy (%, official VQA metric; All, Y/N, Num, Other from the epoch of the "
        "best All), mean ± sample std over n seeds. Rows 'x - hard_ce': mean of the per-seed differences "
        f"[{CONFIDENCE:.0%} t interval, n - 1 degrees of freedom].\n"
    )
    return _md(["Model", "Loss", "n", *HEADERS.values()], rows) + note


def table_csv(summary: dict) -> str:
    """Table 1 unrounded: one row per (model, loss) and per difference; empty cells where undefined."""
    stats = ("mean", "std", "ci_low", "ci_high")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "loss", "row", "n", "seeds", *(f"{c}_{s}" for c in COLUMNS for s in stats)])

    def cells(d: dict) -> list:
        return ["" if d.get(s) is None else round(d[s], 6) for s in stats]

    for g in summary["groups"]:
        seeds = " ".join(map(str, g["seeds"]))
        w.writerow([g["model"], g["loss"], "mean", g["n"], seeds, *(x for c in COLUMNS for x in cells(g[c]))])
        for d in _differences_of(summary, g):
            seeds = " ".join(map(str, d["seeds"]))
            row = f"minus_{d['minus']}"
            w.writerow(
                [d["model"], d["loss"], row, d["n"], seeds, *(x for c in COLUMNS for x in cells(d[c]))]
            )
    return buf.getvalue()


RUN_HEADER = ["run", "model", "loss", "seed", "epochs", "best epoch", "All", "epoch to threshold",
              "r(val loss, val acc)", "best-loss epoch", "ECE", "entropy"]  # fmt: skip


def report_markdown(summary: dict, command: str) -> str:
    """Every section: Table 1, convergence, loss-accuracy discrepancy, calibration, runs, figures."""
    budgets = [*map(str, summary["budgets"]), "last"]
    thresholds = "; ".join(
        f"{m.upper()} {_f(r['threshold'])} (= {summary['fraction']:.0%} of {_f(r['mean'])}, n={r['n']})"
        if r["n"]
        else f"{m.upper()} n/a (no {REFERENCE} runs)"
        for m, r in summary["references"].items()
    )
    conv, disc, cal = [], [], []
    for g in summary["groups"]:
        key = [g["model"].upper(), g["loss"], g["n"]]
        reached = f"{g['reached']}/{g['n']}" if summary["references"][g["model"]]["n"] else "n/a"
        conv.append([*key, reached, _pm(g["epoch_to_threshold"], 1)])
        conv[-1] += [_pm(g["accuracy_at"][b], of=g["n"]) for b in budgets]
        disc.append([*key, _pm(g["pearson_loss_accuracy"], 3, g["n"]), _pm(g["best_loss_epoch"], 1, g["n"])])
        disc[-1].append(_pm(g["best_epoch"], 1, g["n"]))
        cal.append([*key, _pm(g["ece"], 4, g["n"]), _pm(g["entropy"], 3, g["n"])])
    runs = []
    for s in summary["runs"]:
        epochs = f"{s['epochs_done']}/{s['epochs_planned']}" + ("" if s["complete"] else " (incomplete)")
        to_threshold = s["epoch_to_threshold"] or (
            "never" if summary["references"][s["model"]]["n"] else "n/a"
        )
        runs.append([s["name"], s["model"], s["loss"], s["seed"], epochs, s["best_epoch"], _f(s["all"])])
        runs[-1] += [to_threshold, _f(s["pearson_loss_accuracy"], 3), s["best_loss_epoch"]]
        runs[-1] += [_f(s["ece"], 4), _f(s["entropy"], 3)]
    parts = [
        f"# Loss comparison: {len(summary['runs'])} runs\n\nMade by `{command}`.\n",
        "## Best validation accuracy (Table 1)\n\n" + table_markdown(summary),
        "## Convergence\n\nFirst epoch whose val accuracy reaches the model's threshold, mean ± std over "
        f"the runs that reach it ('reached' counts them). Thresholds: {thresholds}. Then val accuracy at "
        "epoch budgets, mean ± std.\n\n"
        + _md(["Model", "Loss", "n", "reached", "epoch to threshold", *(f"acc@{b}" for b in budgets)], conv),
        "## Loss-accuracy discrepancy\n\nPearson r between val loss (the run's own loss) and val accuracy "
        "across epochs (near -1: they move together; towards 0 or positive: the loss stops tracking the "
        "accuracy), and the epochs of the lowest val loss and of the best val accuracy.\n\n"
        + _md(["Model", "Loss", "n", "r(val loss, val acc)", "best-loss epoch", "best-accuracy epoch"], disc),
        "## Calibration at the best epoch\n\nExpected calibration error (15 bins, the official "
        "per-question accuracy as correctness) and mean entropy of the predicted answer distribution "
        "(nats).\n\n" + _md(["Model", "Loss", "n", "ECE", "entropy"], cal),
        "## Runs\n\n" + _md(RUN_HEADER, runs),
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


FIGURE_CURVES = (  # (metrics key, line style, label, right axis)
    ("train/loss", "--", "train loss", False),
    ("val/loss", "-", "val loss", False),
    ("val/accuracy", ":", "val accuracy", True),
)


def plot_model(runs: list[Run], model: str, colors: dict[str, str], path: Path) -> None:
    """The paper's Figures 1-2 for one model: train loss dashed and val loss solid (left axis), val
    accuracy dotted (right axis), one colour per loss; mean over seeds with a light min-max band."""
    from matplotlib.figure import Figure  # Agg canvas on savefig; no pyplot global state
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    counts, handles = [], {}
    losses = _ordered(r.loss for r in runs if r.model == model)
    for loss in losses:
        group = [r for r in runs if r.model == model and r.loss == loss]
        counts.append(f"{loss} n={len(group)}")
        epochs = np.unique(np.concatenate([r.epochs for r in group]))
        for key, style, label, right in FIGURE_CURVES:
            values = np.full((len(group), len(epochs)), np.nan)  # [runs, epochs]
            for i, r in enumerate(group):
                values[i, np.searchsorted(epochs, r.epochs)] = r.series(key)
            ok = np.isfinite(values).any(0)  # [epochs]
            axis = ax2 if right else ax
            mean = np.nanmean(values[:, ok], 0)
            (handles[f"{loss} {label}"],) = axis.plot(epochs[ok], mean, style, color=colors[loss], lw=1.8)
            if len(group) > 1:
                lo, hi = np.nanmin(values[:, ok], 0), np.nanmax(values[:, ok], 0)
                axis.fill_between(epochs[ok], lo, hi, color=colors[loss], alpha=0.12, lw=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax2.set_ylabel("validation accuracy (%)")
    ax.set_title(
        f"{model.upper()}: train loss (dashed), val loss (solid), val accuracy (dotted)\n"
        f"mean over seeds ({', '.join(counts)}); band: min-max",
        fontsize=9,
    )
    # legend: one row per loss (matplotlib fills columns first)
    labels = [f"{loss} {label}" for _, _, label, _ in FIGURE_CURVES for loss in losses]
    fig.legend([handles[k] for k in labels], labels, fontsize=7, ncol=3, loc="lower center", frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.01 + 0.035 * len(losses), 1, 1))  # room for the legend below
    fig.savefig(path, dpi=120)


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def compare_runs(
    paths, out: str | Path, allow_incomplete: bool = False, budgets=BUDGETS, command: str = "vqa compare"
) -> dict:
    """Read run folders, write every output into `out`, print the table; return the summary.

    Every input is read and checked before anything is written."""
    runs, incomplete, warnings = load_runs(paths, allow_incomplete)
    summary = compare(runs, budgets)
    summary["incomplete"] = [
        {
            "path": str(r.path),
            "epochs_done": int(r.epochs[-1]),
            "epochs_planned": r.config["train.epochs"],
            "included": allow_incomplete,
        }
        for r in incomplete
    ]
    summary["warnings"] = warnings
    summary["command"] = command
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "table.md": table_markdown(summary),
        "table.csv": table_csv(summary),
        "report.md": report_markdown(summary, command),
        "summary.json": json.dumps(_json_safe(summary), indent=1) + "\n",
    }
    for name, text in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)
    colors = {loss: PALETTE[i % len(PALETTE)] for i, loss in enumerate(_ordered(r.loss for r in runs))}
    figures = [f"figure_{m}.png" for m in summary["references"]]
    for m, name in zip(summary["references"], figures):
        plot_model(runs, m, colors, out / name)
    print(files["table.md"], end="")
    for i in summary["incomplete"]:
        what = "included" if allow_incomplete else "left out (--allow-incomplete includes it)"
        print(f"note: {i['path']} is incomplete ({i['epochs_done']} of {i['epochs_planned']} epochs); {what}")
    for w in warnings:
        print(f"warning: {w}")
    print(f"compare: {len(runs)} runs -> {out}/ ({', '.join([*files, *figures])})")
    return summary


def add_compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by `vqa train`")
    p.add_argument("--out", required=True, help="folder for table.md/.csv, report.md, summary.json, figures")
    p.add_argument(
        "--allow-incomplete", action="store_true", help="include runs that have not finished their epochs"
    )
    p.add_argument(
        "--budgets",
        default=",".join(map(str, BUDGETS)),
        help="epochs at which to report accuracy (those that exist, plus the last); default %(default)s",
    )


def parse_budgets(text: str) -> list[int]:
    try:
        budgets = sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        budgets = [0]
    if not budgets or budgets[0] < 1:
        raise UserError(f"--budgets '{text}': give positive epochs separated by commas, e.g. 1,2,5,10")
    return budgets


def compare_command(args: argparse.Namespace) -> int:
    command = " ".join(["vqa compare", *args.runs, "--out", args.out])
    command += " --allow-incomplete" if args.allow_incomplete else ""
    compare_runs(args.runs, args.out, args.allow_incomplete, parse_budgets(args.budgets), command)
    return 0

"""Verdicts on the paper's claims: confirmed, refuted or undecided, each by a 95% t interval over seeds.

Ilievski & Feng (2017, docs: vqa-reference section 1) claim, for AVG and POOL on VQA v2:
  1. soft cross-entropy beats cross-entropy on overall accuracy (Table 1, All);
  2. soft cross-entropy converges faster (Figures 1-2);
  3. cross-entropy shows a loss-accuracy discrepancy: from about half-way, validation loss rises
     while validation accuracy still rises (Figures 1-2);
  4. the gain holds for each answer type (Table 1: Y/N, Num, Other).

Each claim is a statistic per seed; its verdict is read off the CONFIDENCE t interval of the mean
over seeds (n - 1 degrees of freedom, stats.mean_interval): confirmed when the interval lies wholly
on the claim's side of 0, refuted when wholly on the other side, undecided when it holds 0 or there
is no interval (fewer than 2 seeds). Per model, "soft" is the arm soft_ce and "hard" hard_ce, paired
by seed (seeds that only one arm has are left out):

  1. "soft beats hard on All": soft - hard best val accuracy (All, points). Claim side: > 0.
     Also, for each further arm X (controls: label_smoothing, shuffled, ...): "soft beats X on All".
  2. "soft converges faster": soft - hard epochs until the val accuracy first reaches 95% of the
     mean best accuracy of the model's hard runs (the convergence table's epoch). A run that never
     reaches it counts as its last epoch + 1, a lower bound of its true epoch. Claim side: < 0.
  3. "<arm> shows the loss-accuracy discrepancy", for every arm, not paired; two statistics a run:
       gap  = epoch of the best val accuracy - epoch of the lowest val loss (the run's own loss,
              val/loss; the first of equal values), in epochs;
       rise = val loss at the last epoch - the lowest val loss (>= 0: 0 when the last is lowest).
     Confirmed when both intervals lie above 0 (the loss has turned up and the accuracy peaked after
     the loss did); refuted when either lies at or below 0 (rise >= 0, so [0, 0], the loss lowest at
     the last epoch of every seed, is how that one fails); undecided otherwise. The claim of the paper
     is the hard_ce line. Then "soft shows less of it": soft - hard rise of the val cross-entropy on
     the most common answer (val/hard_ce, one scale for both arms), paired. Claim side: < 0.
  4. "soft gains on <type>": soft - hard val accuracy of the answer type at each run's best-All
     epoch (the Table 1 cells), points. Claim side: > 0.
"""

from __future__ import annotations

from collections.abc import Callable

from vqa.report.runs import COLUMNS, REFERENCE, num
from vqa.report.stats import mean_interval

SOFT = "soft_ce"
TYPE_NAMES = {"yes_no": "Y/N", "number": "Num", "other": "Other"}  # Table 1's column names
NOT_PAIRED = "n/a"  # the verdict of a paired claim when the model lacks soft_ce or hard_ce runs


def side_verdict(interval: dict, side: int) -> str:
    """'confirmed' when the interval lies wholly on `side` of 0 (+1: above, -1: below), 'refuted'
    when wholly on the other side, else 'undecided' (also when there is no interval)."""
    lo, hi = interval["ci_low"], interval["ci_high"]
    if lo is None:
        return "undecided"
    above, below = lo > 0, hi < 0
    if above or below:
        return "confirmed" if (above if side > 0 else below) else "refuted"
    return "undecided"


def discrepancy_verdict(gap: dict, rise: dict) -> str:
    """Claim 3 (module docstring): both intervals above 0, or either at or below 0, or neither."""
    if gap["ci_low"] is None or rise["ci_low"] is None:
        return "undecided"
    if gap["ci_low"] > 0 and rise["ci_low"] > 0:
        return "confirmed"
    if gap["ci_high"] <= 0 or rise["ci_high"] <= 0:
        return "refuted"
    return "undecided"


def paired(runs: list[dict], model: str, a: str, b: str, stat: Callable[[dict], float]) -> dict:
    """mean_interval of the per-seed a - b of `stat` (a run summary -> number) over the shared seeds."""
    by_arm = [{s["seed"]: s for s in runs if s["model"] == model and s["loss"] == arm} for arm in (a, b)]
    seeds = sorted(set(by_arm[0]) & set(by_arm[1]))
    return mean_interval(num(stat(by_arm[0][x])) - num(stat(by_arm[1][x])) for x in seeds)


def _claim(model: str, claim: str, verdict: str, *estimates: tuple[str, dict, int]) -> dict:
    """A verdict with the intervals that decide it: (what, mean_interval, digits to print)."""
    return {"model": model, "claim": claim, "verdict": verdict,
            "estimates": [{"what": w, "digits": d, **i} for w, i, d in estimates]}  # fmt: skip


def _censored(s: dict) -> int:
    """Epochs to the threshold; a run that never reaches it: its last epoch + 1 (a lower bound)."""
    return s["epoch_to_threshold"] if s["epoch_to_threshold"] is not None else s["epochs_done"] + 1


def verdicts(summary: dict) -> list[dict]:
    """Every claim of the module docstring for each model of a compare() summary, in that order."""
    runs, out = summary["runs"], []
    for model, ref in summary["references"].items():
        arms = [g["loss"] for g in summary["groups"] if g["model"] == model]
        pair = REFERENCE in arms and SOFT in arms
        if pair:
            for other in [REFERENCE, *(a for a in arms if a not in (REFERENCE, SOFT))]:
                d = paired(runs, model, SOFT, other, lambda s: s["all"])
                name = "hard" if other == REFERENCE else other
                out.append(_claim(model, f"soft beats {name} on All", side_verdict(d, +1),
                                  (f"{SOFT} - {other} best accuracy (points)", d, 2)))  # fmt: skip
            d = paired(runs, model, SOFT, REFERENCE, _censored)
            what = f"{SOFT} - {REFERENCE} epochs to {ref['threshold']:.2f} (95% of the hard best)"
            out.append(_claim(model, "soft converges faster", side_verdict(d, -1), (what, d, 1)))
        else:
            out.append(_claim(model, "soft vs hard (claims 1, 2, 4)", NOT_PAIRED))
        for arm in arms:
            rs = [s for s in runs if s["model"] == model and s["loss"] == arm]
            gap, rise = mean_interval(s["gap"] for s in rs), mean_interval(s["loss_rise"] for s in rs)
            out.append(_claim(model, f"{arm} shows the loss-accuracy discrepancy", discrepancy_verdict(gap, rise),
                              ("best-accuracy epoch - lowest-val-loss epoch", gap, 1),
                              ("val-loss rise after its minimum", rise, 4)))  # fmt: skip
        if pair:
            d = paired(runs, model, SOFT, REFERENCE, lambda s: s["hard_ce_rise"])
            out.append(_claim(model, "soft shows less of it", side_verdict(d, -1),
                              (f"{SOFT} - {REFERENCE} rise of val/hard_ce after its minimum", d, 4)))  # fmt: skip
            for c in (c for c in COLUMNS if c != "all"):
                d = paired(runs, model, SOFT, REFERENCE, lambda s, c=c: s[c])
                out.append(_claim(model, f"soft gains on {TYPE_NAMES.get(c, c)}", side_verdict(d, +1),
                                  (f"{SOFT} - {REFERENCE} {TYPE_NAMES.get(c, c)} accuracy (points)", d, 2)))  # fmt: skip
    return out


def _estimate(e: dict) -> str:
    """'what +mean [+low, +high], n=k' ('CI n/a' with one seed, 'n/a' with none)."""
    if not e["n"]:
        return f"{e['what']} n/a"
    digits = e["digits"]
    ci = "CI n/a" if e["ci_low"] is None else f"{e['ci_low']:+.{digits}f}, {e['ci_high']:+.{digits}f}"
    return f"{e['what']} {e['mean']:+.{digits}f} [{ci}], n={e['n']}"


def claim_lines(claims: list[dict]) -> list[str]:
    """One line per verdict: 'AVG: soft beats hard on All: confirmed (soft_ce - hard_ce ... [lo, hi], n=5)'."""
    lines = []
    for c in claims:
        why = "; ".join(_estimate(e) for e in c["estimates"]) or "needs soft_ce and hard_ce runs"
        lines.append(f"{c['model'].upper()}: {c['claim']}: {c['verdict']} ({why})")
    return lines

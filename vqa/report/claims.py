"""Verdicts on the paper's claims: confirmed, refuted or undecided, by t tests over seeds, Holm-corrected.

Ilievski & Feng (2017, docs: vqa-reference section 1) claim, for AVG and POOL on VQA v2:
  1. soft cross-entropy beats cross-entropy on overall accuracy (Table 1, All);
  2. soft cross-entropy converges faster (Figures 1-2);
  3. cross-entropy shows a loss-accuracy discrepancy: from about half-way, validation loss rises
     while validation accuracy still rises (Figures 1-2);
  4. the gain holds for each answer type (Table 1: Y/N, Num, Other).

Each claim is a statistic per seed, tested by the two-sided t test of its mean over seeds against 0
(n - 1 degrees of freedom; stats.mean_interval gives the p-value and the CONFIDENCE t interval). The
claims of one report are one family: their p-values get the Holm-Bonferroni adjustment (stats.holm;
m = the claims that have a p-value), and a claim is decided when its Holm-adjusted p < ALPHA (0.05):
confirmed when the mean lies on the claim's side of 0, refuted when on the other side; otherwise, or
with no p-value (fewer than 2 seeds), undecided. This holds the chance of any false verdict in the
report to 5%, where 24 claims at 5% each would give about one by chance alone.

The printed interval is the unadjusted 95% t interval. Since a p-value is < 0.05 exactly when that
interval excludes 0, and the adjusted p is never below the raw one, a decided claim's interval always
lies wholly on the side its verdict says; an interval that excludes 0 may still be undecided (its
adjusted p is >= 0.05). Per model, "soft" is the arm soft_ce and "hard" hard_ce, paired by seed (seeds
that only one arm has are left out):

  1. "soft beats hard on All": soft - hard best val accuracy (All, points). Claim side: > 0.
     Also, for each further arm X (controls: label_smoothing, shuffled, ...): "soft beats X on All".
  2. "soft converges faster": soft - hard epochs until the val accuracy first reaches 95% of the
     mean best accuracy of the model's hard runs (the convergence table's epoch). A run that never
     reaches it counts as its last epoch + 1, a lower bound of its true epoch. Claim side: < 0.
  3. "<arm> shows the loss-accuracy discrepancy", for every arm, not paired; two statistics a run:
       gap  = epoch of the best val accuracy - epoch of the lowest val loss (the run's own loss,
              val/loss; the first of equal values), in epochs;
       rise = val loss at the last epoch - the lowest val loss (>= 0: 0 when the last is lowest).
     The claim holds when both means are above 0 (the loss has turned up and the accuracy peaked after
     the loss did): its p-value is then the larger of the two (an intersection-union test, confirmed
     only when both tests are). Otherwise its p-value is the gap's, with the evidence against the
     claim when the mean gap is below 0. A rise of 0 in every seed (the val loss lowest at the last
     epoch of every run; rise >= 0, so nothing lies below it) refutes the claim as observed, without
     a test, and is not in the Holm family. The claim of the paper is the hard_ce line.
     Then "soft shows less of it": soft - hard rise of the val cross-entropy on the most common answer (val/hard_ce, one scale for both arms), paired. Claim side: < 0.
  4. "soft gains on <type>": soft - hard val accuracy of the answer type at each run's best-All
     epoch (the Table 1 cells), points. Claim side: > 0.
"""

from __future__ import annotations

from collections.abc import Callable

from vqa.report.runs import COLUMNS, REFERENCE, num
from vqa.report.stats import ALPHA, holm, mean_interval

SOFT = "soft_ce"
TYPE_NAMES = {"yes_no": "Y/N", "number": "Num", "other": "Other"}  # Table 1's column names
NOT_PAIRED = "n/a"  # the verdict of a paired claim when the model lacks soft_ce or hard_ce runs
VERDICT_OF_EVIDENCE = {+1: "confirmed", -1: "refuted", 0: "undecided"}  # a decided claim's, by its side
NO_RISE = "no seed's val loss rose after its minimum: refuted as observed, not tested"


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def side_test(interval: dict, side: int) -> tuple[float | None, int]:
    """(p-value, evidence) of a claim that the mean lies on `side` of 0 (+1: above, -1: below):
    evidence +1 when the mean lies on that side, -1 on the other, 0 at 0."""
    return interval["p"], _sign(interval["mean"] or 0.0) * side


def discrepancy_test(gap: dict, rise: dict) -> tuple[float | None, int]:
    """Claim 3's (p-value, evidence) (module docstring); (None, -1) when no seed's loss rose."""
    if gap["p"] is None or rise["p"] is None:
        return None, 0
    if rise["mean"] == 0 and rise["std"] == 0:
        return None, -1
    if gap["mean"] > 0 and rise["mean"] > 0:
        return max(gap["p"], rise["p"]), +1
    return gap["p"], _sign(gap["mean"])


def decide(claims: list[dict], alpha: float = ALPHA) -> dict:
    """Holm-adjust the p-values of `claims` as one family and set each claim's `p_holm` and `verdict`
    (module docstring); return the family: method, size m, alpha and the level of the smallest p."""
    for c, adjusted in zip(claims, holm([c["p"] for c in claims])):
        c["p_holm"] = adjusted
        if adjusted is not None:
            c["verdict"] = VERDICT_OF_EVIDENCE[c["evidence"]] if adjusted < alpha else "undecided"
    m = sum(c["p"] is not None for c in claims)
    return {"method": "holm", "size": m, "alpha": alpha, "smallest_level": alpha / m if m else None}


def paired(runs: list[dict], model: str, a: str, b: str, stat: Callable[[dict], float]) -> dict:
    """mean_interval of the per-seed a - b of `stat` (a run summary -> number) over the shared seeds
    (its p-value is the paired t test's)."""
    by_arm = [{s["seed"]: s for s in runs if s["model"] == model and s["loss"] == arm} for arm in (a, b)]
    seeds = sorted(set(by_arm[0]) & set(by_arm[1]))
    return mean_interval(num(stat(by_arm[0][x])) - num(stat(by_arm[1][x])) for x in seeds)


def _claim(model: str, claim: str, test: tuple[float | None, int], *estimates: tuple[str, dict, int]) -> dict:
    """A claim with its test (p-value, evidence) and the intervals behind it: (what, mean_interval,
    digits to print). Its verdict before `decide`: undecided, or refuted by a rise of 0 in every seed."""
    p, evidence = test
    verdict = "refuted" if p is None and evidence < 0 else "undecided"
    return {"model": model, "claim": claim, "verdict": verdict, "p": p, "evidence": evidence,
            "estimates": [{"what": w, "digits": d, **i} for w, i, d in estimates]}  # fmt: skip


def _censored(s: dict) -> int:
    """Epochs to the threshold; a run that never reaches it: its last epoch + 1 (a lower bound)."""
    return s["epoch_to_threshold"] if s["epoch_to_threshold"] is not None else s["epochs_done"] + 1


def _paired_claims(runs: list[dict], model: str, ref: dict, arms: list[str]) -> list[dict]:
    """Claims 1 and 2 of a model with soft_ce and hard_ce runs."""
    out = []
    for other in [REFERENCE, *(a for a in arms if a not in (REFERENCE, SOFT))]:
        d = paired(runs, model, SOFT, other, lambda s: s["all"])
        name = "hard" if other == REFERENCE else other
        out.append(_claim(model, f"soft beats {name} on All", side_test(d, +1),
                          (f"{SOFT} - {other} best accuracy (points)", d, 2)))  # fmt: skip
    d = paired(runs, model, SOFT, REFERENCE, _censored)
    what = f"{SOFT} - {REFERENCE} epochs to {ref['threshold']:.2f} (95% of the hard best)"
    out.append(_claim(model, "soft converges faster", side_test(d, -1), (what, d, 1)))
    return out


def verdicts(summary: dict) -> tuple[list[dict], dict]:
    """Every claim of the module docstring for each model of a compare() summary, in that order, decided
    as one Holm family; and the family (decide)."""
    runs, out = summary["runs"], []
    for model, ref in summary["references"].items():
        arms = [g["loss"] for g in summary["groups"] if g["model"] == model]
        pair = REFERENCE in arms and SOFT in arms
        if pair:
            out += _paired_claims(runs, model, ref, arms)
        else:
            out.append(_claim(model, "soft vs hard (claims 1, 2, 4)", (None, 0)) | {"verdict": NOT_PAIRED})
        for arm in arms:
            rs = [s for s in runs if s["model"] == model and s["loss"] == arm]
            gap, rise = mean_interval(s["gap"] for s in rs), mean_interval(s["loss_rise"] for s in rs)
            out.append(_claim(model, f"{arm} shows the loss-accuracy discrepancy", discrepancy_test(gap, rise),
                              ("best-accuracy epoch - lowest-val-loss epoch", gap, 1),
                              ("val-loss rise after its minimum", rise, 4)))  # fmt: skip
        if pair:
            d = paired(runs, model, SOFT, REFERENCE, lambda s: s["hard_ce_rise"])
            out.append(_claim(model, "soft shows less of it", side_test(d, -1),
                              (f"{SOFT} - {REFERENCE} rise of val/hard_ce after its minimum", d, 4)))  # fmt: skip
            for c in (c for c in COLUMNS if c != "all"):
                d = paired(runs, model, SOFT, REFERENCE, lambda s, c=c: s[c])
                out.append(_claim(model, f"soft gains on {TYPE_NAMES.get(c, c)}", side_test(d, +1),
                                  (f"{SOFT} - {REFERENCE} {TYPE_NAMES.get(c, c)} accuracy (points)", d, 2)))  # fmt: skip
    return out, decide(out)


def _p(p: float | None) -> str:
    return " n/a" if p is None else ("<0.001" if p < 0.001 else f"={p:.3f}")


def _estimate(e: dict) -> str:
    """'what +mean [+low, +high], n=k, p=0.012' ('CI n/a' with one seed, 'n/a' with none)."""
    if not e["n"]:
        return f"{e['what']} n/a"
    digits = e["digits"]
    ci = "CI n/a" if e["ci_low"] is None else f"{e['ci_low']:+.{digits}f}, {e['ci_high']:+.{digits}f}"
    return f"{e['what']} {e['mean']:+.{digits}f} [{ci}], n={e['n']}, p{_p(e['p'])}"


def _decision(c: dict) -> str:
    """What decided a claim: its Holm-adjusted p, or why it has none."""
    if c["p"] is not None:
        return f"Holm p{_p(c['p_holm'])}"
    return NO_RISE if c["verdict"] == "refuted" else "not tested (needs 2 seeds)"


def claim_lines(claims: list[dict]) -> list[str]:
    """One line per verdict: 'AVG: soft beats hard on All: confirmed (soft_ce - hard_ce ... [lo, hi],
    n=5, p=0.001; Holm p=0.024)'."""
    lines = []
    for c in claims:
        why = "; ".join([*map(_estimate, c["estimates"]), _decision(c)]) if c["estimates"] else (
            "needs soft_ce and hard_ce runs")  # fmt: skip
        lines.append(f"{c['model'].upper()}: {c['claim']}: {c['verdict']} ({why})")
    return lines


def family_line(family: dict) -> str:
    """What the verdicts' correction was: the family size and the corrected levels."""
    m, alpha = family["size"], family["alpha"]
    if not m:
        return "No claim has a p-value (each needs 2 seeds), so none is decided."
    return (f"Holm-Bonferroni over the {m} claims with a p-value, family-wise level {alpha:g}: the k-th "
            f"smallest p is held to {alpha:g} / ({m} - k + 1), from {alpha / m:.4f} up to {alpha:g}; a claim "
            f"is decided when its Holm-adjusted p < {alpha:g}. Intervals: unadjusted 95% t, over seeds.")  # fmt: skip

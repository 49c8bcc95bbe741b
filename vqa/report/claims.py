"""Verdicts on the paper's claims: confirmed, refuted or undecided, by t tests over seeds, Holm-corrected.

Ilievski & Feng (2017, docs: vqa-reference section 1) claim, for AVG and POOL on VQA v2: (1) soft
cross-entropy beats cross-entropy on overall accuracy (Table 1, All); (2) it converges faster and (3)
cross-entropy shows a loss-accuracy discrepancy (Figures 1-2: from about half-way, validation loss rises
while validation accuracy still rises); (4) the gain holds for each answer type (Table 1: Y/N, Num,
Other). CLAIMS_NOTE (printed in report.md) states each claim's per-seed statistic and the decision rule:
one Holm-Bonferroni family per report (stats.holm over the claims with a p-value), which holds the chance
of any false verdict to 5% where 24 claims at 5% each would give about one by chance alone.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter

from vqa.report.runs import COLUMNS, REFERENCE, num
from vqa.report.stats import ALPHA, holm, mean_interval

SOFT = "soft_ce"
TYPE_NAMES = {"yes_no": "Y/N", "number": "Num", "other": "Other"}  # Table 1's column names
NOT_PAIRED = "n/a"  # the verdict of a paired claim when the model lacks soft_ce or hard_ce runs
VERDICT_OF_EVIDENCE = {+1: "confirmed", -1: "refuted", 0: "undecided"}  # a decided claim's, by its side
NO_RISE = "no seed's val loss rose after its minimum: refuted as observed, not tested"

CLAIMS_NOTE = """\
Each claim is a per-seed statistic tested by the two-sided t test of its mean over seeds against 0
(n - 1 degrees of freedom). The claims of this report are one family, Holm-Bonferroni corrected: a claim
is **confirmed** when its Holm-adjusted p < 0.05 and the mean lies on the claim's side of 0, **refuted**
when the adjusted p < 0.05 and the mean lies on the other side, **undecided** otherwise or without a
p-value (one seed). Each line gives the mean, the unadjusted 95% t interval, n and the raw p of each
statistic, then the claim's Holm-adjusted p. A decided claim's interval always excludes 0 on its
verdict's side (p < 0.05 exactly when the 95% interval excludes 0, and the adjusted p is never below
the raw one); an interval that excludes 0 can still be undecided after the correction.
soft = soft_ce, hard = hard_ce, paired by seed.

- *soft beats hard (or a control X) on All*: soft - hard best val accuracy; claim side > 0.
- *soft converges faster*: soft - hard first epoch whose val accuracy reaches 95% of the hard runs'
  mean best (a run that never does counts as its last epoch + 1); claim side < 0.
- *X shows the loss-accuracy discrepancy* (each loss; the paper's claim is hard_ce's): gap = epoch of
  the best val accuracy - epoch of the lowest val loss (the run's own loss) and rise = val loss at the
  last epoch - its minimum. With both means above 0 the claim's p is the larger of the two p's (both
  tests must pass); otherwise it is the gap's (below 0: evidence against). A rise of 0 in every seed
  (the loss lowest at the end of every run; rise is >= 0) refutes as observed, untested, outside the family.
- *soft shows less of it*: soft - hard rise of val/hard_ce after its minimum; claim side < 0.
- *soft gains on Y/N, Num, Other*: soft - hard accuracy of the type at the best-All epoch; claim side > 0.
"""


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def side_test(interval: dict, side: int) -> tuple[float | None, int]:
    """(p-value, evidence) of a claim that the mean lies on `side` of 0 (+1: above, -1: below):
    evidence +1 when the mean lies on that side, -1 on the other, 0 at 0."""
    return interval["p"], _sign(interval["mean"] or 0.0) * side


def discrepancy_test(gap: dict, rise: dict) -> tuple[float | None, int]:
    """Claim 3's (p-value, evidence) (CLAIMS_NOTE); (None, -1) when no seed's loss rose."""
    if gap["p"] is None or rise["p"] is None:
        return None, 0
    if rise["mean"] == 0 and rise["std"] == 0:
        return None, -1
    if gap["mean"] > 0 and rise["mean"] > 0:
        return max(gap["p"], rise["p"]), +1
    return gap["p"], _sign(gap["mean"])


def decide(claims: list[dict], alpha: float = ALPHA) -> dict:
    """Holm-adjust the p-values of `claims` as one family and set each claim's `p_holm` and `verdict`
    (CLAIMS_NOTE); return the family: method, size m, alpha and the level of the smallest p."""
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
    estimates = [{"what": w, "digits": d, **i} for w, i, d in estimates]
    return dict(model=model, claim=claim, verdict=verdict, p=p, evidence=evidence, estimates=estimates)


def _censored(s: dict) -> int:
    """Epochs to the threshold; a run that never reaches it: its last epoch + 1 (a lower bound)."""
    return s["epoch_to_threshold"] if s["epoch_to_threshold"] is not None else s["epochs_done"] + 1


def _soft_claims(ref: dict, arms: list[str]) -> tuple[list[tuple], list[tuple]]:
    """The paired claims of a model with soft_ce and hard_ce runs, those before claim 3 and those after:
    (claim, side of 0, per-run statistic, what, digits, the arm soft_ce is paired with)."""
    before = []
    for x in [REFERENCE, *(a for a in arms if a not in (REFERENCE, SOFT))]:
        name = "hard" if x == REFERENCE else x
        before.append((f"soft beats {name} on All", +1, itemgetter("all"), "best accuracy (points)", 2, x))
    what = f"epochs to {ref['threshold']:.2f} (95% of the hard best)"
    before.append(("soft converges faster", -1, _censored, what, 1, REFERENCE))
    rise = itemgetter("hard_ce_rise")
    after = [("soft shows less of it", -1, rise, "rise of val/hard_ce after its minimum", 4, REFERENCE)]
    for name, c in ((TYPE_NAMES.get(c, c), c) for c in COLUMNS if c != "all"):
        after.append((f"soft gains on {name}", +1, itemgetter(c), f"{name} accuracy (points)", 2, REFERENCE))
    return before, after


def _soft_minus(runs, model, claim, side, stat, what, digits, other) -> dict:
    """The claim that soft_ce - `other` of `stat` lies on `side` of 0, paired by seed."""
    d = paired(runs, model, SOFT, other, stat)
    return _claim(model, claim, side_test(d, side), (f"{SOFT} - {other} {what}", d, digits))


def _discrepancy(runs: list[dict], model: str, arm: str) -> dict:
    """Claim 3 for one arm: its gap and rise over seeds, not paired."""
    rs = [s for s in runs if s["model"] == model and s["loss"] == arm]
    gap, rise = mean_interval(s["gap"] for s in rs), mean_interval(s["loss_rise"] for s in rs)
    test = discrepancy_test(gap, rise)
    gap_what, rise_what = "best-accuracy epoch - lowest-val-loss epoch", "val-loss rise after its minimum"
    claim = f"{arm} shows the loss-accuracy discrepancy"
    return _claim(model, claim, test, (gap_what, gap, 1), (rise_what, rise, 4))


def verdicts(summary: dict) -> tuple[list[dict], dict]:
    """Every claim of CLAIMS_NOTE for each model of a compare() summary, in that order, decided as one
    Holm family; and the family (decide)."""
    runs, out = summary["runs"], []
    for model, ref in summary["references"].items():
        arms = [g["loss"] for g in summary["groups"] if g["model"] == model]
        if REFERENCE in arms and SOFT in arms:
            before, after = _soft_claims(ref, arms)
        else:
            before, after = [], []
            out.append(_claim(model, "soft vs hard (claims 1, 2, 4)", (None, 0)) | {"verdict": NOT_PAIRED})
        out += [_soft_minus(runs, model, *c) for c in before]
        out += [_discrepancy(runs, model, arm) for arm in arms]
        out += [_soft_minus(runs, model, *c) for c in after]
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
        why = (
            "; ".join([*map(_estimate, c["estimates"]), _decision(c)])
            if c["estimates"]
            else ("needs soft_ce and hard_ce runs")
        )
        lines.append(f"{c['model'].upper()}: {c['claim']}: {c['verdict']} ({why})")
    return lines


def family_line(family: dict) -> str:
    """What the verdicts' correction was: the family size and the corrected levels."""
    m, alpha = family["size"], family["alpha"]
    if not m:
        return "No claim has a p-value (each needs 2 seeds), so none is decided."
    return (
        f"Holm-Bonferroni over the {m} claims with a p-value, family-wise level {alpha:g}: the k-th "
        f"smallest p is held to {alpha:g} / ({m} - k + 1), from {alpha / m:.4f} up to {alpha:g}; a claim "
        f"is decided when its Holm-adjusted p < {alpha:g}. Intervals: unadjusted 95% t, over seeds."
    )

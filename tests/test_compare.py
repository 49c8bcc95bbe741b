"""`vqa compare` on hand-made run folders whose every statistic is computed by hand below."""

import csv
import json
import math

import pytest
import yaml

from vqa.cli import main
from vqa.report.runs import Run, is_complete, stopped_early
from vqa.report.stats import describe, paired_difference, pearson, t_cdf, t_quantile

T2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # t quantile 0.975, 2 degrees of freedom, closed form


def p_df1(t):  # two-sided p of a t statistic with 1 degree of freedom (the Cauchy CDF), closed form
    return 1 - 2 / math.pi * math.atan(abs(t))


def p_df2(t):  # two-sided p with 2 degrees of freedom: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    return 1 - abs(t) / math.sqrt(2 + t * t)


def p_df3(t):  # two-sided p with 3 degrees of freedom, closed form
    x = abs(t) / math.sqrt(3)
    return 1 - 2 / math.pi * (x / (1 + x * x) + math.atan(x))


NAN = float("nan")


def row(epoch, acc, *, val_loss=None, yes_no=None, number=None, other=None):
    """One metrics.jsonl row. ECE and entropy are functions of the epoch so 'at the best epoch' shows."""
    return {
        "epoch": epoch, "step": 10 * epoch, "train/loss": 6.0 - 0.5 * epoch,
        "val/loss": 5.0 - acc / 10 if val_loss is None else val_loss, "val/hard_ce": 1.0, "val/soft_ce": 1.0,
        "val/accuracy": acc, "val/accuracy_yes_no": acc + 20 if yes_no is None else yes_no,
        "val/accuracy_number": acc - 20 if number is None else number,
        "val/accuracy_other": acc - 5 if other is None else other,
        "val/ece": epoch / 100, "val/entropy": epoch / 2, "lr": 1e-3, "throughput/samples_per_s": 100.0,
        "seconds": 1.0,
    }  # fmt: skip


def make_run(root, model, loss, seed, rows, *, epochs=None, data_root="data/synthetic/small", name=None, data=(),
             **train):  # fmt: skip
    path = root / (name or f"{model}_{loss}_s{seed}")
    path.mkdir(parents=True)
    config = {
        "name": path.name, "out_dir": str(root),
        "data": {"root": data_root, "train_split": "train2014", "val_split": "val2014", **dict(data)},
        "model": {"name": model, "hidden_dim": 64},
        "train": {"loss": loss, "seed": seed, "epochs": epochs or len(rows), "lr": 1e-3,
                  "early_stop_patience": 0, **train},
    }  # fmt: skip
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def curve(accs, **kw):
    return [row(e, a, **kw) for e, a in enumerate(accs, 1)]


def soft(accs):  # soft_ce runs: Num is accuracy - 25 (hard: - 20) so the Num difference is negative
    return [row(e, a, number=a - 25) for e, a in enumerate(accs, 1)]


@pytest.fixture
def runs(tmp_path):
    """AVG: 3 seeds of hard_ce and soft_ce, 1 of kl, an incomplete hard_ce; POOL: the discrepancy."""
    r = tmp_path / "runs"
    hard0 = curve([30, 38, 40, 39])
    hard0[3]["val/accuracy_yes_no"] = 90.0  # a better Y/N at another epoch: not the best-All row
    paths = [
        make_run(r, "avg", "hard_ce", 0, hard0),  # best 40 at epoch 3
        make_run(r, "avg", "hard_ce", 1, curve([35, 42, 41, 41])),  # best 42 at 2
        make_run(r, "avg", "hard_ce", 2, curve([20, 30, 39, 44])),  # best 44 at 4
        make_run(r, "avg", "soft_ce", 0, soft([40, 43, 42, 42])),  # best 43 at 2
        make_run(r, "avg", "soft_ce", 1, soft([41, 44, 43, 43])),  # best 44 at 2
        make_run(r, "avg", "soft_ce", 2, soft([38, 48, 47, 46])),  # best 48 at 2
        make_run(r, "avg", "kl", 0, curve([10, 20, 30, 35])),  # never reaches the threshold
        make_run(r, "avg", "hard_ce", 3, curve([50, 60]), epochs=4),  # incomplete: 2 of 4 epochs
        make_run(r, "pool", "hard_ce", 0, curve([10, 20, 30, 40, 50], val_loss=None)),
        make_run(r, "pool", "soft_ce", 0, curve([10, 20, 30, 40, 50])),
        make_run(r, "pool", "soft_ce", 1, curve([10, 20, 30, 40, 50])),
    ]
    # POOL val losses: r = -2/sqrt(7) with the lowest loss at epoch 3; NaN-safe r = -1; < 3 finite: NaN
    for path, losses in zip(paths[8:], ([3, 2, 1, 2, 1], [5, None, 3, 2, 1], [None, None, None, 2, 1])):
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        for rw, v in zip(rows, losses):
            rw["val/loss"] = v
        (path / "metrics.jsonl").write_text("".join(json.dumps(rw) + "\n" for rw in rows))
    return paths


def run_compare(capsys, paths, out, *extra):
    code = main(["compare", *map(str, paths), "--out", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def group(summary, model, loss):
    (g,) = [g for g in summary["groups"] if (g["model"], g["loss"]) == (model, loss)]
    return g


def difference(summary, model, loss):
    (d,) = [d for d in summary["differences"] if (d["model"], d["loss"]) == (model, loss)]
    return d


def test_table_mean_std_and_paired_difference(runs, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, _ = run_compare(capsys, runs, out)
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    hard, soft_ = group(s, "avg", "hard_ce"), group(s, "avg", "soft_ce")
    assert hard["n"] == 3 and hard["seeds"] == [0, 1, 2]  # the incomplete seed 3 is left out
    assert hard["all"] == pytest.approx({"n": 3, "mean": 42.0, "std": 2.0})
    assert hard["yes_no"]["mean"] == pytest.approx(62.0)  # from the best-All rows: 60, 62, 64 (not 90)
    assert soft_["all"] == pytest.approx({"n": 3, "mean": 45.0, "std": math.sqrt(7)})
    assert soft_["number"] == pytest.approx({"n": 3, "mean": 20.0, "std": math.sqrt(7)})
    d = difference(s, "avg", "soft_ce")
    assert d["n"] == 3 and d["minus"] == "hard_ce" and d["unpaired_seeds"] == []
    half = T2 * 1.0 / math.sqrt(3)  # differences 3, 2, 4: mean 3, std 1
    assert d["all"] == pytest.approx(
        {
            "n": 3,
            "mean": 3.0,
            "std": 1.0,
            "ci_low": 3 - half,
            "ci_high": 3 + half,
            "t": T2,
            "p": p_df2(3 * 3**0.5),
        }
    )
    assert d["number"]["mean"] == pytest.approx(-2.0) and d["number"]["ci_high"] == pytest.approx(-2 + half)
    kl = difference(s, "avg", "kl")  # one pair: no interval
    assert kl["n"] == 1 and kl["all"]["mean"] == pytest.approx(-5.0) and kl["all"]["ci_low"] is None
    pool = difference(s, "pool", "soft_ce")
    assert pool["n"] == 1 and pool["seeds"] == [0] and pool["unpaired_seeds"] == [1]

    table = (out / "table.md").read_text()
    assert table in stdout
    lines = table.splitlines()
    assert lines[0] == "| Model | Loss | n | All | Y/N | Num | Other |"
    assert lines[2:6] == [
        "| AVG | hard_ce | 3 | 42.00 ± 2.00 | 62.00 ± 2.00 | 22.00 ± 2.00 | 37.00 ± 2.00 |",
        "| AVG | soft_ce | 3 | 45.00 ± 2.65 | 65.00 ± 2.65 | 20.00 ± 2.65 | 40.00 ± 2.65 |",
        "| AVG | soft_ce - hard_ce | 3 | +3.00 [+0.52, +5.48] | +3.00 [+0.52, +5.48] | -2.00 [-4.48, +0.48] "
        "| +3.00 [+0.52, +5.48] |",
        "| AVG | kl | 1 | 35.00 | 55.00 | 15.00 | 30.00 |",
    ]
    assert (
        lines[6]
        == "| AVG | kl - hard_ce | 1 | -5.00 [CI n/a] | -5.00 [CI n/a] | -5.00 [CI n/a] | -5.00 [CI n/a] |"
    )

    with open(out / "table.csv") as f:
        rows = {(r["model"], r["loss"], r["row"]): r for r in csv.DictReader(f)}
    diff = rows["avg", "soft_ce", "minus_hard_ce"]
    assert float(diff["all_mean"]) == 3.0 and float(diff["all_std"]) == 1.0
    assert float(diff["all_ci_low"]) == pytest.approx(3 - half, abs=1e-6)
    assert rows["avg", "hard_ce", "mean"]["all_ci_low"] == ""  # no interval on a mean row
    assert rows["avg", "kl", "minus_hard_ce"]["all_ci_low"] == ""  # one pair
    assert rows["avg", "kl", "mean"]["all_std"] == ""
    assert "incomplete" in stdout and "avg_hard_ce_s3" in stdout


def test_convergence_and_budgets(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_compare(capsys, runs, out)[0] == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["budgets"] == [1, 2, 5]  # those of 1, 2, 5, 10, ... that some run reaches (POOL: 5 epochs)
    assert s["references"]["avg"]["threshold"] == pytest.approx(0.95 * 42)  # 39.9
    per_run = {r["name"]: r for r in s["runs"]}
    assert [per_run[f"avg_hard_ce_s{i}"]["epoch_to_threshold"] for i in range(3)] == [3, 2, 4]
    assert [per_run[f"avg_soft_ce_s{i}"]["epoch_to_threshold"] for i in range(3)] == [1, 1, 2]
    assert per_run["avg_kl_s0"]["epoch_to_threshold"] is None
    hard, soft_, kl = (group(s, "avg", loss) for loss in ("hard_ce", "soft_ce", "kl"))
    assert hard["epoch_to_threshold"] == pytest.approx({"n": 3, "mean": 3.0, "std": 1.0})
    assert soft_["epoch_to_threshold"] == pytest.approx({"n": 3, "mean": 4 / 3, "std": math.sqrt(1 / 3)})
    assert (hard["reached"], kl["reached"], kl["epoch_to_threshold"]["n"]) == (3, 0, 0)
    assert hard["accuracy_at"]["1"] == pytest.approx({"n": 3, "mean": 85 / 3, "std": math.sqrt(175 / 3)})
    assert hard["accuracy_at"]["2"]["mean"] == pytest.approx(110 / 3)
    assert hard["accuracy_at"]["last"]["mean"] == pytest.approx(124 / 3)
    report = (out / "report.md").read_text()
    assert hard["accuracy_at"]["5"] == {"n": 0, "mean": None, "std": None}  # AVG runs have 4 epochs
    assert "| AVG | kl | 1 | 0/1 | n/a | 10.00 | 20.00 | n/a | 35.00 |" in report
    assert "| avg_kl_s0 | avg | kl | 0 | 4/4 | 4 | 35.00 | never |" in report


def test_discrepancy_and_calibration(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_compare(capsys, runs, out)[0] == 0
    s = json.loads((out / "summary.json").read_text())
    per_run = {r["name"]: r for r in s["runs"]}
    pool0 = per_run["pool_hard_ce_s0"]
    assert pool0["pearson_loss_accuracy"] == pytest.approx(-2 / math.sqrt(7))
    assert (pool0["best_loss_epoch"], pool0["best_epoch"]) == (3, 5)  # the first of two equal minima
    assert per_run["pool_soft_ce_s0"]["pearson_loss_accuracy"] == pytest.approx(-1.0)  # the NaN epoch skipped
    assert per_run["pool_soft_ce_s0"]["best_loss_epoch"] == 5
    assert per_run["pool_soft_ce_s1"]["pearson_loss_accuracy"] is None  # 2 finite epochs: undefined
    pool_soft = group(s, "pool", "soft_ce")
    assert pool_soft["pearson_loss_accuracy"] == pytest.approx({"n": 1, "mean": -1.0, "std": None})
    assert "| POOL | soft_ce | 2 | -1.000 (n=1) | 5.0 ± 0.0 | 5.0 ± 0.0 |" in (out / "report.md").read_text()
    hard, soft_ = group(s, "avg", "hard_ce"), group(s, "avg", "soft_ce")
    assert hard["best_epoch"] == pytest.approx({"n": 3, "mean": 3.0, "std": 1.0})
    assert hard["ece"] == pytest.approx({"n": 3, "mean": 0.03, "std": 0.01})  # ECE at epochs 3, 2, 4
    assert hard["entropy"] == pytest.approx({"n": 3, "mean": 1.5, "std": 0.5})
    assert soft_["ece"] == pytest.approx({"n": 3, "mean": 0.02, "std": 0.0})
    assert soft_["pearson_loss_accuracy"] == pytest.approx({"n": 3, "mean": -1.0, "std": 0.0}, abs=1e-12)


def test_files_and_figures(runs, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, _ = run_compare(capsys, runs, out)
    assert code == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        "table.md",
        "table.csv",
        "report.md",
        "summary.json",
        "figure_avg.png",
        "figure_pool.png",
        "discrepancy.png",
    }
    for name in ("figure_avg.png", "figure_pool.png", "discrepancy.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert "discrepancy.png" in stdout
    report = (out / "report.md").read_text()
    for section in ("Table 1", "Convergence", "Loss-accuracy discrepancy", "Calibration", "Incomplete runs"):
        assert f"## {section}" in report or section in report
    assert "left out" in report


def test_allow_incomplete(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_compare(capsys, runs, out, "--allow-incomplete")[0] == 0
    s = json.loads((out / "summary.json").read_text())
    hard = group(s, "avg", "hard_ce")
    assert hard["n"] == 4 and hard["all"]["mean"] == pytest.approx((40 + 42 + 44 + 60) / 4)
    assert s["incomplete"] == [
        {"path": str(runs[7]), "epochs_done": 2, "epochs_planned": 4, "included": True}
    ]
    assert difference(s, "avg", "soft_ce")["unpaired_seeds"] == [3]


def test_pairing_warning(tmp_path, capsys):
    a = make_run(tmp_path, "avg", "hard_ce", 0, curve([1, 2, 3]))
    b = make_run(tmp_path, "avg", "soft_ce", 0, curve([1, 2, 3]), lr=3e-3)
    code, stdout, _ = run_compare(capsys, [a, b], tmp_path / "out")
    assert code == 0
    assert f"warning: {b} differs from {a} in train.lr (train.lr: 0.003 vs 0.001)" in stdout


def check_error(capsys, paths, out, *needles, extra=()):
    code, _, err = run_compare(capsys, paths, out, *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    assert not out.exists()  # nothing written


def test_bad_input_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    good = make_run(tmp_path / "a", "avg", "hard_ce", 0, curve([1, 2, 3]))
    empty = tmp_path / "empty"
    empty.mkdir()
    check_error(capsys, [good, empty], out, empty, "config.yaml")
    no_metrics = make_run(tmp_path / "b", "avg", "soft_ce", 0, curve([1]))
    (no_metrics / "metrics.jsonl").unlink()
    check_error(capsys, [good, no_metrics], out, no_metrics, "metrics.jsonl")
    blank = make_run(tmp_path / "c", "avg", "soft_ce", 0, [], epochs=3)
    check_error(capsys, [good, blank], out, blank / "metrics.jsonl", "empty")
    broken = make_run(tmp_path / "d", "avg", "soft_ce", 0, curve([1, 2]))
    (broken / "metrics.jsonl").write_text((broken / "metrics.jsonl").read_text()[:-10] + "\n")
    check_error(capsys, [good, broken], out, broken / "metrics.jsonl", "line 2", "not valid JSON")
    bare_nan = make_run(tmp_path / "f", "avg", "soft_ce", 0, curve([1, 2]))
    (bare_nan / "metrics.jsonl").write_text(json.dumps(curve([1, 2])[0] | {"val/loss": NAN}) + "\n")
    check_error(capsys, [good, bare_nan], out, bare_nan / "metrics.jsonl", "line 1", "not valid JSON")
    other_data = make_run(tmp_path / "e", "avg", "soft_ce", 0, curve([1, 2, 3]), data_root="data/vqa2")
    check_error(capsys, [good, other_data], out, other_data, "data/vqa2", "one dataset")
    twin = make_run(tmp_path / "f", "avg", "hard_ce", 0, curve([1, 2, 3]))
    check_error(capsys, [good, twin], out, twin, good, "seed 0")
    unfinished = make_run(tmp_path / "g", "avg", "soft_ce", 0, curve([1]), epochs=3)
    check_error(capsys, [unfinished], out, unfinished, "--allow-incomplete")
    check_error(capsys, [good], out, "--budgets", extra=("--budgets", "1,x"))
    check_error(capsys, [tmp_path / "nope"], out, tmp_path / "nope", "not a folder")


def test_t_quantile():
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-10)  # Cauchy
    assert t_quantile(0.975, 2) == pytest.approx(T2, rel=1e-10)
    # published two-sided 95% / 99% critical values
    for df, p, value in ((3, 0.975, 3.182446305284263), (10, 0.975, 2.228138851986274),
                         (30, 0.975, 2.042272456301238), (100, 0.975, 1.983971518449634),
                         (5, 0.995, 4.032142983557536)):  # fmt: skip
        assert t_quantile(p, df) == pytest.approx(value, rel=1e-9), df
    assert t_quantile(0.975, 10**7) == pytest.approx(1.959963984540054, rel=1e-6)  # the normal's
    assert t_quantile(0.025, 4) == pytest.approx(-t_quantile(0.975, 4))
    assert t_cdf(t_quantile(0.9, 7), 7) == pytest.approx(0.9, abs=1e-12)


def test_small_statistics():
    assert describe([1.0, NAN, None, 3.0]) == {"n": 2, "mean": 2.0, "std": math.sqrt(2)}
    assert describe([]) == {"n": 0, "mean": None, "std": None}
    assert paired_difference([2.5])["ci_low"] is None
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert math.isnan(pearson([1, 2, 3], [5, 5, 5])) and math.isnan(pearson([1, 2], [2, 1]))


def test_best_row_and_completeness():
    rows = curve([10, 30, 30, 20, 25])
    run = Run(path=None, config={"train.epochs": 5}, rows=rows)
    assert run.best_row["epoch"] == 2  # ties: the first, as training keeps the first (strict '>')
    assert not stopped_early(rows, 0) and not stopped_early(rows, 4) and stopped_early(rows, 3)
    assert is_complete(rows[:3], 3) and not is_complete(rows[:3], 5)
    assert is_complete(rows[:4], 10, patience=2) and not is_complete(rows[:4], 10, patience=3)
    assert not is_complete([], 1)


# --- the claims' verdicts (vqa/report/claims.py), the loss rise, agreement buckets, null metrics ---

T2_HALF = T2 / math.sqrt(3)  # half-width of a 3-seed interval per unit of std
FALLS = [3.0, 2.5, 2.0, 1.9, 1.8, 1.7]  # val loss lowest at the last epoch: gap 5 - 6 = -1, rise 0


def turns_up(seed):  # lowest at epoch 3, then up: gap 5 - 3 = 2, rise 0.3 + 0.1 * seed
    return [3.0, 2.0, 1.5, 1.6, 1.7, 1.8 + 0.1 * seed]


def claim_run(root, model, loss, seed, best, reach, val_loss, hard_ce=None, **kw):
    """6 epochs, the best accuracy `best` at epoch 5; the AVG threshold 0.95 * 61 = 57.95 is first
    reached at epoch `reach` (40 before, 58 from then); Y/N, Num, Other = All + 20, - 20, - 5."""
    accs = [40.0 if e < reach else 58.0 for e in range(1, 5)] + [best, best - 0.5]
    rows = curve(accs)
    for r, v, h in zip(rows, val_loss, hard_ce or val_loss):
        r["val/loss"], r["val/hard_ce"] = v, h
    return make_run(root, model, loss, seed, rows, **kw)


@pytest.fixture
def claim_runs(tmp_path):
    """Three models with 3 seeds of hard_ce and soft_ce, hard bests 60, 61, 62 (threshold 57.95) and
    hard runs reaching it at epoch 3. AVG's effects point to the claims, POOL's against, MCB's nowhere.

    soft - hard best (= each type's difference): AVG 3, 3, 3; POOL -1.5, -1.5, -1.5; MCB 3, -1, 1.
    soft - hard epochs to the threshold: AVG -2, -2, -1; POOL 2, 2, 1; MCB -1, 1, 0.
    hard val loss: AVG turns up (gap 2, rises 0.3, 0.4, 0.5), POOL falls (gap -1, rise 0), MCB mixed
    (gaps 2, -1, 1; rises 0.3, 0, 0.1). soft val/hard_ce rise minus hard's: AVG -0.3, -0.4, -0.5;
    POOL 0.3, 0.4, 0.5; MCB 0.1, 0, -0.1.
    """
    r = tmp_path / "runs"
    mcb_hard = [turns_up(0), FALLS, [3.0, 2.0, 1.9, 1.5, 1.55, 1.6]]
    mcb_soft = [turns_up(1), FALLS, FALLS]
    spec = {  # model: (soft - hard best, soft reach, hard val loss of seed s, soft val loss of seed s)
        "avg": ([3, 3, 3], [1, 1, 2], turns_up, lambda s: FALLS),
        "pool": ([-1.5, -1.5, -1.5], [5, 5, 4], lambda s: FALLS, turns_up),
        "mcb": ([3, -1, 1], [2, 4, 3], mcb_hard.__getitem__, mcb_soft.__getitem__),
    }
    for model, (gain, reach, hard_loss, soft_loss) in spec.items():
        for s in range(3):
            claim_run(r, model, "hard_ce", s, 60 + s, 3, hard_loss(s))
            claim_run(
                r,
                model,
                "soft_ce",
                s,
                60 + s + gain[s],
                reach[s],
                [v + 1 for v in soft_loss(s)],
                hard_ce=soft_loss(s),
            )  # fmt: skip  (own loss on another scale: the rise is the same)
    return sorted(r.iterdir())


def verdicts_of(summary, model):
    return {c["claim"]: c["verdict"] for c in summary["claims"] if c["model"] == model}


CLAIMS = ["soft beats hard on All", "soft converges faster", "hard_ce shows the loss-accuracy discrepancy",
          "soft_ce shows the loss-accuracy discrepancy", "soft shows less of it", "soft gains on Y/N",
          "soft gains on Num", "soft gains on Other"]  # fmt: skip
# raw p-values of the fixture, hand-worked with 2 degrees of freedom: a constant difference has p 0;
# rises (or differences) 0.3, 0.4, 0.5: t = 0.4 / (0.1 / sqrt 3); epochs -2, -2, -1: t = -5
P_RISE, P_EPOCHS = p_df2(0.4 / (0.1 / 3**0.5)), p_df2(5.0)


def test_claim_verdicts(claim_runs, tmp_path, capsys):
    """Holm over the report's 22 tested claims (24 less the two whose loss never rose): the 8 with p 0
    pass (0 < 0.05 / 22); the 9th smallest, P_RISE = 0.0202, fails 0.05 / 14, so every later claim is
    undecided, even AVG's faster convergence, whose raw p 0.038 and interval [-3.10, -0.23] exclude 0."""
    out = tmp_path / "report"
    code, stdout, _ = run_compare(capsys, claim_runs, out)
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert [c["claim"] for c in s["claims"] if c["model"] == "avg"] == CLAIMS
    avg, pool, mcb = (verdicts_of(s, m) for m in ("avg", "pool", "mcb"))
    decided = {"soft beats hard on All", "soft gains on Y/N", "soft gains on Num", "soft gains on Other"}
    soft_disc, hard_disc = CLAIMS[3], CLAIMS[2]  # soft's own loss falls in AVG, hard's in POOL
    assert avg == {k: "confirmed" if k in decided else "undecided" for k in CLAIMS} | {soft_disc: "refuted"}
    assert pool == {k: "refuted" if k in decided else "undecided" for k in CLAIMS} | {hard_disc: "refuted"}
    assert mcb == {k: "undecided" for k in CLAIMS}
    assert s["claims_family"] == pytest.approx(
        {"method": "holm", "size": 22, "alpha": 0.05, "smallest_level": 0.05 / 22}
    )

    (all_, faster, disc) = [c for c in s["claims"] if c["model"] == "avg"][:3]
    assert all_["estimates"][0] == pytest.approx(
        {
            "what": "soft_ce - hard_ce best accuracy (points)",
            "digits": 2,
            "n": 3,
            "mean": 3.0,
            "std": 0.0,
            "ci_low": 3.0,
            "ci_high": 3.0,
            "t": T2,
            "p": 0.0,
        }  # fmt: skip
    )
    assert (all_["p"], all_["p_holm"]) == (0.0, 0.0)
    f = faster["estimates"][0]
    assert f["mean"] == pytest.approx(-5 / 3) and f["ci_high"] == pytest.approx(-5 / 3 + T2_HALF / 3**0.5)
    assert f["ci_high"] < 0 and f["p"] == pytest.approx(P_EPOCHS) and P_EPOCHS < 0.05
    # 13th and 14th smallest (AVG's and POOL's faster): max(14 P_RISE, 10 P_EPOCHS, 9 P_EPOCHS)
    assert faster["p_holm"] == pytest.approx(10 * P_EPOCHS)
    gap, rise = disc["estimates"]
    assert (gap["mean"], gap["ci_low"], gap["ci_high"], gap["p"]) == (2.0, 2.0, 2.0, 0.0)  # 2 in every seed
    assert rise["mean"] == pytest.approx(0.4) and rise["ci_low"] == pytest.approx(0.4 - 0.1 * T2_HALF)
    assert disc["p"] == pytest.approx(P_RISE) and disc["p_holm"] == pytest.approx(14 * P_RISE)  # max(p's)
    mcb_disc = [c for c in s["claims"] if c["model"] == "mcb"][2]["estimates"]
    assert mcb_disc[0]["mean"] == pytest.approx(2 / 3) and mcb_disc[1]["mean"] == pytest.approx(0.4 / 3)

    line = (
        "AVG: soft beats hard on All: confirmed (soft_ce - hard_ce best accuracy (points) +3.00 "
        "[+3.00, +3.00], n=3, p<0.001; Holm p<0.001)"
    )
    assert f"  {line}\n" in stdout and f"- {line}\n" in (out / "report.md").read_text()
    assert (
        "AVG: soft converges faster: undecided (soft_ce - hard_ce epochs to 57.95 (95% of the hard best) "
        f"-1.7 [-3.1, -0.2], n=3, p={P_EPOCHS:.3f}; Holm p={10 * P_EPOCHS:.3f})" in stdout
    )
    assert (
        "POOL: hard_ce shows the loss-accuracy discrepancy: refuted (best-accuracy epoch - lowest-val-loss "
        "epoch -1.0 [-1.0, -1.0], n=3, p<0.001; val-loss rise after its minimum +0.0000 [+0.0000, +0.0000], "
        "n=3, p=1.000; no seed's val loss rose after its minimum: refuted as observed, not tested)" in stdout
    )
    family = (
        "Holm-Bonferroni over the 22 claims with a p-value, family-wise level 0.05: the k-th smallest p is "
        "held to 0.05 / (22 - k + 1), from 0.0023 up to 0.05; a claim is decided when its Holm-adjusted "
        "p < 0.05. Intervals: unadjusted 95% t, over seeds."
    )
    assert f"  {family}\n" in stdout and f"\n{family}\n" in (out / "report.md").read_text()


def test_claims_with_controls_and_without_a_pair(claim_runs, tmp_path, capsys):
    """A control arm adds 'soft beats <arm> on All'; a model without soft_ce says the paired claims are n/a."""
    r = tmp_path / "runs"
    for s in range(3):  # soft - shuffled: 1.5 in every seed (the shuffled arm: soft_ce on shuffled targets)
        claim_run(r, "avg", "soft_ce", s, 60 + s + 3 - 1.5, 3, FALLS,
                  name=f"avg_shuffled_s{s}", data={"soft_target": "shuffled"})  # fmt: skip
    make_run(r, "updn", "hard_ce", 0, curve([1, 2, 3]))
    paths = sorted(r.iterdir())
    code, stdout, _ = run_compare(capsys, paths, tmp_path / "out")
    assert code == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    avg = verdicts_of(s, "avg")
    assert avg["soft beats shuffled on All"] == "confirmed"  # 1.5 [1.5, 1.5], p 0
    assert avg["shuffled shows the loss-accuracy discrepancy"] == "refuted"  # its loss falls: no rise
    assert s["claims_family"]["size"] == 23  # one more tested (soft - shuffled); none for UPDN's one seed
    assert group(s, "avg", "shuffled")["runs"] == [f"avg_shuffled_s{i}" for i in range(3)]
    assert verdicts_of(s, "updn") == {
        "soft vs hard (claims 1, 2, 4)": "n/a",
        "hard_ce shows the loss-accuracy discrepancy": "undecided",
    }
    assert "UPDN: soft vs hard (claims 1, 2, 4): n/a (needs soft_ce and hard_ce runs)" in stdout
    assert "UPDN: hard_ce shows the loss-accuracy discrepancy: undecided (" in stdout
    assert "n=1, p n/a; not tested (needs 2 seeds)" in stdout


def test_loss_rise_gap_and_null_metrics(tmp_path, capsys):
    """Hand-worked: val loss 3, 2, 1.5, 1.6, null, 1.8 is lowest at epoch 3 and has risen 1.8 - 1.5 = 0.3
    by the last epoch; accuracy peaks at epoch 4: gap 1. null (strict JSON's missing) is skipped."""
    rows = curve([10, 20, 30, 40, 35, 38])
    for r, v, h in zip(rows, [3.0, 2.0, 1.5, 1.6, None, 1.8], [2.0, 1.0, 1.1, 1.25, 1.2, None]):
        r["val/loss"], r["val/hard_ce"], r["val/accuracy_number"] = v, h, None
    rows[4]["val/accuracy"] = None  # no accuracy at epoch 5: never the best
    a = make_run(tmp_path, "avg", "hard_ce", 0, rows)
    b = make_run(tmp_path, "avg", "hard_ce", 1, curve([10, 20, 30, 40, 35, 38], val_loss=1.0))
    code, stdout, _ = run_compare(capsys, [a, b], tmp_path / "out")
    assert code == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    r0, r1 = s["runs"]
    assert (r0["best_loss_epoch"], r0["best_epoch"], r0["gap"]) == (3, 4, 1)
    assert r0["loss_rise"] == pytest.approx(0.3) and r0["hard_ce_rise"] == pytest.approx(0.2)  # 1.2 - 1.0
    assert r0["number"] is None  # null read as missing
    assert (r1["best_loss_epoch"], r1["gap"], r1["loss_rise"]) == (1, 3, 0.0)  # a flat loss: first epoch
    g = group(s, "avg", "hard_ce")
    t1 = math.tan(math.pi * 0.475)  # t quantile 0.975, 1 degree of freedom; std sqrt(2) / sqrt(2 seeds) = 1
    assert g["intervals"]["gap"] == pytest.approx(  # gaps 1, 3
        {
            "n": 2,
            "mean": 2.0,
            "std": math.sqrt(2),
            "ci_low": 2 - t1,
            "ci_high": 2 + t1,
            "t": t1,
            "p": p_df1(2),
        }
    )
    assert g["intervals"]["loss_rise"]["mean"] == pytest.approx(0.15)  # rises 0.3, 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"| AVG | hard_ce | 2 | 40.00 [40.00, 40.00] | 2.0 [{2 - t1:.1f}, {2 + t1:.1f}] |" in report
    assert "| avg_hard_ce_s0 | avg | hard_ce | 0 | 6/6 | 4 | 40.00 | 4 | " in report
    assert "| 3 | 0.3000 | 0.2000 |" in report


def test_stopped_early_reads_null_as_missing():
    rows = curve([10, 30, 20, 20])
    rows[1]["val/accuracy"] = None  # epoch 2 has no accuracy: the best is epoch 3's 20
    assert not stopped_early(rows, 2) and stopped_early(rows, 1)


def test_agreement_buckets(tmp_path, capsys):
    """soft - hard per bucket at each run's best-All epoch; a bucket a run did not log is missing there."""
    paths = []
    for loss, accs, hi, lo in (("hard_ce", [30, 40, 35], [80, 90, 85], [20, 25, 22]),
                               ("soft_ce", [30, 41, 36], [81, 92, 85], [20, 28, 22])):  # fmt: skip
        for seed, shift in ((0, 0), (1, 1)):
            rows = curve([a + shift for a in accs])
            for r, h, lw in zip(rows, hi, lo):
                r["val/accuracy_agree_high"], r["val/accuracy_agree_low"] = (
                    h + shift,
                    lw + 2 * shift * (loss == "soft_ce"),
                )
            paths.append(make_run(tmp_path / "runs", "avg", loss, seed, rows))
    code, stdout, _ = run_compare(capsys, paths, tmp_path / "out")
    assert code == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["buckets"] == ["high", "low"]
    assert group(s, "avg", "hard_ce")["buckets"]["high"] == pytest.approx(
        {"n": 2, "mean": 90.5, "std": math.sqrt(0.5)}
    )
    d = difference(s, "avg", "soft_ce")["buckets"]
    t1 = math.tan(math.pi * 0.475)
    assert d["high"] == pytest.approx(
        {"n": 2, "mean": 2.0, "std": 0.0, "ci_low": 2.0, "ci_high": 2.0, "t": t1, "p": 0.0}  # no variance
    )
    assert d["low"]["mean"] == pytest.approx(4.0) and d["low"]["ci_low"] == pytest.approx(4 - t1)  # 3, 5
    assert d["low"]["p"] == pytest.approx(p_df1(4.0))  # t = 4 / (sqrt(2) / sqrt(2))
    table = stdout.split("| Model | Loss | n | high | low |")[1]
    assert "| AVG | soft_ce - hard_ce | 2 | +2.00 [+2.00, +2.00] | +4.00 [" in table
    assert (
        "## Agreement buckets\n\n| Model | Loss | n | high | low |"
        in (tmp_path / "out" / "report.md").read_text()
    )
    assert "no agreement buckets" not in stdout


def test_no_agreement_buckets_is_said(tmp_path, capsys):
    a = make_run(tmp_path, "avg", "hard_ce", 0, curve([1, 2, 3]))
    code, stdout, _ = run_compare(capsys, [a], tmp_path / "out")
    assert code == 0 and "no agreement buckets logged in these runs" in stdout

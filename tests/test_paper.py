"""`make paper`: the grid plan, skip / resume / start decisions, and one tiny end-to-end grid."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from vqa.cli import main
from vqa.config import dump_yaml, load_config
from vqa.errors import UserError
from vqa.report import paper, runs
from vqa.report.paper import action, parse_arm, plan
from vqa.report.runs import ARMS, Run, flatten

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "synthetic"


def jobs(tmp_path, losses=("hard_ce", "soft_ce"), seeds=2, epochs=2, extra=()):
    return plan(CONFIGS, ["avg"], list(losses), seeds, tmp_path / "runs", epochs, ["data.root=x", *extra])


def test_plan_names_configs_and_overrides(tmp_path):
    grid = jobs(tmp_path, losses=("hard_ce", "soft_ce", "kl"), extra=("train.lr=3e-3",))
    assert [j.name for j in grid] == [
        f"avg_{loss}_s{s}" for loss in ("hard_ce", "soft_ce", "kl") for s in (0, 1)
    ]
    kl = grid[-1]
    assert kl.config_file == CONFIGS / "avg_soft.yaml"  # other losses: the soft config, loss overridden
    assert (kl.cfg.train.loss, kl.cfg.train.seed, kl.cfg.train.epochs) == ("kl", 1, 2)
    assert (kl.cfg.train.lr, kl.cfg.data.root) == (3e-3, "x")
    assert kl.run_dir == tmp_path / "runs" / "avg_kl_s1" == kl.cfg.run_dir
    assert grid[0].config_file == CONFIGS / "avg_hard.yaml" and grid[0].cfg.train.loss == "hard_ce"


def test_plan_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="'bogus' is not one of .*soft_ce.* nor a named variant \\(shuffled"):
        jobs(tmp_path, losses=("bogus",))
    with pytest.raises(UserError, match="train.seed.*set by the grid"):
        jobs(tmp_path, extra=("train.seed=3",))
    with pytest.raises(UserError, match="data.soft_target.*set by the grid"):  # the arms set it
        jobs(tmp_path, extra=("data.soft_target=shuffled",))
    args = [
        "paper",
        "--config-dir",
        str(CONFIGS),
        "--models",
        "nope",
        "--runs-dir",
        str(tmp_path),
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope_hard.yaml" in err[0] and "not found" in err[0]


def test_arms_parse():
    """An arm is a loss name, or a named variant: a loss plus config values (runs.ARMS)."""
    from vqa.losses import LOSSES

    assert not set(ARMS) & set(LOSSES)  # a name means one thing
    assert parse_arm("shuffled", LOSSES) == ("soft_ce", ["data.soft_target=shuffled"])
    assert parse_arm("hard_ce", LOSSES) == ("hard_ce", []) and parse_arm("kl", LOSSES) == ("kl", [])
    with pytest.raises(UserError, match="'soft_ce:shuffled' is not one of"):
        parse_arm("soft_ce:shuffled", LOSSES)


def test_plan_arms_and_their_run_folders(tmp_path, monkeypatch):
    """A named variant trains the soft config with its values; `vqa compare` reads the arm back."""
    renorm = {"renorm": ("soft_ce", {"data.soft_targets_oov": "renormalize"})}  # a key every config has
    monkeypatch.setattr(paper, "ARMS", renorm)
    monkeypatch.setattr(runs, "ARMS", renorm)
    grid = jobs(tmp_path, losses=("hard_ce", "soft_ce", "renorm"), seeds=1)
    assert [j.name for j in grid] == ["avg_hard_ce_s0", "avg_soft_ce_s0", "avg_renorm_s0"]
    hard, soft, variant = grid
    assert variant.config_file == CONFIGS / "avg_soft.yaml" and variant.cfg.train.loss == "soft_ce"
    assert (variant.cfg.data.soft_targets_oov, soft.cfg.data.soft_targets_oov) == ("renormalize", "drop")
    arms = [Run(j.run_dir, flatten(yaml.safe_load(dump_yaml(j.cfg))), []).arm for j in grid]
    assert arms == ["hard_ce", "soft_ce", "renorm"]


def test_plan_shuffled_arm(tmp_path):
    from vqa.config import DataConfig

    if "soft_target" not in DataConfig.__dataclass_fields__:
        pytest.skip("data.soft_target is not a config key yet")
    (job,) = jobs(tmp_path, losses=("shuffled",), seeds=1)
    assert (job.name, job.cfg.train.loss, job.cfg.data.soft_target) == (
        "avg_shuffled_s0",
        "soft_ce",
        "shuffled",
    )
    assert Run(job.run_dir, flatten(yaml.safe_load(dump_yaml(job.cfg))), []).arm == "shuffled"


def write_run(job, epochs_done, *, planned=None, checkpoint=True, accs=None, **overrides):
    """A run folder as `vqa train` leaves it: config.yaml, metrics rows, checkpoints/last.pt (a stand-in)."""
    cfg = load_config(job.config_file, [*job.overrides, f"train.epochs={planned or job.cfg.train.epochs}"])
    for key, value in overrides.items():
        setattr(cfg.train, key, value)
    (job.run_dir / "checkpoints").mkdir(parents=True)
    (job.run_dir / "config.yaml").write_text(dump_yaml(cfg))
    accs = accs or [10.0 * e for e in range(1, epochs_done + 1)]
    rows = [
        {"epoch": e, "train/loss": 1.0, "val/loss": 1.0, "val/accuracy": a} for e, a in enumerate(accs, 1)
    ]
    (job.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if checkpoint:
        (job.run_dir / "checkpoints" / "last.pt").write_bytes(b"stand-in")


def test_skip_resume_start(tmp_path):
    grid = jobs(tmp_path, losses=("hard_ce", "soft_ce", "kl"), seeds=2, epochs=4,
                extra=("train.early_stop_patience=2",))  # fmt: skip
    a, b, c, d, e, f = grid
    assert action(a) == ("start", 0)  # no folder
    write_run(b, 4)
    assert action(b) == ("skip", 4)
    write_run(c, 2)
    assert action(c) == ("resume", 2)
    write_run(d, 2, planned=2)  # complete for 2 epochs; the grid now wants 4: extend it
    assert action(d) == ("resume", 2)
    write_run(e, 3, accs=[50, 40, 30])  # early stopping ended it: 2 epochs without a better accuracy
    assert action(e) == ("skip", 3)
    write_run(
        f, 0, checkpoint=False
    )  # killed before its first checkpoint: --resume starts it from its config
    assert action(f) == ("resume", 0)


def test_mismatched_run_folders_are_refused(tmp_path):
    a, b = jobs(tmp_path, seeds=2, epochs=2)[:2]
    write_run(a, 1, lr=0.5)
    with pytest.raises(
        UserError, match=r"avg_hard_ce_s0: holds a run with a different config \(train.lr: 0.5"
    ):
        action(a)
    write_run(b, 3, planned=3)
    with pytest.raises(UserError, match="avg_hard_ce_s1: has 3 epochs but the grid asks for 2"):
        action(b)


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    """Smaller than the `tiny` preset: 300 train / 100 val questions, 16-d features."""
    from vqa.synth.generate import generate

    root = tmp_path_factory.mktemp("micro")
    generate(root, seed=0, quiet=True, train_images=60, val_images=20, test_images=1, questions_per_image=5,
             grid_size=3, grid_dim=16, box_dim=16)  # fmt: skip
    return root


def make_paper(tmp_path, data, **variables):
    args = f"data.root={data} data.synth_preset= train.batch_size=32 train.lr=3e-3 model.embed_dim=16 "
    args += "model.rnn_dim=32 model.hidden_dim=32"
    variables = {"MODELS": "avg", "PAPER_RUNS": tmp_path / "runs", "OUT": tmp_path / "report", "ARGS": args,
                 **variables}  # fmt: skip
    # -o: never (re)install from a test; one thread per run: the machine is shared
    cmd = ["make", "-s", "-o", ".venv/.installed", "paper", *(f"{k}={v}" for k, v in variables.items())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_paper_end_to_end(tmp_path, micro_data):
    # an interrupted grid: one run has 1 epoch of the 2 the full grid asks for
    out = make_paper(tmp_path, micro_data, SEEDS=1, LOSSES="hard_ce", EPOCHS=1)
    assert "avg_hard_ce_s0: training 1 epochs" in out and "| AVG | hard_ce | 1 |" in out
    first = json.loads((tmp_path / "runs" / "avg_hard_ce_s0" / "metrics.jsonl").read_text().splitlines()[0])

    out = make_paper(tmp_path, micro_data, SEEDS=2, EPOCHS=2)
    assert "avg_hard_ce_s0: resuming after epoch 1 of 2" in out
    assert out.count("training 2 epochs") == 3
    assert "4 runs (3 trained, 1 resumed, 0 skipped)" in out and "wall time" in out
    rows = [json.loads(line) for line in (tmp_path / "runs" / "avg_hard_ce_s0" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0] == first
    assert rows[1]["step"] == 2 * rows[0]["step"]  # the resumed run continued, not restarted
    assert "| AVG | soft_ce - hard_ce | 2 |" in out

    out = make_paper(tmp_path, micro_data, SEEDS=2, EPOCHS=2)
    assert "4 runs (0 trained, 0 resumed, 4 skipped)" in out
    report = tmp_path / "report"
    assert {p.name for p in report.iterdir()} == {
        "table.md", "table.csv", "report.md", "summary.json", "figure_avg.png", "discrepancy.png"
    }  # fmt: skip
    summary = json.loads((report / "summary.json").read_text())
    assert [(g["loss"], g["n"]) for g in summary["groups"]] == [("hard_ce", 2), ("soft_ce", 2)]
    assert summary["incomplete"] == [] and summary["warnings"] == []

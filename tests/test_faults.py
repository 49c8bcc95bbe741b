"""Exact resume, graceful stop, kills at any moment, divergence: real runs on the tiny synthetic data."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import assert_same_metrics, metrics

from vqa.cli import main
from vqa.training.optim import lr_factor

CONFIG = "configs/synthetic/avg_soft.yaml"


def overrides(root, out, name, epochs=3, batch=32):
    return [f"data.root={root}", f"out_dir={out}", f"name={name}", f"train.epochs={epochs}",
            f"train.batch_size={batch}", "train.lr=3e-3", "model.rnn_dim=64", "model.hidden_dim=128",
            "train.lr_decay_epochs=[2]", "train.warmup_epochs=0.5", "train.log_every=5"]  # fmt: skip


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """An uninterrupted 3-epoch run (dropout on, warm-up and a decay step: every RNG and schedule in play)."""
    out = tmp_path_factory.mktemp("ref")
    assert main(["train", "--config", CONFIG, *overrides(tiny_data, out, "ref")]) == 0
    return out / "ref"


def spawn(args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "vqa", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def wait_for(predicate, proc, timeout=120.0):
    start = time.time()
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout, "timed out"
        time.sleep(0.02)


def resume(run: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "vqa", "train", "--resume", str(run)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_resume_after_epoch_one_equals_uninterrupted(reference, tiny_data, tmp_path):
    assert main(["train", "--config", CONFIG, *overrides(tiny_data, tmp_path, "r", epochs=1)]) == 0
    assert main(["train", "--resume", str(tmp_path / "r"), "train.epochs=3"]) == 0
    assert_same_metrics(reference, tmp_path / "r")


@pytest.mark.slow
def test_sigterm_mid_epoch_checkpoints_exits_zero_and_resumes_exactly(reference, tiny_data, tmp_path):
    run = tmp_path / "r"
    proc = spawn(["train", "--config", CONFIG, *overrides(tiny_data, tmp_path, "r")])
    wait_for(
        lambda: (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n") >= 1,
        proc,
    )
    time.sleep(0.3)  # into epoch 2
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert f"Resume with: vqa train --resume {run}" in stdout
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["epoch_state"]["batches"] > 0  # stopped inside epoch 2
    resume(run)
    assert_same_metrics(reference, run)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.25, 0.6])
def test_sigkill_at_any_moment_then_resume(reference, tiny_data, tmp_path, delay):
    run = tmp_path / "r"
    proc = spawn(["train", "--config", CONFIG, *overrides(tiny_data, tmp_path, "r")])
    wait_for(lambda: (run / "checkpoints" / "last.pt").exists(), proc)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # never torn
    resume(run)
    assert_same_metrics(reference, run)


SLOW_SECOND_CHECKPOINT = """
import os, sys, time, pathlib
import vqa.io
writes = []
real_fsync = os.fsync
def fsync(fd):
    name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
    if name.startswith(".last.pt.") and name.endswith(".tmp"):
        writes.append(fd)
        if len(writes) == 2:  # the second last.pt (end of epoch 2): flushed, not yet renamed
            pathlib.Path(sys.argv[1]).write_text("writing")
            time.sleep(60)
    real_fsync(fd)
vqa.io.os.fsync = fsync
from vqa.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_keeps_the_last_good_one(reference, tiny_data, tmp_path):
    run, marker = tmp_path / "r", tmp_path / "in_checkpoint_write"
    argv = ["train", "--config", CONFIG, *overrides(tiny_data, tmp_path, "r")]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SECOND_CHECKPOINT, str(marker), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(marker.exists, proc, timeout=600)  # two epochs, on a machine that may be busy
    proc.kill()
    proc.wait()
    torn = list((run / "checkpoints").glob(f".last.pt.{proc.pid}.*.tmp"))
    assert len(torn) == 1  # the torn write is a temporary file of the killed process
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and len(metrics(run)) == 1  # epoch 2 is logged only after its checkpoint
    resume(run)
    assert not torn[0].exists()  # the killed write's temporary is cleaned up by the next write
    assert_same_metrics(reference, run)


def test_resume_of_a_folder_without_config_is_one_clear_error(tmp_path, capsys):
    """(A run folder with a config but no checkpoint starts from its config: tests/test_loop.py.)"""
    (tmp_path / "r").mkdir()
    assert main(["train", "--resume", str(tmp_path / "r")]) == 2
    assert "has no config.yaml, so it is not a run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tiny_data, tmp_path, monkeypatch, capsys
):
    from vqa import losses

    calls = {"n": 0}

    def poisoned(logits, batch, reduction="mean"):
        calls["n"] += 1
        loss = losses.soft_ce(logits, batch, reduction=reduction)
        return loss * float("nan") if calls["n"] == 80 else loss

    monkeypatch.setitem(losses.LOSSES, "poisoned", poisoned)
    args = overrides(tiny_data, tmp_path, "r", epochs=3, batch=64) + ["train.loss=poisoned"]
    assert main(["train", "--config", CONFIG, *args]) == 2
    err = capsys.readouterr().err
    # 50 train steps an epoch, then 13 validation batches: call 80 is step 17 of epoch 2, global step 67
    assert "loss is nan at step 67" in err and "last.pt" in err
    assert len(err.strip().splitlines()) == 1
    assert torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert len(metrics(tmp_path / "r")) == 1


def test_warmup_then_step_decay():
    f = [lr_factor(s, steps_per_epoch=10, warmup_epochs=2, milestones=[3, 5], gamma=0.1) for s in range(70)]
    assert f[0] == pytest.approx(0.05) and f[9] == pytest.approx(0.5) and f[19] == 1.0 and f[20] == 1.0
    assert (
        f[29] == 1.0
        and f[30] == pytest.approx(0.1)
        and f[49] == pytest.approx(0.1)
        and f[50] == pytest.approx(0.01)
    )
    assert lr_factor(0, 10, 0, [], 0.1) == 1.0


@pytest.mark.slow
def test_early_stopping(tiny_data, tmp_path, capsys):
    args = overrides(tiny_data, tmp_path, "r", epochs=6, batch=64)
    args += ["train.optimizer=sgd", "train.lr=1e-12", "train.early_stop_patience=2", "train.warmup_epochs=0"]
    assert main(["train", "--config", CONFIG, *args]) == 0
    assert [m["epoch"] for m in metrics(tmp_path / "r")] == [1, 2, 3]
    assert "early stop: no better val accuracy for 2 epochs (best: epoch 1)" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(tiny_data, tmp_path, precision):
    args = overrides(tiny_data, tmp_path, "r", epochs=1, batch=64) + [f"train.precision={precision}"]
    assert main(["train", "--config", CONFIG, *args]) == 0
    (row,) = metrics(tmp_path / "r")
    assert (
        math.isfinite(row["train/loss"]) and math.isfinite(row["val/loss"]) and 0 < row["val/accuracy"] <= 100
    )
    ckpt = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["scaler"] is not None) == (precision == "fp16")


@pytest.mark.slow
def test_resume_from_best_when_last_is_damaged(tiny_data, tmp_path):
    """The advice for a damaged last.pt is followed to the end: --from best continues from the best epoch,
    and metrics.jsonl holds each epoch once, in order."""
    run = tmp_path / "r"
    assert main(["train", "--config", CONFIG, *overrides(tiny_data, tmp_path, "r", epochs=2)]) == 0
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["epoch"]
    (run / "checkpoints" / "last.pt").write_bytes(b"damaged")
    assert main(["train", "--resume", str(run)]) == 2
    assert main(["train", "--resume", str(run), "--from", "best", "train.epochs=3"]) == 0
    assert [r["epoch"] for r in metrics(run)] == [1, 2, 3]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 3 and best >= 1

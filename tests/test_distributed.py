"""DDP through torchrun on the CPU (gloo): 2 processes train exactly like 1 with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vqa.cli import main

CONFIG = "configs/synthetic/avg_hard.yaml"


def args(root, out, name):
    return [
        "--config",
        CONFIG,
        f"data.root={root}",
        f"out_dir={out}",
        f"name={name}",
        "train.epochs=2",
        "train.batch_size=64",
        "model.dropout=0.0",
        "model.rnn_dim=64",
        "model.hidden_dim=128",
        "train.log_every=5",
        "train.device=cpu",
    ]  # fmt: skip  (CPU even on a GPU machine: gloo, 2 ranks)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("accumulate", [1, 2])
def test_two_processes_match_one_with_the_same_global_batch(tiny_data, tmp_path, accumulate):
    """2 ranks (with 2 micro-batches each and DDP's no_sync when accumulating) = 1 process, batch 64."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*torchrun, "-m", "vqa", "train", *args(tiny_data, tmp_path, "ddp"), f"train.accumulate={accumulate}"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "device cpu x 2 processes" in proc.stdout
    assert proc.stdout.count("epoch 1/2") == 1  # only rank 0 prints and writes
    assert main(["train", *args(tiny_data, tmp_path, "single")]) == 0
    ddp, single = metrics(tmp_path / "ddp"), metrics(tmp_path / "single")
    assert len(ddp) == len(single) == 2
    for a, b in zip(ddp, single):
        assert a["step"] == b["step"]
        for key in ("train/loss", "val/loss", "val/hard_ce", "val/soft_ce"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
        for key in ("val/accuracy", "val/accuracy_yes_no", "val/accuracy_number", "val/accuracy_other"):
            assert a[key] == pytest.approx(b[key], abs=0.011), key  # one question may flip on a near-tie
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["best.pt", "last.pt"]

"""`vqa paper --status` from run folders, and `--launcher submitit-local`: real submitit job processes
(the Slurm path's tasks, run by submitit's local executor), one of them preempted and requeued."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import assert_same_metrics

from vqa.cli import main
from vqa.config import dump_yaml
from vqa.report.launch import train_argv
from vqa.report.paper import plan

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "synthetic"
SMALL = ["train.batch_size=32", "train.lr=3e-3", "train.log_every=5", "model.embed_dim=16",
         "model.rnn_dim=32", "model.hidden_dim=32", "data.synth_preset="]  # fmt: skip


def grid_args(runs: Path, data, *opts: str, losses="hard_ce soft_ce", seeds=1, epochs=2) -> list[str]:
    return ["paper", "--config-dir", str(CONFIGS), "--models", "avg", "--losses", losses, "--seeds",
            str(seeds), "--epochs", str(epochs), "--runs-dir", str(runs), *opts, "--", f"data.root={data}",
            *SMALL]  # fmt: skip


def write_run(job, epochs_done: int) -> None:
    """A run folder as `vqa train` leaves it after `epochs_done` epochs (rows only, no weights)."""
    (job.run_dir / "checkpoints").mkdir(parents=True)
    (job.run_dir / "config.yaml").write_text(dump_yaml(job.cfg))
    rows = [
        {"epoch": e, "train/loss": 1.0, "val/loss": 1.0, "val/accuracy": 10.0 * e}
        for e in range(1, epochs_done + 1)
    ]
    (job.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_status_lists_every_run_from_its_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    grid = plan(CONFIGS, ["avg"], ["hard_ce", "soft_ce", "kl"], 2, runs, 3, ["data.root=x"])
    done, running, failed, interrupted, fresh, _ = grid
    write_run(done, 3)
    write_run(running, 1)
    write_run(failed, 2)
    (failed.run_dir / "FAILED").write_text("`vqa train --resume ...` failed (exit code 2)\n")
    write_run(interrupted, 1)
    (fresh.run_dir).mkdir(parents=True)  # a folder without config.yaml holds no run yet
    status = grid_args(runs, "x", "--status", losses="hard_ce soft_ce kl", seeds=2, epochs=3)
    with open(running.run_dir / ".lock", "w") as lock:  # what `vqa train` holds for its whole life
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert main(status) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        "avg_hard_ce_s0  done         3/3 epochs",
        "avg_hard_ce_s1  running      1/3 epochs",
        "avg_soft_ce_s0  failed       2/3 epochs  `vqa train --resume ...` failed (exit code 2)",
        "avg_soft_ce_s1  interrupted  1/3 epochs  resumes from its checkpoint",
        "avg_kl_s0       not started  0/3 epochs",
        "avg_kl_s1       not started  0/3 epochs",
        "6 runs: 1 done, 1 running, 1 failed, 1 interrupted, 2 not started",
    ]
    assert main(status) == 0  # the lock is released: not running
    assert "avg_hard_ce_s1  interrupted  1/3 epochs" in capsys.readouterr().out
    assert main(grid_args(runs, "x")) == 2  # no --out and no --status
    assert "give --out" in capsys.readouterr().err


def test_a_task_trains_with_torchrun_when_it_has_several_gpus(tmp_path):
    job = plan(CONFIGS, ["avg"], ["soft_ce"], 1, tmp_path, 2, ["data.root=x"])[0]
    run = ["--resume", str(job.run_dir), "train.epochs=2"]
    assert train_argv(job, "resume", 1) == [sys.executable, "-m", "vqa", "train", *run]
    assert train_argv(job, "resume", 4) == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                            "--nproc_per_node=4", "-m", "vqa", "train", *run]  # fmt: skip
    assert train_argv(job, "start", 1)[4:] == ["--config", str(CONFIGS / "avg_soft.yaml"), *job.overrides]


def test_slurm_without_a_cluster_is_one_clear_error(tiny_data, tmp_path, capsys):
    assert (
        main(grid_args(tmp_path / "runs", tiny_data, "--out", str(tmp_path / "r"), "--launcher", "slurm"))
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--launcher slurm:" in err[0] and "submitit-local" in err[0]
    assert not (tmp_path / "runs" / "avg_hard_ce_s0").exists()  # nothing was trained or submitted


def processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, argv) of this machine's processes (Linux /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if entry.name.isdigit():
            out[int(entry.name)] = (ppid, argv)
    return out


def task_of(run: Path) -> int:
    """The submitit task process whose `vqa train` child trains `run`."""
    for _, (ppid, argv) in processes().items():
        if (
            "vqa" in argv
            and "train" in argv
            and f"name={run.name}" in argv
            and f"out_dir={run.parent}" in argv
        ):
            assert "submitit.core._submit" in " ".join(processes()[ppid][1])
            return ppid
    raise AssertionError(f"no vqa train process for {run}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the task through /proc")
def test_submitit_tasks_requeued_on_preemption_equal_an_uninterrupted_grid(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tasks' threads; the reference below uses as many
    ref, runs = tmp_path / "ref", tmp_path / "runs"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # another thread count sums in another order: losses differ past 1e-6
    try:
        for job in plan(
            CONFIGS, ["avg"], ["hard_ce", "soft_ce"], 1, ref, 3, [f"data.root={tiny_data}", *SMALL]
        ):
            assert main(["train", "--config", str(job.config_file), *job.overrides]) == 0  # uninterrupted
    finally:
        torch.set_num_threads(threads)
    args = grid_args(runs, tiny_data, "--out", str(tmp_path / "report"), "--launcher", "submitit-local",
                     "--wait", "--gpus-per-run", "0", epochs=3)  # fmt: skip
    paper = subprocess.Popen([sys.executable, "-m", "vqa", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
    victim = runs / "avg_soft_ce_s0"
    start = time.time()
    while not (victim / "checkpoints" / "last.pt").exists():  # its first epoch is checkpointed
        assert paper.poll() is None, paper.communicate()[0]
        assert time.time() - start < 240, "timed out"
        time.sleep(0.05)
    os.kill(task_of(victim), signal.SIGUSR2)  # what Slurm sends before a time limit or a preemption
    out = paper.communicate(timeout=300)[0]
    assert paper.returncode == 0, out
    assert "submitted 2 tasks (submitit-local" in out and "report in" in out
    log = (victim / "train.log").read_text()
    assert "stopped by signal" in log and "resuming after epoch" in log  # checkpointed, requeued, resumed
    task_logs = "".join(p.read_text() for p in (runs / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in task_logs
    for name in ("avg_hard_ce_s0", "avg_soft_ce_s0"):
        assert_same_metrics(ref / name, runs / name)
    status = subprocess.run([sys.executable, "-m", "vqa", *grid_args(runs, tiny_data, "--status", epochs=3)],
                            capture_output=True, text=True)  # fmt: skip
    assert (
        status.stdout.strip().splitlines()[-1]
        == "2 runs: 2 done, 0 running, 0 failed, 0 interrupted, 0 not started"
    )

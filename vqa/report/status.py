"""`vqa paper --status`: where every run of a grid stands, read from its run folder alone, so it
works the same for runs trained here, by `--jobs`, or as Slurm tasks on other machines.

    running      RUN/.lock is held: `vqa train` holds an exclusive flock on it for its whole life
    done         metrics.jsonl has train.epochs rows, or early stopping ended the run
    failed       RUN/FAILED exists: the launcher writes it (one line: what failed, where its log is)
                 when `vqa train` exits with an error, and removes it when the next attempt starts
    interrupted  a run folder that is none of the above (killed, preempted, or waiting for its
                 requeue): `vqa paper` resumes it from checkpoints/last.pt
    not started  no run folder, or one without config.yaml

A failure before `vqa train` made the run folder (rare: `vqa paper` checks every config before
anything runs) leaves no marker; the task's log says why. `action` tells what a grid does with a run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from vqa import io
from vqa.config import Config, config_from_dict, to_dict
from vqa.errors import UserError
from vqa.report.runs import RUN_ONLY_KEYS, flatten, is_complete, read_rows, stopped_early
from vqa.runs import is_locked

STATES = ("done", "running", "failed", "interrupted", "not started")
MARKER = "FAILED"
RESUMABLE_KEYS = {*RUN_ONLY_KEYS, "train.epochs"}  # may change between invocations of one run


@dataclass
class Job:
    """One run of a `vqa paper` grid: its name and folder, and the config it trains with."""

    name: str
    run_dir: Path
    config_file: Path
    overrides: list[str]
    cfg: Config


def rows_of(run_dir: Path) -> list[dict]:
    """The checked rows of RUN/metrics.jsonl; none when it does not exist yet."""
    path = run_dir / "metrics.jsonl"
    return read_rows(path) if path.is_file() else []


def trained(job: Job) -> bool:
    """Whether the run of `job` trained all its epochs or early stopping ended it."""
    return is_complete(rows_of(job.run_dir), job.cfg.train.epochs, job.cfg.train.early_stop_patience)


def action(job: Job) -> tuple[str, int]:
    """('skip' | 'resume' | 'start' | 'busy', epochs done) for a job, from its run folder ('busy': another
    process holds the run's lock)."""
    if is_locked(job.run_dir):
        return "busy", 0
    rows = rows_of(job.run_dir)
    saved_path = job.run_dir / "config.yaml"
    if not saved_path.is_file():
        return "start", 0
    try:
        saved = config_from_dict(yaml.safe_load(saved_path.read_text()) or {}, source=str(saved_path))
    except yaml.YAMLError:
        raise UserError(
            f"{saved_path}: not valid YAML; delete {job.run_dir} to start the run again"
        ) from None
    want, have = flatten(to_dict(job.cfg)), flatten(to_dict(saved))
    diff = [k for k in want if k not in RESUMABLE_KEYS and want[k] != have.get(k)]
    if diff:
        k = diff[0]
        raise UserError(
            f"{job.run_dir}: holds a run with a different config ({k}: {have.get(k)!r}, the grid wants "
            f"{want[k]!r}); delete the folder or use another PAPER_RUNS"
        )
    epochs, patience = job.cfg.train.epochs, job.cfg.train.early_stop_patience
    done = rows[-1]["epoch"] if rows else 0
    if done > epochs:
        raise UserError(
            f"{job.run_dir}: has {done} epochs but the grid asks for {epochs}; delete it or raise EPOCHS"
        )
    if stopped_early(rows, patience) or (done == epochs and saved.train.epochs == epochs):
        return "skip", done
    # also a complete run whose config asked for other epochs (rewrites it), and a run killed before
    # its first checkpoint: `vqa train --resume` starts that one from its saved config
    return "resume", done


def mark_failed(run_dir: Path, reason: str) -> None:
    """RUN/FAILED with `reason`, where the run folder exists (a run that never made one has none)."""
    if run_dir.is_dir():
        io.write_text_atomic(run_dir / MARKER, reason + "\n")


def clear_failed(run_dir: Path) -> None:
    (run_dir / MARKER).unlink(missing_ok=True)


def run_state(run_dir: Path, epochs: int, patience: int) -> tuple[str, int, str]:
    """(one of STATES, epochs done, detail) of the run in `run_dir` planned for `epochs` epochs."""
    metrics = run_dir / "metrics.jsonl"
    if is_locked(run_dir):  # its metrics.jsonl may be mid-append: read only what parses
        rows = [r for r in map(_parse, metrics.read_text().splitlines()) if r] if metrics.is_file() else []
        return "running", rows[-1]["epoch"] if rows else 0, ""
    if not (run_dir / "config.yaml").is_file():
        return "not started", 0, ""
    rows = rows_of(run_dir)
    done = rows[-1]["epoch"] if rows else 0
    if is_complete(rows, epochs, patience):
        return "done", done, "early stop" if done < epochs else ""
    if (run_dir / MARKER).is_file():
        return "failed", done, (run_dir / MARKER).read_text().strip()
    return "interrupted", done, "resumes from its checkpoint" if done else "restarts from its config"


def _parse(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) and "epoch" in row else None


def status_lines(jobs: list) -> list[str]:
    """One line per run of the grid (`jobs`: vqa.report.paper.Job), then the counts."""
    lines, counts = [], Counter()
    width = max(len(job.name) for job in jobs)
    for job in jobs:
        epochs = job.cfg.train.epochs
        state, done, detail = run_state(job.run_dir, epochs, job.cfg.train.early_stop_patience)
        counts[state] += 1
        line = f"{job.name:<{width}}  {state:<11}  {done}/{epochs} epochs"
        lines.append(line + (f"  {detail}" if detail else ""))
    lines.append(f"{len(jobs)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES))
    return lines

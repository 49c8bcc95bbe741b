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
anything runs) leaves no marker; the task's log says why.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from vqa import io
from vqa.report.runs import is_complete, read_rows
from vqa.runs import is_locked

STATES = ("done", "running", "failed", "interrupted", "not started")
MARKER = "FAILED"


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
    rows = read_rows(metrics) if metrics.is_file() else []
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

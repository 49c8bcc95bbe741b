"""The machinery of the bad-input catalogue (tests/test_bad_inputs.py, tests/test_file_safety.py).

A case builds its files in a folder of its own and names the command line to run. Every case of a
module runs as a real `python -m vqa` subprocess, several at once, and each must end in exit code 2
with one `error: ` line on stderr that holds the case's needles, no traceback, and every file that
existed before (in the case's folder and in the shared tiny dataset) byte for byte as it was, with no
file added.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).parents[1]
CONFIG = "configs/synthetic/avg_soft.yaml"
SMALL_MODEL = ("model.embed_dim=16", "model.rnn_dim=32", "model.hidden_dim=32")
Q = "v2_OpenEnded_mscoco_{split}_questions.json"
A = "v2_mscoco_{split}_annotations.json"


@dataclass
class Case:
    """`build(folder, data)` makes the case's files and returns the command line after `vqa`."""

    name: str
    build: Callable[[Path, Path], list]
    needles: tuple[str, ...]
    max_line: int = 400  # characters of the error line: values echoed in it are cut
    added: tuple[str, ...] = ()  # files the case may add (relative to its folder): none by default
    argv: list = field(default_factory=list)


@dataclass
class Outcome:
    case: Case
    folder: Path
    proc: subprocess.CompletedProcess
    before: dict[str, str]
    after: dict[str, str]


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (links not followed), by relative path; a link is listed by
    its target."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def train_args(root, out, *overrides) -> list:
    return ["train", "--config", ROOT / CONFIG, f"data.root={root}", f"out_dir={out}", "data.synth_preset=",
            "train.epochs=1", *SMALL_MODEL, *overrides]  # fmt: skip


def run_cases(cases: list[Case], base: Path, data: Path, jobs: int = 4) -> dict[str, Outcome]:
    """Build every case, run them `jobs` at a time, and record what each left behind."""
    prepared = []
    shared_before = digest(data)
    for case in cases:
        folder = base / case.name
        folder.mkdir(parents=True)
        argv = [str(a) for a in case.build(folder, data)]
        prepared.append((case, folder, argv, digest(folder)))

    def run(item):
        case, folder, argv, before = item
        cmd = argv if argv[0] in ("unshare", "sh") else [sys.executable, "-m", "vqa", *argv]
        proc = subprocess.run(
            cmd, cwd=folder, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )
        case.argv = argv
        return case.name, Outcome(case, folder, proc, before, digest(folder))

    with ThreadPoolExecutor(jobs) as pool:
        outcomes = dict(pool.map(run, prepared))
    assert digest(data) == shared_before, "a case changed the shared tiny dataset"
    return outcomes


def check(outcome: Outcome) -> str:
    """The assertions every case makes; returns the error line."""
    proc, case = outcome.proc, outcome.case
    shown = f"{case.argv}\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
    assert proc.returncode == 2, shown
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert "Traceback" not in proc.stdout + proc.stderr, shown
    for needle in case.needles:
        assert needle in lines[0], (needle, lines[0])
    assert len(lines[0]) <= case.max_line, f"{len(lines[0])} characters: {lines[0][:300]}..."
    before, after = outcome.before, outcome.after
    changed = [k for k in before if after.get(k) != before[k]]
    added = [k for k in after if k not in before and k not in case.added]
    assert not changed and not added, f"changed {changed[:5]}, added {added[:5]} by {case.argv}"
    return lines[0]


def copy_data(data: Path, dest: Path) -> Path:
    shutil.copytree(data, dest)
    return dest


def can_mount() -> bool:
    """True where `unshare -m` can mount a tmpfs (root in a container that allows it): the disk-full
    and read-only cases run on a real small file system of their own."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0

"""Memory benchmark: what a user's machine pays to train, DataLoader workers included.

One fresh process per (preset, workers) builds the datasets and trains `steps` steps (AVG on boxes).
Meanwhile /proc is sampled every 0.1 s for the summed PSS (a page shared by k processes counts 1/k in
each: the memory really spent) and USS of the process and its workers. Unlike RSS, PSS shows how much
of the parent the workers copied: the copy-on-read of Python objects whose reference counts workers
touch, which the compact numpy records of vqa/data avoid.

Targets (the `vqa2` preset, VQA v2's counts): with 4 workers total PSS at most 1.5x the 0-worker
figure, and that at most 1.3x the `paper` preset's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"workers": 1.5, "scale": 1.3}  # 4 workers / 0 workers at vqa2; vqa2 / paper at 0 workers

CHILD = """
import json, sys, time
import torch
from vqa.bench.pipeline import synthetic_config
from vqa.data.build import build_datasets
from vqa.data.loader import EpochSampler
from vqa.data.feed import build_loader
from vqa.models import build_model
from vqa.training.timing import Steps
preset, workers, steps, marker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(1)
cfg = synthetic_config("avg", preset, "data.features=boxes", "model.rnn_dim=256", "model.hidden_dim=512")
start = time.perf_counter()
data = build_datasets(cfg)
loaded = time.perf_counter() - start
torch.manual_seed(0)
model = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim)
loader = build_loader(data.train, cfg.train.batch_size, EpochSampler(data.train, seed=0), workers)
open(marker, "w").close()  # from here on: training (the workers start with the first batch)
rate = Steps(cfg, model, torch.device("cpu")).rate(iter(loader), steps)
print(json.dumps({"train_questions": len(data.train), "val_questions": len(data.val), "answers": len(data.avocab),
                  "load_seconds": loaded, "samples_per_s": rate}))
"""


def _rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup as {field: KiB} (empty when the process is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, value, *_ = line.split()
            out[name.rstrip(":")] = int(value)
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        pass
    return out


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants (DataLoader workers are children of the training process)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def measure(preset: str, workers: int, steps: int) -> dict:
    """Peak total PSS / USS / RSS (MiB) of a training process and its workers, sampled every 0.1 s:
    over the whole run (the JSON decoding's transient peak included) and while training."""
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "training"
        cmd = [sys.executable, "-c", CHILD, preset, str(workers), str(steps), str(marker)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        peak = {"pss": 0, "uss": 0, "rss": 0, "processes": 0}
        training = dict(peak)
        while proc.poll() is None:
            rollups = [r for r in (_rollup(p) for p in _tree(proc.pid)) if r]
            pss, rss = (sum(r.get(k, 0) for r in rollups) for k in ("Pss", "Rss"))
            uss = sum(r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rollups)
            now = {"pss": pss, "uss": uss, "rss": rss, "processes": len(rollups)}
            peak = max(peak, now, key=lambda m: m["pss"])
            if marker.exists():
                training = max(training, now, key=lambda m: m["pss"])
            time.sleep(0.1)
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"memory benchmark ({preset}, {workers} workers) failed:\n{err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    kib = {"peak": peak, "training": training}
    mib = {f"{when}_{k}_mib": v / 1024 for when, m in kib.items() for k, v in m.items() if k != "processes"}
    settings = {"preset": preset, "workers": workers, "steps": steps}
    return {**result, **settings, **mib, "processes": training["processes"]}


def bench_memory(
    presets: tuple[str, str] = ("paper", "vqa2"), workers: tuple[int, ...] = (0, 4), steps: int = 50
) -> dict:
    """Every (preset, workers) in its own process; the two target ratios of the module docstring."""
    from vqa.bench.pipeline import synthetic_config
    from vqa.data.build import ensure_synthetic

    rows = []
    for preset in presets:
        ensure_synthetic(synthetic_config("avg", preset))  # generated here, outside the measured process
        rows += [measure(preset, w, steps) for w in workers]
    by = {(r["preset"], r["workers"]): r["training_pss_mib"] for r in rows}
    peak = {(r["preset"], r["workers"]): r["peak_pss_mib"] for r in rows}
    small, large = presets
    ratios = {
        "workers": by[(large, max(workers))] / by[(large, 0)],
        "scale": by[(large, 0)] / by[(small, 0)],
        "scale_peak": peak[(large, 0)] / peak[(small, 0)],
    }
    return {"rows": rows, "ratios": ratios, "presets": list(presets), "workers": list(workers)}


def run(opts: argparse.Namespace) -> dict:
    return bench_memory(presets=("tiny", "small"), steps=10) if opts.quick else bench_memory()


def markdown(r: dict) -> list[str]:
    small, large = r["presets"]
    lines = [
        f"### Memory: training process + DataLoader workers, {r['rows'][0]['steps']} steps (AVG, region boxes)",
        "",
        "Summed PSS (and USS, RSS) of the training process and all its workers, sampled from /proc every "
        "0.1 s, each row a fresh process: the peak while training (workers running), and the peak of the "
        "whole run (the JSON decoding's transient high-water mark before training).",
        "",
        "| preset | workers | train questions | val questions | processes | load s | training PSS MiB "
        "| training USS MiB | training RSS MiB | whole-run peak PSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in r["rows"]:
        lines.append(
            f"| {m['preset']} | {m['workers']} | {m['train_questions']:,} | {m['val_questions']:,} | {m['processes']} "
            f"| {m['load_seconds']:.1f} | {m['training_pss_mib']:.0f} | {m['training_uss_mib']:.0f} "
            f"| {m['training_rss_mib']:.0f} | {m['peak_pss_mib']:.0f} |"
        )
    w, s = r["ratios"]["workers"], r["ratios"]["scale"]
    tw, ts = TARGETS["workers"], TARGETS["scale"]
    lines += [
        "",
        f"- {large}, {max(r['workers'])} workers / 0 workers (training PSS): **{w:.2f}x** (target <= {tw}x: "
        f"{'holds' if w <= tw else 'missed'})",
        f"- {large} / {small}, 0 workers (training PSS): **{s:.2f}x** (target <= {ts}x: "
        f"{'holds' if s <= ts else 'missed'}); whole-run peaks: {r['ratios']['scale_peak']:.2f}x",
        "",
    ]
    return lines

"""Loader-only throughput: samples/s the input pipeline delivers with no model behind it, against the
machine's memory-copy limit for the same batch.

Real-size features (`vqa synth`): a 14 x 14 grid of 2048 channels and 2048-d boxes, float16 on disk. The
limit is one plain copy of a batch's image bytes into a reused buffer (numpy, one thread). Rows: the
training path (reused buffers, RingLoader) per preload, sampler and worker count, the fresh-batch
DataLoader (`vqa predict`'s), and on CUDA the batches on the device (DeviceFeed).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from vqa.config import load_config
from vqa.data.features import PRELOADS
from vqa.data.loader import SAMPLERS

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic" / "avg_soft.yaml"
REAL = dict(grid_size=14, grid_dim=2048, box_dim=2048)  # the paper's grid; bottom-up's 2048-d boxes


def ensure_real_size(root: Path, train_images: int) -> None:
    """A small synthetic set with real-size features (written once; about 0.8 MB of grid per image)."""
    if (root / "stats.json").exists():
        return
    from vqa.synth.generate import generate

    sizes = dict(val_images=20, test_images=0, questions_per_image=5, **REAL)
    generate(root, seed=0, train_images=train_images, quiet=True, **sizes)


def copy_rate(nbytes: int, repeats: int = 3, budget: int = 1 << 30, pool: int = 256 << 20) -> dict:
    """Bytes/s of np.copyto of `nbytes` into a reused buffer (the limit), and into a fresh one per copy
    (np.empty, faulted in by the copy: what a fresh batch costs); best of `repeats` rounds of about
    `budget` bytes each. The sources take turns through a `pool` of memory larger than the caches, as a
    batch's rows come from a feature file far larger than them."""
    count = max(1, -(-pool // nbytes))
    src = np.random.default_rng(0).integers(0, 255, (count, nbytes), dtype=np.uint8)
    dst = np.empty(nbytes, np.uint8)
    np.copyto(dst, src[0])  # faulted in once
    n = max(2, budget // nbytes)

    def rate(fresh: bool) -> float:
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(n):
                np.copyto(np.empty(nbytes, np.uint8) if fresh else dst, src[i % count])
            best = max(best, n * nbytes / (time.perf_counter() - start))
        return best

    return {"bytes": nbytes, "reused_bytes_per_s": rate(False), "fresh_bytes_per_s": rate(True)}


def _timed(batches, count: int) -> tuple[int, int, float]:
    """(samples, image bytes, seconds) of `count` batches after the first (worker start-up not counted);
    `batches` yields Batches (their buffers may be reused as soon as the next is taken)."""
    it = iter(batches)
    next(it)
    start = time.perf_counter()
    samples = nbytes = 0
    for b in itertools.islice(it, count):
        samples += b.question.shape[0]
        nbytes += b.image.numel() * b.image.element_size()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return samples, nbytes, time.perf_counter() - start


def loader_rows(
    root: Path, kind: str, preload: str, batch: int, batches: int, workers, samplers, rounds: int = 3
) -> list[dict]:
    """The rows of one feature kind and preload mode (one dataset, every sampler and worker count). Each
    loader is timed over `rounds` epochs (its workers persist, as in training); a row is the median."""
    from vqa.data.build import build_datasets
    from vqa.data.loader import EpochSampler

    overrides = [
        f"data.root={root}",
        "data.synth_preset=",
        f"data.features={kind}",
        f"data.preload={preload}",
    ]
    start = time.perf_counter()
    data = build_datasets(load_config(CONFIG, overrides))
    setup = time.perf_counter() - start
    rows = []
    for sampler, w in itertools.product(samplers, workers):
        order = EpochSampler(data.train, seed=0, group_by_image=sampler == "image_grouped")
        wanted = {"reused": preload != "device", "fresh": preload == "none" and sampler == "random"}
        for path in [p for p, on in wanted.items() if on] + (["cuda"] if torch.cuda.is_available() else []):
            n, rates, nbytes = _epoch_rates(
                _loader(path, data.train, batch, order, w), order, batches, rounds
            )
            row = {"kind": kind, "preload": preload, "path": path, "sampler": sampler, "workers": w}
            row |= {"samples": n, "samples_per_s": float(np.median(rates)), "rounds": rates}
            rows.append({**row, "bytes_per_sample": nbytes / n, "setup_seconds": setup})
    return rows


def _loader(path: str, dataset, batch: int, order, workers: int):
    """The loader a row times: reused buffers (RingLoader), fresh batches, or batches on the GPU."""
    from vqa.data.feed import build_loader
    from vqa.data.loader import RingLoader

    if path == "reused":
        return RingLoader(dataset, batch, order, workers)
    return build_loader(
        dataset, batch, order, workers, device=torch.device("cuda") if path == "cuda" else None
    )


def _epoch_rates(loader, order, batches: int, rounds: int) -> tuple[int, list[float], int]:
    """(samples per epoch, samples/s of each of `rounds` epochs, image bytes of the last epoch)."""
    from vqa.data.loader import RingLoader

    rates = []
    for r in range(rounds):
        order.set_epoch(r)
        epoch = (h.batch for h in loader) if isinstance(loader, RingLoader) else loader
        n, nbytes, seconds = _timed(epoch, batches)
        rates.append(n / seconds)
    return n, rates, nbytes


def bench_loader(
    root: Path = Path("data/synthetic/realsize"),
    train_images: int = 400,
    batch: int = 64,
    batches: int = 30,
    workers=(0, 1, 2),
    samplers=SAMPLERS,
    preloads=PRELOADS,
    rounds: int = 3,
) -> dict:
    ensure_real_size(root, train_images)
    if not torch.cuda.is_available():
        preloads = tuple(p for p in preloads if p != "device")  # on the CPU it is the RAM path
    rows = []
    for kind, preload in itertools.product(("grid", "boxes"), preloads):
        rows += loader_rows(root, kind, preload, batch, batches, workers, samplers, rounds)
    limits = {}
    for kind in ("grid", "boxes"):
        per_sample = max(r["bytes_per_sample"] for r in rows if r["kind"] == kind)
        limits[kind] = {**copy_rate(int(per_sample * batch)), "bytes_per_sample": per_sample}
        limit = limits[kind]["reused_bytes_per_s"]
        for r in (r for r in rows if r["kind"] == kind):
            r["limit_fraction"] = r["samples_per_s"] * r["bytes_per_sample"] / limit
    return dict(root=str(root), batch=batch, batches=batches, rounds=rounds, limits=limits, rows=rows)


def run(opts: argparse.Namespace) -> dict:
    if opts.quick:
        quick = dict(train_images=60, batches=4, workers=(0, 1), rounds=1, samplers=("random",))
        return bench_loader(Path("data/synthetic/realsize-quick"), preloads=("none", "ram"), **quick)
    return bench_loader()


def one_worker_rate(rows: list[dict], kind: str) -> float | None:
    """Samples/s of one worker reading `kind` from disk in random order into reused buffers: the unit a
    GPU machine's worker count is sized in (workers ~ GPU samples/s / this rate)."""
    key = (kind, 1, "none", "random", "reused")
    one = [r for r in rows if (r["kind"], r["workers"], r["preload"], r["sampler"], r["path"]) == key]
    return one[0]["samples_per_s"] if one else None


def markdown(r: dict) -> list[str]:
    lines = [
        f"### Loader only: samples/s from `{r['root']}` (real-size float16 features), batch {r['batch']}, "
        f"{r['batches']} batches after the first of each epoch, median of {r.get('rounds', 1)} epochs, no model",
        "",
        "| features | copy limit (reused buffer) | copy into a fresh buffer | batch image bytes/sample |",
        "|---|---:|---:|---:|",
    ]
    for kind, m in r["limits"].items():
        per = m["bytes_per_sample"]
        lines.append(
            f"| {kind} | {m['reused_bytes_per_s'] / per:,.0f} samples/s ({m['reused_bytes_per_s'] / 1e9:.1f} GB/s) "
            f"| {m['fresh_bytes_per_s'] / per:,.0f} samples/s ({m['fresh_bytes_per_s'] / 1e9:.1f} GB/s) "
            f"| {per:,.0f} |"
        )
    lines += [
        "",
        "| features | preload | buffers | sampler | workers | samples/s | of the copy limit |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for m in r["rows"]:
        lines.append(
            f"| {m['kind']} | {m['preload']} | {m['path']} | {m['sampler']} | {m['workers']} "
            f"| {m['samples_per_s']:,.0f} | {m['limit_fraction']:.2f} |"
        )
    for kind in ("grid", "boxes"):
        rate = one_worker_rate(r["rows"], kind)
        if rate:
            per = r["limits"][kind]["bytes_per_sample"]
            lines.append(
                f"- {kind}: one worker from disk, random order: {rate:,.0f} samples/s; to feed S samples/s "
                f"the disk must deliver S x {per:,.0f} bytes and about S / {rate:,.0f} workers must read"
            )
    return [*lines, ""]

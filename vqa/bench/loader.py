"""Loader-only throughput: samples/s the DataLoader delivers with no model behind it.

The features are real-size: a 14 x 14 grid of 2048 channels (the paper's ResNet-152 layer4) and
region boxes of 2048 dimensions, float16 on disk, written by `vqa synth` with those sizes. Every
combination of workers (0, 1, 2), sampler (random, image_grouped) and preload (none, ram) is timed
over the same number of batches. With the bytes one sample reads, the figures say what a faster
model needs: to feed S samples/s, the disk (or page cache) must deliver S x bytes/sample, and
ceil(S / per-worker rate) workers must decode them.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from vqa.config import load_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic" / "avg_soft.yaml"
REAL = dict(grid_size=14, grid_dim=2048, box_dim=2048)  # the paper's grid; bottom-up's 2048-d boxes


def ensure_real_size(root: Path, train_images: int) -> None:
    """A small synthetic set with real-size features (written once; about 0.8 MB of grid per image)."""
    if (root / "stats.json").exists():
        return
    from vqa.synth.generate import generate

    generate(root, seed=0, train_images=train_images, val_images=20, test_images=0, questions_per_image=5,
             quiet=True, **REAL)  # fmt: skip


def time_loader(
    root: Path, kind: str, workers: int, sampler: str, preload: str, batch: int, batches: int
) -> dict:
    from vqa.data.build import build_datasets
    from vqa.data.loader import EpochSampler, build_loader

    cfg = load_config(CONFIG, [f"data.root={root}", "data.synth_preset=", f"data.features={kind}",
                               f"data.preload={preload}", f"data.sampler={sampler}"])  # fmt: skip
    start = time.perf_counter()
    data = build_datasets(cfg)
    setup = time.perf_counter() - start
    sampler_ = EpochSampler(data.train, seed=0, group_by_image=sampler == "image_grouped")
    loader = build_loader(data.train, batch, sampler_, workers)
    it = iter(loader)
    first = next(it)  # worker start-up and the first batch are not counted
    start = time.perf_counter()
    n = sum(b.question.shape[0] for b in itertools.islice(it, batches))
    seconds = time.perf_counter() - start
    per_sample = (
        first.image.element_size()
        * first.image_mask.sum().item()
        * first.image.shape[2]
        / first.image.shape[0]
    )
    return {"kind": kind, "workers": workers, "sampler": sampler, "preload": preload, "samples": n,
            "samples_per_s": n / seconds, "setup_seconds": setup, "batch_bytes_per_sample": per_sample,
            "image_dtype": str(first.image.dtype).removeprefix("torch.")}  # fmt: skip


def bench_loader(root: Path = Path("data/synthetic/realsize"), train_images: int = 400, batch: int = 64,
                 batches: int = 20, workers=(0, 1, 2), samplers=("random", "image_grouped"),
                 preloads=("none", "ram")) -> dict:  # fmt: skip
    ensure_real_size(root, train_images)
    rows = [time_loader(root, kind, w, s, p, batch, batches)
            for kind in ("grid", "boxes") for p in preloads for s in samplers for w in workers]  # fmt: skip
    return {"root": str(root), "batch": batch, "batches": batches, "rows": rows}


def run(opts: argparse.Namespace) -> dict:
    if opts.quick:
        return bench_loader(Path("data/synthetic/realsize-quick"), train_images=60, batches=4, workers=(0, 1),
                            samplers=("random",), preloads=("none",))  # fmt: skip
    return bench_loader()


def one_worker_rate(rows: list[dict], kind: str) -> float | None:
    """Samples/s of one worker reading `kind` from disk in random order: the unit a GPU machine's
    worker count is sized in (workers ~ GPU samples/s / this rate)."""
    one = [
        r
        for r in rows
        if (r["kind"], r["workers"], r["preload"], r["sampler"]) == (kind, 1, "none", "random")
    ]
    return one[0]["samples_per_s"] if one else None


def markdown(r: dict) -> list[str]:
    lines = [
        f"### Loader only: samples/s from `{r['root']}` (real-size float16 features), batch {r['batch']}, "
        f"{r['batches']} batches after the first, no model",
        "",
        "| features | preload | sampler | workers | samples/s | bytes/sample in the batch | batch dtype |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for m in r["rows"]:
        lines.append(f"| {m['kind']} | {m['preload']} | {m['sampler']} | {m['workers']} | {m['samples_per_s']:,.0f} "
                     f"| {m['batch_bytes_per_sample']:,.0f} | {m['image_dtype']} |")  # fmt: skip
    for kind in ("grid", "boxes"):
        rows = [m for m in r["rows"] if m["kind"] == kind]
        rate = one_worker_rate(r["rows"], kind)
        if rows and rate:
            lines.append(f"- {kind}: one worker from disk, random order: {rate:,.0f} samples/s; to feed S samples/s "
                         f"the disk must deliver S x {rows[0]['batch_bytes_per_sample']:,.0f} bytes and about "
                         f"S / {rate:,.0f} workers must decode")  # fmt: skip
    return [*lines, ""]

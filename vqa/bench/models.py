"""Model benchmarks: forward+backward throughput and peak memory of every registered model, and
MCB's count sketch + FFT against the naive outer product it replaces.

Each measurement runs in a fresh process (`run_isolated`), one after the other, so its peak memory
is its own (see `measure_steps`).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
import torch.nn.functional as F

from vqa.bench.measure import default_device, measure_steps, run_isolated
from vqa.config import ModelConfig
from vqa.device import autocast
from vqa.models import MODELS, build_model
from vqa.models.mcb import CompactBilinearPooling, count_sketch

# Model sizes: ModelConfig defaults, except MCB. At the paper's 16,000 dimensions over 196
# cells MCB needs ~5 GiB and tens of seconds per batch-64 step on a 2-core CPU (measured:
# 1.3 GiB, ~10 s at batch 16), so the default here is 4,000; pass `cfg` for other sizes.
DEFAULT_BENCH_CFG = ModelConfig(mcb_dim=4000)

# The synthetic `paper` preset: a 14 x 14 grid of 256-d cells, and 512-d region boxes, 2-17 per
# image; a batch of 64 pads to its largest image, about 15 boxes.
PAPER_GRID, PAPER_GRID_DIM, PAPER_BOXES, PAPER_BOX_DIM = 14, 256, 16, 512
BOX_MODELS = ("updn", "mcan", "ban")  # the region-box models; the others read the grid, as in their papers


def _model_worker(name: str, cfg: dict, shape: dict, device: str, precision: str = "fp32") -> dict:
    """One model's training step on random inputs, timed in this (fresh) process. `shape`: batch_size,
    steps, regions, image_dim, num_answers, num_tokens and question_len."""
    batch_size, steps, regions = (shape[k] for k in ("batch_size", "steps", "regions"))
    image_dim, num_answers, num_tokens, question_len = (
        shape[k] for k in ("image_dim", "num_answers", "num_tokens", "question_len")
    )
    torch.manual_seed(0)
    dev = torch.device(device)
    model_cfg = dataclasses.replace(ModelConfig(**cfg), name=name)
    model = build_model(model_cfg, num_tokens, num_answers, image_dim).to(dev).train()
    question = torch.randint(1, num_tokens, (batch_size, question_len), device=dev)  # [B, T]
    question_len_t = torch.full((batch_size,), question_len, dtype=torch.long, device=dev)  # [B]
    image = torch.randn(batch_size, regions, image_dim, device=dev)  # [B, N, D]
    image_mask = torch.ones(batch_size, regions, dtype=torch.bool, device=dev)  # [B, N]
    answer = torch.randint(0, num_answers, (batch_size,), device=dev)  # [B]

    def step():
        model.zero_grad(set_to_none=True)
        with autocast(dev, precision):
            logits = model(question, question_len_t, image, image_mask)
        F.cross_entropy(logits.float(), answer).backward()

    seconds, peak = measure_steps(step, steps, dev)
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "batch_size": batch_size,
        "regions": regions,
        "image_dim": image_dim,
        "step_ms": round(seconds * 1e3, 1),
        "samples_per_s": round(batch_size / seconds, 1),
        "peak_mib": round(peak, 1),
        "device": device,
        "precision": precision,
    }


def bench_models(
    batch_size: int = 64,
    steps: int = 5,
    image_grid: int = 14,
    image_dim: int = 512,
    regions: int | None = None,
    num_answers: int = 3000,
    num_tokens: int = 5000,
    question_len: int = 14,
    cfg: ModelConfig | None = None,
    models: list[str] | None = None,
    device: str | None = None,
    precision: str = "fp32",
) -> list[dict]:
    """Forward+backward samples/s and peak memory (MiB) of every registered model on a
    `image_grid` x `image_grid` grid of `image_dim`-d features (or, when `regions` is given,
    that many `image_dim`-d regions, e.g. boxes); one fresh process per model.

    `cfg` gives the model sizes (default: ModelConfig with mcb_dim 4000); its name is ignored.
    """
    cfg_dict = dataclasses.asdict(cfg or DEFAULT_BENCH_CFG)
    shape = dict(batch_size=batch_size, steps=steps, regions=regions or image_grid * image_grid)
    shape |= dict(
        image_dim=image_dim, num_answers=num_answers, num_tokens=num_tokens, question_len=question_len
    )
    args = (cfg_dict, shape, device or default_device(), precision)
    return [run_isolated(_model_worker, name, *args) for name in (models or sorted(MODELS))]


def compact_bilinear_outer(layer: CompactBilinearPooling, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The naive reference for `layer` (before normalization): build x ⊗ y [B, D1*D2] and count-sketch it
    with hash (h1(i) + h2(j)) mod d and sign s1(i) s2(j); equal to the FFT result up to float rounding, at
    O(D1 * D2) memory per sample."""
    d = layer.out_dim
    outer = torch.einsum("bi,bj->bij", x.float(), y.float()).flatten(1)  # [B, D1*D2]
    hash_ = ((layer.hash1[:, None] + layer.hash2[None, :]) % d).flatten()  # [D1*D2]
    sign = (layer.sign1[:, None] * layer.sign2[None, :]).flatten()  # [D1*D2]
    return count_sketch(outer, hash_, sign, d)  # [B, d]


def _mcb_worker(impl: str, batch_size: int, d1: int, d2: int, out_dim: int, steps: int, device: str) -> dict:
    dev = torch.device(device)
    layer = CompactBilinearPooling(d1, d2, out_dim, seed=0, normalize=False).to(dev)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, d1, generator=g).to(dev).requires_grad_()  # [B, d1]
    y = torch.randn(batch_size, d2, generator=g).to(dev).requires_grad_()  # [B, d2]
    fn = layer if impl == "fft" else lambda a, b: compact_bilinear_outer(layer, a, b)

    def step():
        x.grad = y.grad = None
        fn(x, y).square().sum().backward()

    seconds, peak = measure_steps(step, steps, dev)
    with torch.no_grad():
        out = fn(x, y).cpu().numpy()  # numpy: a torch tensor would travel by shared memory of a dead process
    return {"seconds": seconds, "peak_mib": peak, "out": out}


def bench_mcb(
    batch_size: int = 32,
    d1: int = 512,
    d2: int = 512,
    out_dim: int = 4000,
    steps: int = 5,
    device: str | None = None,
) -> dict:
    """CompactBilinearPooling (count sketches + FFT) against the naive layer that builds the
    [B, d1*d2] outer product and count-sketches it: forward+backward time and peak memory of
    each, measured back to back in one call, and their ratios (naive / FFT)."""
    device = device or default_device()
    fft = run_isolated(_mcb_worker, "fft", batch_size, d1, d2, out_dim, steps, device)
    naive = run_isolated(_mcb_worker, "naive", batch_size, d1, d2, out_dim, steps, device)
    return {
        "batch_size": batch_size,
        "d1": d1,
        "d2": d2,
        "out_dim": out_dim,
        "device": device,
        "fft_ms": round(fft["seconds"] * 1e3, 2),
        "naive_ms": round(naive["seconds"] * 1e3, 2),
        "speedup": round(naive["seconds"] / fft["seconds"], 1),
        "fft_peak_mib": round(fft["peak_mib"], 1),
        "naive_peak_mib": round(naive["peak_mib"], 1),
        "memory_ratio": round(naive["peak_mib"] / max(fft["peak_mib"], 1e-3), 1),
        "max_abs_diff": float(abs(fft["out"] - naive["out"]).max()),  # the two must agree
    }


def run_models(opts: argparse.Namespace) -> dict:
    """Every model at the `paper` preset's sizes: the box model on boxes, the others on the grid."""
    batch_size, steps = (16, 2) if opts.quick else (64, 5)
    grid_models = [m for m in sorted(MODELS) if m not in BOX_MODELS]
    box_models = [m for m in sorted(MODELS) if m in BOX_MODELS]
    common = dict(batch_size=batch_size, steps=steps, cfg=DEFAULT_BENCH_CFG, precision=opts.precision)
    rows = bench_models(image_grid=PAPER_GRID, image_dim=PAPER_GRID_DIM, models=grid_models, **common)
    rows += bench_models(regions=PAPER_BOXES, image_dim=PAPER_BOX_DIM, models=box_models, **common)
    grid, boxes = (
        f"{PAPER_GRID}x{PAPER_GRID} grid x {PAPER_GRID_DIM}",
        f"{PAPER_BOXES} boxes x {PAPER_BOX_DIM}",
    )
    for row in rows:
        row["image"] = boxes if row["model"] in BOX_MODELS else grid
    names = ("embed_dim", "rnn_dim", "hidden_dim", "attention_dim", "glimpses", "mcb_dim")
    sizes = {k: getattr(DEFAULT_BENCH_CFG, k) for k in names}
    return {"batch_size": batch_size, "steps": steps, "sizes": sizes, "rows": rows}


def models_markdown(r: dict) -> list[str]:
    device = r["rows"][0]["device"] if r["rows"] else "cpu"
    sizes = ", ".join(f"{k} {v:,}" for k, v in r["sizes"].items())
    lines = [
        f"### Models: forward+backward at the synthetic `paper` sizes, batch {r['batch_size']}, {device}",
        "",
        f"ModelConfig defaults ({sizes}); 3,000 answers; median of {r['steps']} steps after one warm-up step, "
        "each model in a fresh process. Peak memory: growth of the process's high-water RSS over the steps"
        + (" (CUDA: max allocated)." if device.startswith("cuda") else "."),
        "",
        "| model | image input | parameters | ms / step | samples / s | peak MiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {x['model']} | {x['image']} | {x['params']:,} | {x['step_ms']:,.1f} | {x['samples_per_s']:,.1f} "
        f"| {x['peak_mib']:,.1f} |"
        for x in r["rows"]
    ]
    return [*lines, ""]


def run_mcb(opts: argparse.Namespace) -> dict:
    # one MCB layer as the model's attention uses it: the question vector meets a 256-d grid cell
    sizes = dict(d1=DEFAULT_BENCH_CFG.rnn_dim, d2=PAPER_GRID_DIM, out_dim=DEFAULT_BENCH_CFG.mcb_dim)
    return bench_mcb(batch_size=8 if opts.quick else 32, steps=2 if opts.quick else 5, **sizes)


def mcb_markdown(r: dict) -> list[str]:
    outer = r["d1"] * r["d2"]
    return [
        f"### MCB layer: count sketch + FFT vs the naive outer product, batch {r['batch_size']}, {r['device']}",
        "",
        f"x {r['d1']}-d (question) and y {r['d2']}-d (grid cell) -> {r['out_dim']:,}-d sketch; the naive layer "
        f"builds x (x) y ({outer:,} values per sample) and count-sketches it. Forward+backward, median of "
        "steps, each implementation in a fresh process, one after the other.",
        "",
        "| implementation | ms / step | peak MiB |",
        "|---|---:|---:|",
        f"| FFT (`CompactBilinearPooling`) | {r['fft_ms']:,.2f} | {r['fft_peak_mib']:,.1f} |",
        f"| naive outer product (`compact_bilinear_outer`) | {r['naive_ms']:,.2f} | {r['naive_peak_mib']:,.1f} |",
        "",
        f"- time naive / FFT: **{r['speedup']:.1f}x**; peak memory naive / FFT: **{r['memory_ratio']:.1f}x**; "
        f"outputs agree to {r['max_abs_diff']:.1e} (max abs difference)",
        "",
    ]

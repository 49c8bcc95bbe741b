"""Model benchmarks: forward+backward throughput and peak memory, and MCB (FFT) vs the naive outer product.

Each measurement runs in a fresh process (multiprocessing "spawn"), one after the
other, so its peak memory is its own: on the CPU the growth of the process's
high-water RSS (`ru_maxrss`) over the steps, which counts what the allocator
really took (activations, gradients, FFT buffers) and not parameters or the
inputs built before; on CUDA `torch.cuda.max_memory_allocated` over the steps.
`vqa/bench.py` calls `bench_models()` and `bench_mcb()`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vqa.config import ModelConfig

# Model sizes: ModelConfig defaults, except MCB. At the paper's 16,000 dimensions over 196
# cells MCB needs ~5 GiB and tens of seconds per batch-64 step on a 2-core CPU (measured:
# 1.3 GiB, ~10 s at batch 16), so the default here is 4,000; pass `cfg` for other sizes.
DEFAULT_BENCH_CFG = ModelConfig(mcb_dim=4000)


def _max_rss_mib() -> float:
    """This process's peak resident set in MiB: VmHWM on Linux.

    Not ru_maxrss: it survives fork + exec, so a worker spawned by a large parent starts with
    the parent's peak and shows no growth. VmHWM belongs to the address space exec replaces.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def _measure(step, steps: int, device: torch.device) -> tuple[float, float]:
    """(median seconds per step, peak MiB during the steps) after one warm-up step."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _max_rss_mib()
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        if i > 0:  # the first step warms up allocator and kernels
            times.append(time.perf_counter() - start)
    times.sort()
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if cuda else _max_rss_mib() - base
    return times[len(times) // 2], peak


def _model_worker(
    name: str,
    cfg: dict,
    batch_size: int,
    steps: int,
    regions: int,
    image_dim: int,
    num_answers: int,
    num_tokens: int,
    question_len: int,
    device: str,
    precision: str = "fp32",
) -> dict:
    from vqa.models import build_model
    from vqa.train import autocast

    torch.manual_seed(0)
    dev = torch.device(device)
    model_cfg = dataclasses.replace(ModelConfig(**cfg), name=name)
    model = build_model(model_cfg, num_tokens, num_answers, image_dim).to(dev).train()
    question = torch.randint(1, num_tokens, (batch_size, question_len), device=dev)
    question_len_t = torch.full((batch_size,), question_len, dtype=torch.long, device=dev)
    image = torch.randn(batch_size, regions, image_dim, device=dev)
    image_mask = torch.ones(batch_size, regions, dtype=torch.bool, device=dev)
    answer = torch.randint(0, num_answers, (batch_size,), device=dev)

    def step():
        model.zero_grad(set_to_none=True)
        with autocast(dev, precision):
            logits = model(question, question_len_t, image, image_mask)
        F.cross_entropy(logits.float(), answer).backward()

    seconds, peak = _measure(step, steps, dev)
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


def _mcb_worker(impl: str, batch_size: int, d1: int, d2: int, out_dim: int, steps: int, device: str) -> dict:
    from vqa.models.mcb import CompactBilinearPooling, compact_bilinear_outer

    dev = torch.device(device)
    layer = CompactBilinearPooling(d1, d2, out_dim, seed=0, normalize=False).to(dev)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, d1, generator=g).to(dev).requires_grad_()
    y = torch.randn(batch_size, d2, generator=g).to(dev).requires_grad_()
    fn = layer if impl == "fft" else lambda a, b: compact_bilinear_outer(layer, a, b)

    def step():
        x.grad = y.grad = None
        fn(x, y).square().sum().backward()

    seconds, peak = _measure(step, steps, dev)
    with torch.no_grad():
        out = fn(x, y).cpu().numpy()  # numpy: a torch tensor would travel by shared memory of a dead process
    return {"seconds": seconds, "peak_mib": peak, "out": out}


def _run_isolated(fn, *args):
    """fn(*args) in a fresh spawned process; returns its result."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


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
    from vqa.models import MODELS

    cfg_dict = dataclasses.asdict(cfg or DEFAULT_BENCH_CFG)
    device = device or _default_device()
    args = (
        batch_size,
        steps,
        regions or image_grid * image_grid,
        image_dim,
        num_answers,
        num_tokens,
        question_len,
        device,
        precision,
    )
    return [_run_isolated(_model_worker, name, cfg_dict, *args) for name in (models or sorted(MODELS))]


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
    device = device or _default_device()
    fft = _run_isolated(_mcb_worker, "fft", batch_size, d1, d2, out_dim, steps, device)
    naive = _run_isolated(_mcb_worker, "naive", batch_size, d1, d2, out_dim, steps, device)
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

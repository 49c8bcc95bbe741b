"""`make bench`: speed and memory figures, each measured as a ratio within one run.

Absolute timings on a shared 2-core machine are noise; ratios of two implementations
timed back to back in the same process are not. Writes bench/results.json and
bench/results.md and prints the Markdown.

    python -m vqa.bench [--out bench] [--only losses,models,...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from vqa.data.dataset import Batch
from vqa.losses import LOSSES


def time_it(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds per call over `repeats` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of live tensor storage created by the ops run inside it, on any device.

    Every op (backward ops included: autograd runs them on this thread for CPU
    tensors) passes through __torch_dispatch__; each new storage is counted once and
    uncounted when it is freed. Deterministic, unlike process RSS.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, weakref.finalize] = {}

    def _free(self, key: int, nbytes: int) -> None:
        if self._live.pop(key, None) is not None:
            self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key, nbytes = storage.data_ptr(), storage.nbytes()
                if nbytes and key not in self._live:
                    self._live[key] = weakref.finalize(storage, self._free, key, nbytes)
                    self.current += nbytes
                    self.peak = max(self.peak, self.current)
        return out


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of tensors allocated during one call of `fn` (above what was live before)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with LiveTensorBytes() as tracker:
        fn()
    return tracker.peak


def dense_soft_ce(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The reference the sparse loss avoids: a dense [B, A] target built by scatter."""
    target = torch.zeros_like(logits, dtype=torch.float32)  # [B, A]
    target.scatter_add_(1, batch.answer_idx, batch.answer_weight)
    return -(target * torch.log_softmax(logits.float(), 1)).sum(1).mean()


def random_batch(batch_size: int, num_answers: int, k: int = 10, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(num_answers, generator=g)[:k] for _ in range(batch_size)])  # [B, K]
    counts = torch.randint(0, 4, (batch_size, k), generator=g).float()
    weight = counts / counts.sum(1, keepdim=True).clamp(min=1)
    score = torch.clamp(counts * 0.3, max=1.0)
    return Batch(
        question=torch.zeros(batch_size, 1, dtype=torch.long),
        question_len=torch.ones(batch_size, dtype=torch.long),
        image=torch.zeros(batch_size, 1, 1),
        image_mask=torch.ones(batch_size, 1, dtype=torch.bool),
        answer=idx[:, 0].clone(),
        answer_idx=idx,
        answer_weight=weight,
        answer_score=score,
        question_id=torch.arange(batch_size),
    )


def bench_losses(batch_size: int = 512, num_answers: int = 3000, repeats: int = 50) -> dict:
    """Forward+backward of soft_ce, hard_ce and a dense soft-target reference, one run."""
    batch = random_batch(batch_size, num_answers)
    logits = torch.randn(
        batch_size, num_answers, generator=torch.Generator().manual_seed(1), requires_grad=True
    )

    def step(fn):
        def run():
            logits.grad = None
            fn(logits, batch).backward()

        return run

    fns = {"soft_ce": LOSSES["soft_ce"], "hard_ce": LOSSES["hard_ce"], "dense_soft_ce": dense_soft_ce}
    seconds = {name: time_it(step(fn), repeats) for name, fn in fns.items()}
    peak = {name: peak_bytes(step(fn)) for name, fn in fns.items()}
    return {
        "batch_size": batch_size,
        "num_answers": num_answers,
        "ms": {k: 1000 * v for k, v in seconds.items()},
        "peak_mib": {k: v / 2**20 for k, v in peak.items()},
        "time_soft_over_hard": seconds["soft_ce"] / seconds["hard_ce"],
        "time_dense_over_sparse": seconds["dense_soft_ce"] / seconds["soft_ce"],
        "memory_soft_over_hard": peak["soft_ce"] / max(peak["hard_ce"], 1),
        "memory_dense_over_sparse": peak["dense_soft_ce"] / max(peak["soft_ce"], 1),
    }


def losses_markdown(r: dict) -> list[str]:
    lines = [
        f"### Losses: forward+backward, batch {r['batch_size']}, {r['num_answers']:,} answers",
        "",
        "| loss | ms | peak MiB |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {r['ms'][k]:.3f} | {r['peak_mib'][k]:.2f} |" for k in r["ms"]]
    lines += [
        "",
        f"- time soft_ce / hard_ce: **{r['time_soft_over_hard']:.2f}x**; dense / sparse soft_ce: **{r['time_dense_over_sparse']:.2f}x**",
        f"- peak memory soft_ce / hard_ce: **{r['memory_soft_over_hard']:.2f}x**; dense / sparse soft_ce: **{r['memory_dense_over_sparse']:.2f}x**",
        "",
    ]
    return lines


def eval_markdown(r: dict) -> list[str]:
    ref = (
        "scaled from " + f"{r['reference_questions']:,} questions"
        if r.get("reference_scaled")
        else "all questions"
    )
    return [
        f"### Official scoring (val2014 has 214,354 questions): {r['questions']:,} questions, {r['answers']:,} answers",
        "",
        "| path | seconds |",
        "|---|---:|",
        f"| cached normalization + closed form (`official_scores`) | {r['fast_s']:.2f} |",
        f"| whole `evaluate()` report | {r['evaluate_s']:.2f} |",
        f"| pure-Python per-question loop, official rules ({ref}) | {r['reference_s']:.2f} |",
        "",
        f"- speed-up: **{r['speedup']:.1f}x**; both paths agree: {r['agree']}",
        "",
    ]


def _bench_eval(opts: argparse.Namespace) -> dict:
    quick = opts.quick
    from vqa.evaluate import bench_eval

    return bench_eval(n_questions=20000 if quick else 214354, reference_questions=2000 if quick else 10000)


def pipeline_markdown(r: dict) -> list[str]:
    lines = [
        f"### Pipeline efficiency: synthetic `{r['preset']}` features from HDF5 on disk vs the same batches in memory",
        "",
        f"{r['batches']} training batches per measurement, rounds alternating disk and memory (median of the "
        f"per-round ratios), {r['num_workers']} DataLoader worker(s), "
        f"sampler {r['sampler']}, {r['device']}.",
        "",
        "| model | batch | image features | disk samples/s | in-memory samples/s | efficiency |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, m in r["models"].items():
        lines.append(
            f"| {name} | {m['batch_size']} | {m['image']} | {m['disk_samples_per_s']:.1f} | "
            f"{m['memory_samples_per_s']:.1f} | **{m['efficiency']:.3f}** |"
        )
    return [*lines, ""]


def memory_markdown(r: dict) -> list[str]:
    lines = [
        "### Peak resident memory: load the splits, build the datasets, train 20 steps (AVG, region boxes)",
        "",
        "| preset | train questions | val questions | train images | answers | load s | peak RSS after data MiB | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in r["presets"].items():
        lines.append(
            f"| {name} | {m['train_questions']:,} | {m['val_questions']:,} | {m['train_images']:,} | {m['answers']:,} | "
            f"{m['load_seconds']:.1f} | {m['peak_rss_mib_after_data']:.0f} | {m['peak_rss_mib']:.0f} |"
        )
    g = r["growth"]
    lines += ["", f"- questions grow **{g['questions']:.1f}x**, peak RSS grows **{g['peak_rss']:.2f}x**", ""]
    return lines


def _bench_pipeline(opts: argparse.Namespace) -> dict:
    quick = opts.quick
    from vqa.bench_pipeline import bench_pipeline

    return bench_pipeline(
        preset="small" if quick else "paper",
        batches=5 if quick else 10,
        rounds=2 if quick else 4,
        precision=opts.precision,
    )


def _bench_memory(opts: argparse.Namespace) -> dict:
    quick = opts.quick
    from vqa.bench_pipeline import bench_memory

    return bench_memory(presets=("tiny", "small") if quick else ("paper", "vqa2"))


# The synthetic `paper` preset (vqa.data.synthetic.PRESETS): a 14 x 14 grid of 256-d cells, and
# 512-d region boxes, 2-17 per image; a batch of 64 pads to its largest image, about 15 boxes.
PAPER_GRID, PAPER_GRID_DIM, PAPER_BOXES, PAPER_BOX_DIM = 14, 256, 16, 512
BOX_MODELS = ("updn",)  # the region-box model; the others read the grid, as in their papers


def _bench_models(opts: argparse.Namespace) -> dict:
    quick = opts.quick
    from vqa.bench_models import DEFAULT_BENCH_CFG, bench_models
    from vqa.models import MODELS

    batch_size, steps = (16, 2) if quick else (64, 5)
    grid_models = [m for m in sorted(MODELS) if m not in BOX_MODELS]
    box_models = [m for m in sorted(MODELS) if m in BOX_MODELS]
    common = dict(batch_size=batch_size, steps=steps, cfg=DEFAULT_BENCH_CFG, precision=opts.precision)
    rows = bench_models(image_grid=PAPER_GRID, image_dim=PAPER_GRID_DIM, models=grid_models, **common)
    rows += bench_models(regions=PAPER_BOXES, image_dim=PAPER_BOX_DIM, models=box_models, **common)
    for row in rows:
        row["image"] = (
            f"{PAPER_BOXES} boxes x {PAPER_BOX_DIM}"
            if row["model"] in BOX_MODELS
            else f"{PAPER_GRID}x{PAPER_GRID} grid x {PAPER_GRID_DIM}"
        )
    cfg = DEFAULT_BENCH_CFG
    sizes = dict(embed_dim=cfg.embed_dim, rnn_dim=cfg.rnn_dim, hidden_dim=cfg.hidden_dim,
                 attention_dim=cfg.attention_dim, glimpses=cfg.glimpses, mcb_dim=cfg.mcb_dim)  # fmt: skip
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


def _bench_mcb(opts: argparse.Namespace) -> dict:
    quick = opts.quick
    from vqa.bench_models import DEFAULT_BENCH_CFG, bench_mcb

    # one MCB layer as the model's attention uses it: the question vector meets a 256-d grid cell
    return bench_mcb(batch_size=8 if quick else 32, d1=DEFAULT_BENCH_CFG.rnn_dim, d2=PAPER_GRID_DIM,
                     out_dim=DEFAULT_BENCH_CFG.mcb_dim, steps=2 if quick else 5)  # fmt: skip


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


BENCHMARKS: dict[str, tuple[Callable[[argparse.Namespace], dict], Callable[[dict], list[str]]]] = {
    "losses": (lambda opts: bench_losses(repeats=10 if opts.quick else 50), losses_markdown),
    "eval": (_bench_eval, eval_markdown),
    "pipeline": (_bench_pipeline, pipeline_markdown),
    "memory": (_bench_memory, memory_markdown),
    "models": (_bench_models, models_markdown),
    "mcb": (_bench_mcb, mcb_markdown),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vqa.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench", help="folder for results.json and results.md")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (smoke run)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="autocast precision of the models and pipeline benchmarks")  # fmt: skip
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    torch.manual_seed(0)
    results = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        }
    }
    md = [
        "# vqa benchmarks",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'CUDA ' + results['machine']['cuda'] if results['machine']['cuda'] else 'CPU'}",
        "",
    ]
    for name in names:
        run, fmt = BENCHMARKS[name]
        start = time.perf_counter()
        results[name] = run(args)
        results[name]["bench_seconds"] = time.perf_counter() - start
        md += fmt(results[name])
    results["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text("\n".join(md))
    print("\n".join(md))
    print(f"written: {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

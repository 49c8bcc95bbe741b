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


def _bench_eval(quick: bool) -> dict:
    from vqa.evaluate import bench_eval

    return bench_eval(n_questions=20000 if quick else 214354, reference_questions=2000 if quick else 10000)


BENCHMARKS: dict[str, tuple[Callable[[bool], dict], Callable[[dict], list[str]]]] = {
    "losses": (lambda quick: bench_losses(repeats=10 if quick else 50), losses_markdown),
    "eval": (_bench_eval, eval_markdown),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vqa.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench", help="folder for results.json and results.md")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (smoke run)")
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
        results[name] = run(args.quick)
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

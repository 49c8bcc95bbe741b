"""Losses benchmark: the sparse soft cross-entropy against hard cross-entropy and a dense reference.

The claim it backs (vqa/losses.py): sparse soft targets ([B, K], K <= 10) cost about what hard
cross-entropy costs (target: soft_ce forward+backward at most 1.1x hard_ce at 3,000 answers), the dense
[B, A] target more. The log-softmax both share is timed alone too, so what remains is each loss's own.
Rounds time every function once in a rotating order; ratios are medians of within-round ratios, so
load that comes and goes hits both alike. `random_batch` and `dense_soft_ce` serve the loss tests too.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from vqa.bench.measure import default_device, peak_bytes, time_it
from vqa.data.dataset import Batch
from vqa.losses import LOSSES


def random_batch(batch_size: int, num_answers: int, k: int = 10, seed: int = 0) -> Batch:
    """A Batch with random sparse targets: k distinct answers per question, counts 0-3 each.

    Only the target fields are meaningful; question and image are one-element placeholders.
    """
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(num_answers, generator=g)[:k] for _ in range(batch_size)])  # [B, K]
    counts = torch.randint(0, 4, (batch_size, k), generator=g).float()  # [B, K]
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
        question_type=torch.full((batch_size,), -1, dtype=torch.long),
    )


def dense_soft_ce(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The reference the sparse loss avoids: a dense [B, A] target built by scatter."""
    target = torch.zeros_like(logits, dtype=torch.float32)  # [B, A]
    target.scatter_add_(1, batch.answer_idx, batch.answer_weight)
    return -(target * torch.log_softmax(logits.float(), 1)).sum(1).mean()


TARGET_SOFT_OVER_HARD = 1.1  # soft_ce forward+backward time over hard_ce's, at 3,000 answers


def _loss_steps(batch_size: int, num_answers: int, device: torch.device) -> dict:
    """name -> one forward+backward on the same random logits: both losses, the dense reference, and
    the log-softmax the two losses share (backward from a dense gradient)."""
    batch = random_batch(batch_size, num_answers).to(device)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(batch_size, num_answers, generator=g, device="cpu").to(device).requires_grad_()
    grad = torch.full((batch_size, num_answers), 1.0 / batch_size, device=device)

    def step(fn):
        def run():
            logits.grad = None
            fn(logits, batch).backward()

        return run

    def log_softmax_only():
        logits.grad = None
        torch.log_softmax(logits.float(), dim=1).backward(grad)

    steps = {name: step(LOSSES[name]) for name in ("soft_ce", "hard_ce")}
    return steps | {"dense_soft_ce": step(dense_soft_ce), "log_softmax": log_softmax_only}


def _interleaved_seconds(steps: dict, repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Each step's seconds in `repeats` rounds, every step once per round in a rotating order."""
    names = list(steps)
    for run in steps.values():  # warm-up
        for _ in range(3):
            run()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds[name].append(time_it(steps[name], repeats=1, warmup=0, device=device))
    return seconds


def bench_losses(
    batch_size: int = 512,
    num_answers: int = 3000,
    repeats: int = 50,
    device: str | torch.device | None = None,
) -> dict:
    """Forward+backward time (interleaved rounds) and peak memory of soft_ce, hard_ce, the dense reference
    and the log-softmax both losses run (forward, and backward from a dense gradient), on one device."""
    device = torch.device(device or default_device())
    steps = _loss_steps(batch_size, num_answers, device)
    seconds = _interleaved_seconds(steps, repeats, device)

    def paired(a: str, b: str) -> float:  # median over rounds of a's time over b's, same round
        return statistics.median(x / y for x, y in zip(seconds[a], seconds[b]))

    ratio = paired("soft_ce", "hard_ce")
    ms = {name: 1000 * statistics.median(v) for name, v in seconds.items()}
    peak = {name: peak_bytes(step, device=device) for name, step in steps.items() if name != "log_softmax"}
    return {
        "device": str(device),
        "batch_size": batch_size,
        "num_answers": num_answers,
        "rounds": repeats,
        "ms": ms,
        "peak_mib": {k: v / 2**20 for k, v in peak.items()},
        "time_soft_over_hard": ratio,
        "target_soft_over_hard": TARGET_SOFT_OVER_HARD,
        "target_holds": ratio <= TARGET_SOFT_OVER_HARD,
        "log_softmax_share": {k: paired("log_softmax", k) for k in ("soft_ce", "hard_ce")},
        "time_dense_over_sparse": paired("dense_soft_ce", "soft_ce"),
        "memory_soft_over_hard": peak["soft_ce"] / max(peak["hard_ce"], 1),
        "memory_dense_over_sparse": peak["dense_soft_ce"] / max(peak["soft_ce"], 1),
    }


def run(opts: argparse.Namespace) -> dict:
    return bench_losses(repeats=10 if opts.quick else 100)


def markdown(r: dict) -> list[str]:
    ms, share = r["ms"], r["log_softmax_share"]
    lines = [
        f"### Losses: forward+backward, batch {r['batch_size']}, {r['num_answers']:,} answers, {r['device']} "
        f"(median of {r['rounds']} interleaved rounds)",
        "",
        "| loss | ms | peak MiB |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {ms[k]:.3f} | {r['peak_mib'][k]:.2f} |" for k in r["peak_mib"]]
    lines += [
        f"| log_softmax alone (shared by both losses) | {ms['log_softmax']:.3f} | |",
        "",
        f"- time soft_ce / hard_ce: **{r['time_soft_over_hard']:.3f}x** (median of the per-round ratios); "
        f"target <= {r['target_soft_over_hard']:.1f}x: **{'holds' if r['target_holds'] else 'does NOT hold'}**",
        f"- the shared log-softmax (forward + backward from a dense gradient) takes {100 * share['hard_ce']:.0f}% "
        f"of hard_ce's time and {100 * share['soft_ce']:.0f}% of soft_ce's (per-round ratios); the rest is "
        "each loss's own (target gather / scatter, the dense gradient's allocation)",
        f"- dense / sparse soft_ce: **{r['time_dense_over_sparse']:.2f}x** time; peak memory soft_ce / hard_ce: "
        f"**{r['memory_soft_over_hard']:.2f}x**, dense / sparse soft_ce: **{r['memory_dense_over_sparse']:.2f}x**",
        "",
    ]
    return lines

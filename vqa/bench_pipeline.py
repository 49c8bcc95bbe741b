"""Data-pipeline benchmarks behind `make bench` (vqa/bench.py wires them in).

- Pipeline efficiency: training samples/s reading HDF5 features from disk through the
  DataLoader, divided by samples/s on the very same batches already collated in memory.
  1.0 means the input pipeline costs nothing; both are measured in one process, back to back.
- Memory: peak resident memory of a process that loads a split, builds the datasets and
  trains a few steps, for the synthetic `paper` preset and for a preset with VQA v2's
  image and question counts; the ratio shows how memory grows with the dataset.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

from vqa.bench_models import _max_rss_mib as peak_rss_mib
from vqa.config import Config, load_config
from vqa.data.dataset import EpochSampler, build_loader
from vqa.losses import get_loss
from vqa.models import build_model
from vqa.train import autocast, build_optimizer, prepare_data

SYNTHETIC_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "synthetic"


def synthetic_config(model: str, preset: str, *overrides: str) -> Config:
    """The shipped synthetic config of `model` (soft loss) pointed at `data/synthetic/<preset>`."""
    path = SYNTHETIC_CONFIGS / f"{model}_soft.yaml"
    base = [f"model.name={model}"] if not path.exists() else []
    return load_config(
        path if path.exists() else SYNTHETIC_CONFIGS / "avg_soft.yaml",
        [*base, f"data.root=data/synthetic/{preset}", f"data.synth_preset={preset}", *overrides],
    )


def ensure_data(cfg: Config) -> None:
    from vqa.train import ensure_synthetic

    ensure_synthetic(cfg)


def _train_steps(model, loss_fn, optimizer, batches, device, precision: str = "fp32") -> float:
    """Samples per second of full training steps (fetch included when `batches` is a loader iterator)."""
    start = time.perf_counter()
    n = 0
    for batch in batches:
        batch = batch.to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(batch.question, batch.question_len, batch.image, batch.image_mask)
        loss = loss_fn(logits.float(), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += batch.question.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def bench_pipeline(
    models: tuple[str, ...] = ("avg", "pool"),
    preset: str = "paper",
    batches: int = 10,
    num_workers: int = 1,
    sampler: str = "random",
    rounds: int = 4,
    device: str | None = None,
    precision: str = "fp32",
) -> dict:
    """Pipeline efficiency per model: disk samples/s over in-memory samples/s, same batches, one run."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    results = {"preset": preset, "batches": batches, "num_workers": num_workers, "sampler": sampler,
               "device": str(device), "precision": precision, "models": {}}  # fmt: skip
    for name in models:
        cfg = synthetic_config(name, preset, f"data.num_workers={num_workers}", f"data.sampler={sampler}")
        ensure_data(cfg)
        data = prepare_data(cfg)
        torch.manual_seed(0)
        model = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim).to(device)
        optimizer = build_optimizer(cfg, model)
        loss_fn = get_loss(cfg.train.loss)
        model.train()
        sampler_ = EpochSampler(data.train, shuffle=True, seed=0, group_by_image=sampler == "image_grouped")
        loader = build_loader(data.train, cfg.train.batch_size, sampler_, num_workers,
                              pin_memory=device.type == "cuda")  # fmt: skip
        # Rounds alternate disk and memory on the same batches, so load from other processes
        # drifts into both alike; the median of the per-round ratios is reported.
        disk, memory = [], []
        for r in range(rounds):
            sampler_.set_epoch(r)
            it = iter(loader)
            _train_steps(model, loss_fn, optimizer, itertools.islice(it, 2), device, precision)  # warm-up
            disk.append(
                _train_steps(model, loss_fn, optimizer, itertools.islice(it, batches), device, precision)
            )
            del it
            sampler_.set_epoch(r)
            cached = list(itertools.islice(iter(loader), 2 + batches))[2:]  # the same batches, in memory
            memory.append(_train_steps(model, loss_fn, optimizer, cached, device, precision))
        ratios = sorted(d / m for d, m in zip(disk, memory))
        disk_rate, mem_rate = float(np.median(disk)), float(np.median(memory))
        results["models"][name] = {
            "batch_size": cfg.train.batch_size,
            "image": f"{cfg.data.features} dim {data.image_dim}",
            "disk_samples_per_s": disk_rate,
            "memory_samples_per_s": mem_rate,
            "efficiency": float(np.median(ratios)),
            "efficiency_rounds": ratios,
        }
    return results


def _memory_worker(preset: str, steps: int, queue) -> None:
    cfg = synthetic_config("avg", preset, "data.features=boxes", "model.rnn_dim=256", "model.hidden_dim=512")
    start = time.perf_counter()
    data = prepare_data(cfg)
    rss_data = peak_rss_mib()
    torch.manual_seed(0)
    model = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim)
    optimizer = build_optimizer(cfg, model)
    loader = build_loader(data.train, cfg.train.batch_size, EpochSampler(data.train, seed=0))
    _train_steps(
        model, get_loss("soft_ce"), optimizer, itertools.islice(iter(loader), steps), torch.device("cpu")
    )
    queue.put({
        "preset": preset,
        "train_questions": len(data.train),
        "val_questions": len(data.val),
        "train_images": len(set(data.train.image_id.tolist())),
        "answers": len(data.avocab),
        "load_seconds": time.perf_counter() - start,
        "peak_rss_mib_after_data": rss_data,
        "peak_rss_mib": peak_rss_mib(),
    })  # fmt: skip


def bench_memory(presets: tuple[str, ...] = ("paper", "vqa2"), steps: int = 20) -> dict:
    """Peak resident memory of data loading + `steps` training steps, one fresh process per preset."""
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for preset in presets:
        ensure_data(synthetic_config("avg", preset))
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_worker, args=(preset, steps, queue))
        proc.start()
        out[preset] = queue.get()
        proc.join()
    first, last = out[presets[0]], out[presets[-1]]
    growth = {
        "questions": (last["train_questions"] + last["val_questions"])
        / (first["train_questions"] + first["val_questions"]),
        "peak_rss": last["peak_rss_mib"] / first["peak_rss_mib"],
    }
    return {"presets": out, "growth": growth}

"""Pipeline-efficiency benchmark: training samples/s reading HDF5 features from disk through the
DataLoader, divided by samples/s on the very same batches already collated in memory.

1.0 means the input pipeline costs nothing. Both rates are measured in one process, back to back,
on the shipped synthetic configs pointed at a synthetic preset (generated on first use).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from vqa.bench.measure import default_device
from vqa.config import Config, load_config
from vqa.data.build import build_datasets, ensure_synthetic
from vqa.data.dataset import Batch
from vqa.data.features import PRELOADS
from vqa.data.feed import build_loader
from vqa.data.loader import EpochSampler
from vqa.errors import UserError
from vqa.models import build_model
from vqa.training.timing import Steps

TARGET = 0.95  # disk / in-memory samples/s for every model at the default settings
DESIGNS = {  # how a round times disk against memory (`_disk_over_memory`)
    "paired": "each round one training run whose steps alternate the disk batch and the same batch in memory "
    "(each timed from its fetch to the next fetch: `paired_rates`).",
    "rounds": "each round the disk run, then the same batches in memory, back to back.",
}

SYNTHETIC_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "synthetic"


def synthetic_config(model: str, preset: str, *overrides: str) -> Config:
    """The shipped synthetic config of `model` (soft loss) pointed at `data/synthetic/<preset>`."""
    path = SYNTHETIC_CONFIGS / f"{model}_soft.yaml"
    base = [f"model.name={model}"] if not path.exists() else []
    return load_config(
        path if path.exists() else SYNTHETIC_CONFIGS / "avg_soft.yaml",
        [*base, f"data.root=data/synthetic/{preset}", f"data.synth_preset={preset}", *overrides],
    )


def bench_pipeline(
    models: tuple[str, ...] = ("avg", "pool"),
    preset: str = "paper",
    batches: int = 10,
    num_workers: int | None = None,
    sampler: str = "random",
    rounds: int = 4,
    device: str | None = None,
    precision: str = "fp32",
) -> dict:
    """Pipeline efficiency per model: disk samples/s over in-memory samples/s, same batches, one run.
    `num_workers` None: the configs' own setting (the default settings the target is about)."""
    device = torch.device(device or default_device())
    results = dict(preset=preset, batches=batches, rounds=rounds, sampler=sampler, device=str(device))
    results["precision"] = precision
    results["models"] = {}
    for name in models:
        workers = [] if num_workers is None else [f"data.num_workers={num_workers}"]
        cfg = synthetic_config(name, preset, *workers, f"data.sampler={sampler}")
        results["num_workers"] = num_workers = cfg.data.num_workers
        # paired steps where nothing overlaps a step (0 workers, the CPU); else back-to-back runs
        results["design"] = "paired" if device.type == "cpu" and num_workers == 0 else "rounds"
        results["models"][name] = _disk_over_memory(
            cfg, batches, rounds, device, precision, results["design"]
        )
    return results


def _disk_over_memory(cfg: Config, batches: int, rounds: int, device, precision: str, design: str) -> dict:
    """One model's disk and in-memory training rates, `rounds` times on the same batches (DESIGNS)."""
    ensure_synthetic(cfg)
    data = build_datasets(cfg)
    torch.manual_seed(0)
    model = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim).to(device)
    steps = Steps(cfg, model, device, precision)
    grouped = cfg.data.sampler == "image_grouped"
    sampler = EpochSampler(data.train, shuffle=True, seed=0, group_by_image=grouped)
    # disk: the trainer's loader (batches on the device through reused buffers); memory: the same
    # batches as host batches already collated, moved to the device inside the timed steps alike
    loader = build_loader(data.train, cfg.train.batch_size, sampler, cfg.data.num_workers, device=device)
    plain = build_loader(data.train, cfg.train.batch_size, sampler, pin_memory=device.type == "cuda")
    disk, memory = [], []
    for r in range(rounds):
        sampler.set_epoch(r)
        cached = list(itertools.islice(iter(plain), 2 + batches))[2:]  # the round's batches, in memory
        sampler.set_epoch(r)
        it = iter(loader)
        steps.run(it, 2)  # warm-up
        if design == "paired":
            d, m = paired_rates(steps, it, cached)
        else:
            d, m = steps.rate(it, batches), steps.rate(cached, batches)
        disk.append(d)
        memory.append(m)
        del it
    ratios = sorted(d / m for d, m in zip(disk, memory))
    return {
        "batch_size": cfg.train.batch_size,
        "image": f"{cfg.data.features} dim {data.image_dim}",
        "disk_samples_per_s": float(np.median(disk)),
        "memory_samples_per_s": float(np.median(memory)),
        "efficiency": float(np.median(ratios)),
        "efficiency_rounds": ratios,
    }


def paired_rates(steps: Steps, disk: Iterator[Batch], memory: list[Batch]) -> tuple[float, float]:
    """(disk, in-memory) samples/s of one training run whose steps alternate a batch fetched from `disk`
    and the same batch from `memory`, each batch timed from the start of its fetch to the start of the
    next one (its fetch and its step). Pairing step by step puts the host's drift into both alike,
    which consecutive runs of each cannot (their ratios spread by about +-0.1 on this shared machine).
    Fair only where nothing overlaps the steps (0 workers, the CPU: a step's time is its own)."""
    starts: list[tuple[str, float]] = []

    def alternate():
        for m in memory:
            starts.append(("disk", time.perf_counter()))
            yield next(disk)
            starts.append(("memory", time.perf_counter()))
            yield m
        starts.append(("end", time.perf_counter()))
        yield m  # taken only to time the last step (trained, not timed)

    steps.run(alternate(), 2 * len(memory) + 1)
    spent = {"disk": 0.0, "memory": 0.0}
    for (kind, start), (_, end) in itertools.pairwise(starts):
        spent[kind] += end - start
    samples = sum(b.question.shape[0] for b in memory)
    return samples / spent["disk"], samples / spent["memory"]


def run(opts: argparse.Namespace) -> dict:
    if opts.quick:
        return bench_pipeline(preset="small", batches=5, rounds=2, precision=opts.precision)
    return bench_pipeline(preset="paper", batches=30, rounds=10, precision=opts.precision)


def markdown(r: dict) -> list[str]:
    lines = [
        f"### Pipeline efficiency: synthetic `{r['preset']}` features from HDF5 on disk vs the same batches in memory",
        "",
        f"{r['rounds']} rounds of {r['batches']} training batches (median of the per-round ratios); "
        + DESIGNS[r["design"]]
        + f" {r['num_workers']} DataLoader worker(s), sampler {r['sampler']}, {r['device']}.",
        "",
        "| model | batch | image features | disk samples/s | in-memory samples/s | efficiency |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, m in r["models"].items():
        lines.append(
            f"| {name} | {m['batch_size']} | {m['image']} | {m['disk_samples_per_s']:.1f} | "
            f"{m['memory_samples_per_s']:.1f} | **{m['efficiency']:.3f}** |"
        )
    worst = min(m["efficiency"] for m in r["models"].values())
    lines += [
        "",
        f"- lowest efficiency **{worst:.3f}**; target >= {TARGET}: {'holds' if worst >= TARGET else 'missed'}",
    ]
    return [*lines, ""]


def epoch_rates(
    root: Path,
    model: str,
    features: str,
    device: str,
    precision: str = "fp32",
    preloads: tuple[str, ...] = PRELOADS,
    num_workers: int = 4,
    max_batches: int = 0,
    batch_size: int = 64,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Where an epoch's time goes: training samples/s of one epoch (capped at `max_batches` batches; 0: the
    whole epoch) through the trainer's loader for each preload mode, against the model-only rate (the model
    fed one batch already on the device, as many times). A preload that does not fit is reported, not run.
    `overrides`: further config settings (a smaller model for a dry run on the CPU)."""
    device_ = torch.device(device)
    out = dict(root=str(root), model=model, features=features, device=str(device_), precision=precision)
    out.update(num_workers=num_workers, batch_size=batch_size, rows=[])
    for preload in preloads:
        settings = [f"data.root={root}", "data.synth_preset=", f"data.features={features}"]
        settings += [f"data.preload={preload}", f"train.batch_size={batch_size}", *overrides]
        cfg = load_config(SYNTHETIC_CONFIGS / f"{model}_soft.yaml", settings)
        out["rows"].append(_preload_row(cfg, preload, device_, precision, num_workers, max_batches, out))
    return out


def _preload_row(cfg: Config, preload: str, device, precision: str, num_workers: int, max_batches: int, out):
    """One preload mode's epoch rate; sets out["model_only"] on the first mode that runs."""
    start = time.perf_counter()
    try:
        data = build_datasets(cfg)
        torch.manual_seed(0)
        net = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim).to(device)
        sampler = EpochSampler(data.train, seed=0)
        feed = build_loader(data.train, cfg.train.batch_size, sampler, num_workers, device=device)
    except UserError as e:
        return {"preload": preload, "refused": str(e)}
    setup = time.perf_counter() - start
    steps = Steps(cfg, net, device, precision)
    n = min(len(feed), max_batches or len(feed)) - 2
    it = iter(feed)
    warm = list(itertools.islice(it, 2))  # worker start-up and first kernels not counted
    steps.run(warm, 2)
    rate = steps.rate(it, n)
    del it
    if "model_only" not in out:
        out["model_only"] = steps.rate(itertools.repeat(warm[0]), n)
    row = {"preload": preload, "batches": n, "samples_per_s": rate, "setup_seconds": setup}
    return {**row, "of_model_only": rate / out["model_only"]}


def epoch_lines(r: dict) -> list[str]:
    """One line per preload mode, for scripts/gpu_check.sh's summary."""
    head = (
        f"{r['model']} {r['features']} on {r['device']} ({r['precision']}, batch {r['batch_size']}, "
        f"{r['num_workers']} workers): model only {r.get('model_only', float('nan')):,.0f} samples/s"
    )
    lines = [head]
    for m in r["rows"]:
        if "refused" in m:
            lines.append(f"  preload {m['preload']:6s}: refused: {m['refused']}")
        else:
            lines.append(
                f"  preload {m['preload']:6s}: {m['samples_per_s']:,.0f} samples/s over {m['batches']} batches "
                f"= {m['of_model_only']:.2f} of the model-only rate (setup {m['setup_seconds']:.1f}s)"
            )
    return lines

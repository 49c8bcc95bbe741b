"""`vqa bench`: run the selected benchmarks, print their Markdown, write results.json and results.md.

Each topic module gives `run(opts) -> dict` (the numbers) and a Markdown function (the section
README copies); BENCHMARKS lists them in the order `make bench` runs them.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from collections.abc import Callable

import torch

from vqa.bench import eval as eval_bench
from vqa.bench import loader, losses, memory, models, pipeline
from vqa.errors import UserError
from vqa.io import output_folder, write_json_atomic, write_text_atomic

# name -> (run(opts) -> results, results -> Markdown lines)
BENCHMARKS: dict[str, tuple[Callable[[argparse.Namespace], dict], Callable[[dict], list[str]]]] = {
    "losses": (losses.run, losses.markdown),
    "eval": (eval_bench.run, eval_bench.markdown),
    "pipeline": (pipeline.run, pipeline.markdown),
    "loader": (loader.run, loader.markdown),
    "memory": (memory.run, memory.markdown),
    "models": (models.run_models, models.models_markdown),
    "mcb": (models.run_mcb, models.mcb_markdown),
}


def selected(only: str) -> list[str]:
    """The benchmark names of `--only` (comma-separated; empty: all), checked against BENCHMARKS."""
    names = [n.strip() for n in only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise UserError(f"--only: unknown benchmark '{unknown[0]}'; choose from {', '.join(BENCHMARKS)}")
    return names


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def bench_command(args: argparse.Namespace) -> int:
    """Run `args.only` (default: all) with `args.quick` / `args.precision`; write into `args.out`."""
    names = selected(args.only)
    out = output_folder(args.out, "--out")
    torch.manual_seed(0)
    results: dict = {"machine": machine()}
    cuda = results["machine"]["cuda"]
    device = "CUDA " + cuda if cuda else "CPU"
    md = [
        "# vqa benchmarks",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}",
        "",
    ]
    for name in names:
        run, fmt = BENCHMARKS[name]
        start = time.perf_counter()
        results[name] = run(args)
        results[name]["bench_seconds"] = time.perf_counter() - start
        md += fmt(results[name])
    # this process only: the models, mcb and memory benchmarks measure in their own processes
    results["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_json_atomic(out / "results.json", results, indent=2)
    write_text_atomic(out / "results.md", "\n".join(md) + "\n")
    print("\n".join(md))
    print(f"written: {out / 'results.json'}, {out / 'results.md'}")
    return 0

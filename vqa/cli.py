"""`vqa` command line: `vqa <verb>` runs `<verb>_command(args)` of the module VERBS names, imported only
then, so `vqa --help` loads no torch, numpy or h5py. A UserError or OSError of any verb ends here as one
line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
from pathlib import Path

from vqa.choices import CHECKPOINTS, PRECISIONS
from vqa.errors import UserError, os_error_line
from vqa.synth.formats import FORMATS
from vqa.synth.presets import PRESETS, SIZE_KEYS


def _train_args(p: argparse.ArgumentParser) -> None:
    """Train a model from a YAML config."""
    add = p.add_argument
    add("--config", help="YAML experiment file (configs/...)")
    resume = "continue a run from its checkpoints/last.pt (a run without one starts from its config.yaml)"
    add("--resume", metavar="RUN_DIR", help=resume)
    checkpoint = "with --resume: the checkpoint to continue from (default: last; best rolls the run back to its best epoch)"
    add("--from", dest="checkpoint", choices=CHECKPOINTS, default="last", help=checkpoint)
    overwrite = "replace a run folder that holds a run of vqa (never a folder holding anything else)"
    add("--overwrite", action="store_true", help=overwrite)
    add("overrides", nargs="*", help="dotted key=value overrides, e.g. train.lr=3e-4 model.name=pool")


def _synth_args(p: argparse.ArgumentParser) -> None:
    """Write a synthetic dataset in an official format (JSON + HDF5 features)."""
    add = p.add_argument
    add("--out", required=True, type=Path, help="folder to write the dataset into")
    add("--preset", choices=tuple(PRESETS), default="small", help="sizes (default: small)")
    add("--seed", type=int, default=0, help="data seed (default: 0)")
    imitate = "the dataset whose files and annotators to imitate (default: vqa2; data/README.md, 'Synthetic data in the other formats')"
    add("--format", choices=tuple(FORMATS), default="vqa2", help=imitate)
    for key in SIZE_KEYS:
        add("--" + key.replace("_", "-"), type=int, help=f"override the preset's {key.replace('_', ' ')}")
    render = "also draw every image as OUT/images/<subtype>/COCO_<subtype>_<id>.png (for vqa extract)"
    add("--render", action="store_true", help=render)
    add("--quiet", action="store_true", help="print nothing")


def _eval_args(p: argparse.ArgumentParser) -> None:
    """Score a results file exactly as the VQA evaluation server."""
    add = p.add_argument
    source = "the dataset: vqa2 (default), vqa1, vqacp2, vizwiz or okvqa (vqa/data/sources)"
    add("--source", default="vqa2", help=source)
    results = 'results JSON: [{"question_id": int, "answer": str}, ...] (VizWiz: {"image": str, "answer": str[, "answerable": float]})'
    add("--results", required=True, help=results)
    add("--annotations", required=True, help="official annotation JSON (VizWiz: the split's file)")
    questions = "official question JSON of the same split (not for VizWiz, whose file holds both)"
    add("--questions", help=questions)
    add("--legacy", action="store_true", help="pre-2021 rules (OpenVQA, papers scored before 2021)")
    add("--out", help="write the JSON report here")
    cache = "neither read nor write the annotation side of the scoring in $VQA_CACHE_DIR (default ~/.cache/vqa; a file is checked by path, size, time and content samples)"
    add("--no-cache", dest="cache", action="store_false", help=cache)


def _predict_args(p: argparse.ArgumentParser) -> None:
    """Answer every question of a split with a trained run; write a results file."""
    add = p.add_argument
    add("--run", required=True, help="run folder written by `vqa train` (runs/<name>)")
    add("--checkpoint", default="best", choices=CHECKPOINTS)
    split = "e.g. val2014, or test2015: the complete file every EvalAI phase scores (test-dev2015 alone is refused there)"
    add("--split", required=True, help=split)
    out = "results JSON, or a folder for it under the server's name vqa_OpenEnded_mscoco_<split>_<name>_results.json (default: the run folder)"
    add("--out", metavar="DIR_OR_FILE", help=out)
    add("--name", help="<name> in the server's file name (default: the run's name)")
    add("--data-root", help="dataset folder, if not the run's data.root")
    add("--report", help="with annotations: also write the `vqa eval` JSON report here")


def _attention_args(p: argparse.ArgumentParser) -> None:
    """Draw where an attention model looked, one PNG per validation question."""
    add = p.add_argument
    add("--run", required=True, help="run folder of an attention model (pool, mcb, updn)")
    add("--n", type=int, default=8, help="how many questions to draw (default: 8)")
    add("--out", required=True, type=Path, help="folder for the PNG files")
    add("--checkpoint", default="best", choices=CHECKPOINTS)
    add("--split", default="val2014", help="split to take the questions from (default: val2014)")
    add("--seed", type=int, help="draw a seeded random sample instead of the first n")
    add("--data-root", help="dataset folder, if not the run's data.root")


def _extract_args(p: argparse.ArgumentParser) -> None:
    """Image folder -> HDF5 grid features (ResNet-152, resumable)."""
    add = p.add_argument
    add("--images", required=True, type=Path, help="folder of COCO images, e.g. data/coco/train2014")
    add("--out", required=True, type=Path, help="HDF5 file to write, e.g. data/vqa2/features_train2014.h5")
    arch = "torchvision ResNet: resnet18, resnet34, resnet50, resnet101, resnet152 (default)"
    add("--arch", default="resnet152", help=arch)
    add("--size", type=int, default=448, help="input side in pixels; the grid is size/32 (default: 448)")
    weights = "imagenet (torchvision download), none (random: tests) or FILE.pth"
    add("--weights", default="imagenet", help=weights)
    add("--pooled", action="store_true", help="store the global average pool (a 1x1 grid) for AVG")
    central_fraction = "resize to size/fraction, centre crop (default: 0.875)"
    add("--central-fraction", type=float, default=0.875, help=central_fraction)
    add("--batch-size", type=int, default=64)
    add("--workers", type=int, help="decoding processes (default: every CPU core this process may use)")
    add("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    add("--overwrite", action="store_true", help="start over, ignoring OUT and OUT.partial")
    add("--seed", type=int, default=0, help="seed of the random weights of --weights none")


def _convert_args(p: argparse.ArgumentParser) -> None:
    """Precomputed features (bottom-up attention TSV) -> HDF5."""
    add = p.add_argument
    source = "input format: bottomup-tsv (Anderson et al. 2018; 36 or 10-100 boxes). The public grid HDF5 (`features` + `ids`) needs no conversion: point data.features_file at it"
    add("--from", dest="source", required=True, choices=("bottomup-tsv",), help=source)
    add("inputs", nargs="+", type=Path, help="input files, e.g. trainval_36/*.tsv")
    add("--out", required=True, type=Path, help="HDF5 to write, e.g. data/vqa2/boxes_train2014.h5")
    questions = "official questions JSON: keep only the images it asks about (split a trainval TSV)"
    add("--questions", nargs="+", type=Path, default=[], help=questions)
    add("--dtype", choices=("float16", "float32"), default="float16", help="region features")
    add("--overwrite", action="store_true", help="replace an existing --out")


def _stats_args(p: argparse.ArgumentParser) -> None:
    """A config's data before a loss study: human agreement, target entropy, matching label smoothing, OOV weight."""
    add = p.add_argument
    add("--config", required=True, help="YAML experiment file (configs/...): its train and val splits")
    add("--out", help="also write the numbers to this JSON file")
    add("overrides", nargs="*", help="dotted key=value overrides, e.g. data.root=data/vqa2")


def _compare_args(p: argparse.ArgumentParser) -> None:
    """Run folders -> the paper's table (mean, std, paired CI), convergence, figures."""
    add = p.add_argument
    add("runs", nargs="+", metavar="RUN_DIR", help="run folders written by `vqa train`")
    add("--out", required=True, help="folder for table.md/.csv, report.md, summary.json, figures")
    add("--allow-incomplete", action="store_true", help="include runs that have not finished their epochs")
    budgets = "epochs at which to report accuracy (those that exist, plus the last); default %(default)s"
    add("--budgets", default="1,2,5,10,20,50,100", help=budgets)


def _paper_args(p: argparse.ArgumentParser) -> None:
    """Train the models x losses x seeds grid, then compare it (make paper)."""
    add = p.add_argument
    add("--config-dir", required=True, help="folder of <model>_<hard|soft>.yaml configs")
    add("--models", required=True, help="space-separated, e.g. 'avg pool mcb'")
    losses = "space-separated arms: loss names of vqa.losses.LOSSES or named variants of vqa.report.runs.ARMS (shuffled)"
    add("--losses", default="hard_ce soft_ce", help=losses)
    add("--seeds", type=int, default=3, help="seeds 0 .. N-1 per (model, loss)")
    add("--epochs", type=int, help="override train.epochs of every run")
    add("--runs-dir", required=True, help="where the run folders go")
    add("--jobs", type=int, default=1, help="runs trained at once (each with cores / jobs threads)")
    add("--out", help="where `vqa compare` writes the report (required unless --status)")
    status = "list every run as done / running / failed / interrupted / not started, and exit"
    add("--status", action="store_true", help=status)
    g = p.add_argument_group("launcher", "where the runs train (docs/slurm.md)")  # vqa/report/launch.py
    launcher = "local: here, --jobs at once (default); slurm: one job-array task per run through submitit, requeued on timeout or preemption; submitit-local: the same tasks as local processes (a dry run of the launch)"
    g.add_argument("--launcher", choices=("local", "slurm", "submitit-local"), default="local", help=launcher)
    wait = "slurm / submitit-local: wait for the tasks, then write the report"
    g.add_argument("--wait", action="store_true", help=wait)
    g.add_argument("--slurm-partition", help="Slurm partition (default: the cluster's)")
    g.add_argument("--gpus-per-run", type=int, default=1, help="GPUs per task; > 1 trains it with torchrun")
    g.add_argument("--cpus-per-run", type=int, default=8, help="CPU cores per task (default: 8)")
    g.add_argument("--mem-gb", type=float, default=32.0, help="memory per task in GB (default: 32)")
    timeout_min = "time limit per task in minutes; the task checkpoints and is requeued before it"
    g.add_argument("--timeout-min", type=int, default=240, help=timeout_min)
    array_parallelism = "tasks of the array running at once (default 0: no limit)"
    g.add_argument("--array-parallelism", type=int, default=0, help=array_parallelism)
    add("overrides", nargs="*", help="key=value overrides applied to every run (after --)")


def _bench_args(p: argparse.ArgumentParser) -> None:
    """Speed and memory benchmarks (make bench)."""
    add = p.add_argument
    add("--out", default="bench", help="folder for results.json and results.md")
    only = "comma-separated subset of: losses, eval, pipeline, loader, memory, models, mcb (default: all)"
    add("--only", default="", help=only)
    add("--quick", action="store_true", help="fewer repeats and smaller sizes (smoke run)")
    precision = "autocast precision of the models and pipeline benchmarks"
    add("--precision", default="fp32", choices=PRECISIONS, help=precision)


# verb -> (module whose `<verb>_command(args)` runs it, the function adding its arguments: help = docstring)
VERBS = {
    "train": ("vqa.training.fit", _train_args),
    "synth": ("vqa.synth.generate", _synth_args),
    "eval": ("vqa.evaluate", _eval_args),
    "predict": ("vqa.predict", _predict_args),
    "attention": ("vqa.attention", _attention_args),
    "extract": ("vqa.features.extract", _extract_args),
    "convert": ("vqa.features.convert", _convert_args),
    "stats": ("vqa.data_stats", _stats_args),
    "compare": ("vqa.report.compare", _compare_args),
    "paper": ("vqa.report.paper", _paper_args),
    "bench": ("vqa.bench.main", _bench_args),
}


def build_parser() -> argparse.ArgumentParser:
    """The `vqa` parser with one sub-parser per verb of VERBS."""
    parser = argparse.ArgumentParser(
        prog="vqa", description="VQA training framework: losses, models, official scoring."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for verb, (_, add_arguments) in VERBS.items():
        doc = add_arguments.__doc__  # the description; the help is "train a model" of "Train a model."
        add_arguments(sub.add_parser(verb, help=doc[0].lower() + doc[1:-1], description=doc))
    return parser


def _quiet_thread_errors(args) -> None:
    """No traceback for a writer thread's OSError (TensorBoard on a full disk): the main thread reports it."""
    if not issubclass(args.exc_type, OSError):
        threading.__excepthook__(args)


def main(argv: list[str] | None = None) -> int:
    """Run `vqa <verb> ...`; return the exit code (2 for a user error, one line on stderr)."""
    args = build_parser().parse_args(argv)
    module = VERBS[args.command][0]
    threading.excepthook = _quiet_thread_errors
    try:
        return getattr(importlib.import_module(module), f"{args.command}_command")(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vqa synth | head`: the reader left; no traceback, no second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    except OSError as e:  # a full disk, a read-only folder, a file where a folder must be, ...
        print(f"error: {os_error_line(e, args.command in ('train', 'paper'))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`vqa` command line: every task is `vqa <verb>`.

The parser is built from this file alone: no torch, numpy or h5py is imported until a verb runs, so
`vqa --help` and `vqa eval --help` print at once. Each verb names the module and function that run
it (VERBS); that module is imported only then. User errors (vqa.errors.UserError) end here, once for
every verb, as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from vqa.errors import UserError

# verb -> (module, function(args) -> exit code, one-line help)
VERBS: dict[str, tuple[str, str, str]] = {
    "train": ("vqa.training.fit", "train_command", "train a model from a YAML config"),
    "synth": ("vqa.synth.generate", "synth_command",
              "write a synthetic dataset in an official format (JSON + HDF5 features)"),
    "eval": ("vqa.evaluate", "eval_command", "score a results file exactly as the VQA evaluation server"),
    "predict": ("vqa.predict", "predict_command",
                "answer every question of a split with a trained run; write a results file"),
    "attention": ("vqa.attention", "attention_command",
                  "draw where an attention model looked, one PNG per validation question"),
    "extract": ("vqa.features.extract", "extract_command",
                "image folder -> HDF5 grid features (ResNet-152, resumable)"),
    "convert": ("vqa.features.convert", "convert_command",
                "precomputed features (bottom-up attention TSV) -> HDF5"),
    "stats": ("vqa.data_stats", "stats_command",
              "a config's data before a loss study: human agreement, target entropy, matching label smoothing, OOV weight"),
    "compare": ("vqa.report.compare", "compare_command",
                "run folders -> the paper's table (mean, std, paired CI), convergence, figures"),
    "paper": ("vqa.report.paper", "paper_command",
              "train the models x losses x seeds grid, then compare it (make paper)"),
    "bench": ("vqa.bench.main", "bench_command", "speed and memory benchmarks (make bench)"),
}  # fmt: skip

PRECISIONS = ("fp32", "bf16", "fp16")
# `vqa synth` options that override the preset's sizes (vqa.synth.presets.PRESETS has the values)
SYNTH_SIZES = ("train_images", "val_images", "test_images", "questions_per_image", "grid_size",
               "grid_dim", "box_dim")  # fmt: skip


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML experiment file (configs/...)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from its checkpoints/last.pt (a run without one starts from its config.yaml)")  # fmt: skip
    p.add_argument("--from", dest="checkpoint", choices=("last", "best"), default="last",
                   help="with --resume: the checkpoint to continue from (default: last; best rolls the run back "
                   "to its best epoch)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run folder that holds a run of vqa (never a folder holding anything else)")  # fmt: skip
    p.add_argument(
        "overrides", nargs="*", help="dotted key=value overrides, e.g. train.lr=3e-4 model.name=pool"
    )


def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="folder to write the dataset into")
    p.add_argument("--preset", choices=("tiny", "small", "paper", "vqa2"), default="small",
                   help="sizes (default: small)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="data seed (default: 0)")
    p.add_argument("--format", choices=("vqa2", "vqa1", "okvqa", "vizwiz", "vqacp2"), default="vqa2",
                   help="the dataset whose files and annotators to imitate (default: vqa2; "
                   "data/README.md, 'Synthetic data in the other formats')")  # fmt: skip
    for key in SYNTH_SIZES:
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                       help=f"override the preset's {key.replace('_', ' ')}")  # fmt: skip
    p.add_argument("--render", action="store_true",
                   help="also draw every image as OUT/images/<subtype>/COCO_<subtype>_<id>.png (for vqa extract)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="print nothing")


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="vqa2",
                   help="the dataset: vqa2 (default), vqa1, vqacp2, vizwiz or okvqa (vqa/data/sources)")  # fmt: skip
    p.add_argument("--results", required=True,
                   help='results JSON: [{"question_id": int, "answer": str}, ...] (VizWiz: {"image": str, '
                   '"answer": str[, "answerable": float]})')  # fmt: skip
    p.add_argument("--annotations", required=True, help="official annotation JSON (VizWiz: the split's file)")
    p.add_argument("--questions", default=None,
                   help="official question JSON of the same split (not for VizWiz, whose file holds both)")  # fmt: skip
    p.add_argument(
        "--legacy", action="store_true", help="pre-2021 rules (OpenVQA, papers scored before 2021)"
    )
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="neither read nor write the annotation side of the scoring in $VQA_CACHE_DIR "
                   "(default ~/.cache/vqa; a file is checked by path, size, time and content samples)")  # fmt: skip


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder written by `vqa train` (runs/<name>)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--split", required=True,
                   help="e.g. val2014, or test2015: the complete file every EvalAI phase scores (test-dev2015 alone is refused there)")  # fmt: skip
    p.add_argument("--out", default=None, metavar="DIR_OR_FILE",
                   help="results JSON, or a folder for it under the server's name "
                   "vqa_OpenEnded_mscoco_<split>_<name>_results.json (default: the run folder)")  # fmt: skip
    p.add_argument("--name", default=None, help="<name> in the server's file name (default: the run's name)")
    p.add_argument("--data-root", default=None, help="dataset folder, if not the run's data.root")
    p.add_argument(
        "--report", default=None, help="with annotations: also write the `vqa eval` JSON report here"
    )


def _attention_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder of an attention model (pool, mcb, updn)")
    p.add_argument("--n", type=int, default=8, help="how many questions to draw (default: 8)")
    p.add_argument("--out", required=True, type=Path, help="folder for the PNG files")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--split", default="val2014", help="split to take the questions from (default: val2014)")
    p.add_argument(
        "--seed", type=int, default=None, help="draw a seeded random sample instead of the first n"
    )
    p.add_argument("--data-root", default=None, help="dataset folder, if not the run's data.root")


def _extract_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--images", required=True, type=Path, help="folder of COCO images, e.g. data/coco/train2014"
    )
    p.add_argument("--out", required=True, type=Path,
                   help="HDF5 file to write, e.g. data/vqa2/features_train2014.h5")  # fmt: skip
    p.add_argument("--arch", default="resnet152",
                   help="torchvision ResNet: resnet18, resnet34, resnet50, resnet101, resnet152 (default)")  # fmt: skip
    p.add_argument(
        "--size", type=int, default=448, help="input side in pixels; the grid is size/32 (default: 448)"
    )
    p.add_argument("--weights", default="imagenet",
                   help="imagenet (torchvision download), none (random: tests) or FILE.pth")  # fmt: skip
    p.add_argument("--pooled", action="store_true", help="store the global average pool (a 1x1 grid) for AVG")
    p.add_argument("--central-fraction", type=float, default=0.875,
                   help="resize to size/fraction, centre crop (default: 0.875)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: every CPU core this process may use)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--overwrite", action="store_true", help="start over, ignoring OUT and OUT.partial")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights of --weights none")


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, choices=("bottomup-tsv",),
                   help="input format: bottomup-tsv (Anderson et al. 2018; 36 or 10-100 boxes). The public grid "
                   "HDF5 (`features` + `ids`) needs no conversion: point data.features_file at it")  # fmt: skip
    p.add_argument("inputs", nargs="+", type=Path, help="input files, e.g. trainval_36/*.tsv")
    p.add_argument("--out", required=True, type=Path, help="HDF5 to write, e.g. data/vqa2/boxes_train2014.h5")
    p.add_argument("--questions", nargs="+", type=Path, default=[],
                   help="official questions JSON: keep only the images it asks about (split a trainval TSV)")  # fmt: skip
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="region features")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def _stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", required=True, help="YAML experiment file (configs/...): its train and val splits"
    )
    p.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. data.root=data/vqa2")


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by `vqa train`")
    p.add_argument("--out", required=True, help="folder for table.md/.csv, report.md, summary.json, figures")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="include runs that have not finished their epochs")  # fmt: skip
    p.add_argument("--budgets", default="1,2,5,10,20,50,100",
                   help="epochs at which to report accuracy (those that exist, plus the last); default %(default)s")  # fmt: skip


def _paper_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config-dir", required=True, help="folder of <model>_<hard|soft>.yaml configs")
    p.add_argument("--models", required=True, help="space-separated, e.g. 'avg pool mcb'")
    p.add_argument("--losses", default="hard_ce soft_ce",
                   help="space-separated arms: loss names of vqa.losses.LOSSES or named variants of vqa.report.runs.ARMS (shuffled)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per (model, loss)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs of every run")
    p.add_argument("--runs-dir", required=True, help="where the run folders go")
    p.add_argument(
        "--jobs", type=int, default=1, help="runs trained at once (each with cores / jobs threads)"
    )
    p.add_argument(
        "--out", default=None, help="where `vqa compare` writes the report (required unless --status)"
    )
    p.add_argument("--status", action="store_true",
                   help="list every run as done / running / failed / interrupted / not started, and exit")  # fmt: skip
    _launcher_args(p)
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every run (after --)")


def _launcher_args(p: argparse.ArgumentParser) -> None:
    """`vqa paper --launcher slurm ...`: vqa/report/launch.py (docs/slurm.md)."""
    g = p.add_argument_group("launcher", "where the runs train (docs/slurm.md)")
    g.add_argument("--launcher", choices=("local", "slurm", "submitit-local"), default="local",
                   help="local: here, --jobs at once (default); slurm: one job-array task per run through "
                        "submitit, requeued on timeout or preemption; submitit-local: the same tasks as local "
                        "processes (a dry run of the launch)")  # fmt: skip
    g.add_argument(
        "--wait",
        action="store_true",
        help="slurm / submitit-local: wait for the tasks, then write the report",
    )
    g.add_argument("--slurm-partition", default=None, help="Slurm partition (default: the cluster's)")
    g.add_argument("--gpus-per-run", type=int, default=1, help="GPUs per task; > 1 trains it with torchrun")
    g.add_argument("--cpus-per-run", type=int, default=8, help="CPU cores per task (default: 8)")
    g.add_argument("--mem-gb", type=float, default=32.0, help="memory per task in GB (default: 32)")
    g.add_argument("--timeout-min", type=int, default=240,
                   help="time limit per task in minutes; the task checkpoints and is requeued before it")  # fmt: skip
    g.add_argument(
        "--array-parallelism",
        type=int,
        default=0,
        help="tasks of the array running at once (default 0: no limit)",
    )


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench", help="folder for results.json and results.md")
    p.add_argument("--only", default="",
                   help="comma-separated subset of: losses, eval, pipeline, loader, memory, models, mcb (default: all)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (smoke run)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="autocast precision of the models and pipeline benchmarks")  # fmt: skip


ARGUMENTS = {
    "train": _train_args, "synth": _synth_args, "eval": _eval_args, "predict": _predict_args,
    "attention": _attention_args, "extract": _extract_args, "convert": _convert_args, "stats": _stats_args,
    "compare": _compare_args, "paper": _paper_args, "bench": _bench_args,
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqa", description="VQA training framework: losses, models, official scoring."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for verb, (_, _, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        ARGUMENTS[verb](p)
    return parser


def _closed_pipe() -> int:
    """`vqa synth | head`: the reader left; no traceback, no second error at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, as a shell reports it


def os_error_line(e: OSError, training: bool = False) -> str:
    """One line for an OSError: the path, what the system said and, for a full disk, the free space."""
    import errno
    import shutil

    path = e.filename or "a file"
    line = f"{path}: {e.strerror or e}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT) and e.filename:
        folder = Path(e.filename)
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            line += f" ({shutil.disk_usage(folder).free / 2**20:,.1f} MiB free there)"
        except OSError:
            pass
        line += "; free some space and run the command again"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        line += "; choose a folder you can write, or fix its permissions"
    else:
        line += "; check the path"
    return line + ("; the run resumes from its last checkpoint: vqa train --resume RUN" if training else "")


def _quiet_thread_errors(args) -> None:
    """A writer thread's OSError (TensorBoard's event writer on a full disk) is raised again in the main
    thread, which reports it in one line: no thread traceback on stderr."""
    import threading

    if not issubclass(args.exc_type, OSError):
        threading.__excepthook__(args)


def main(argv: list[str] | None = None) -> int:
    import threading

    args = build_parser().parse_args(argv)
    module, function, _ = VERBS[args.command]
    threading.excepthook = _quiet_thread_errors
    try:
        return getattr(importlib.import_module(module), function)(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only folder, a file where a folder must be, ...
        if isinstance(e, BrokenPipeError):
            return _closed_pipe()
        print(f"error: {os_error_line(e, args.command in ('train', 'paper'))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

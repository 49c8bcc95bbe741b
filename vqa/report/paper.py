"""`vqa paper` (`make paper`): train the models x arms x seeds grid, then `vqa compare` it.

The grid reproduces the paper's Table 1 and Figures 1-2 (Ilievski & Feng 2017) with several seeds.
An arm (`--losses`) is a loss of vqa.losses.LOSSES or a named variant of one from runs.ARMS, a loss
plus config values: `shuffled` is soft_ce with `data.soft_target=shuffled` (each question's target
weights moved to other answers of the same type: the human weight profile without the human answers,
the control for what soft_ce gains from the annotators' distribution). Run
`<model>_<arm>_s<seed>` lives in --runs-dir and is trained from `<config dir>/<model>_hard.yaml`
(hard_ce) or `<model>_soft.yaml` (soft_ce; any other loss: the soft config with `train.loss`
overridden), plus the arm's values. A complete run is skipped, an interrupted one
(checkpoints/last.pt, fewer epochs) is resumed, a missing one is started. Each run is its own
`vqa train` process: a failure names its run, and the runs already complete stay complete for the
next invocation.

    vqa paper --config-dir configs/synthetic --models "avg pool mcb" --losses "hard_ce soft_ce" \\
        --seeds 3 --runs-dir runs/paper_synthetic --out reports/synthetic [--epochs N] [-- key=value ...]
    vqa paper --config-dir configs/synthetic-long --models "avg pool" \\
        --losses "hard_ce soft_ce label_smoothing shuffled" --seeds 5 ...      (`make paper PROTOCOL=long`)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from vqa import runs
from vqa.config import Config, config_from_dict, load_config, parse_override, to_dict
from vqa.errors import UserError
from vqa.report.compare import compare_runs
from vqa.report.runs import ARMS, VARIANT_KEYS, flatten, is_complete, read_rows, stopped_early
from vqa.report.status import clear_failed, mark_failed, status_lines

CONFIG_SUFFIX = {"hard_ce": "hard", "soft_ce": "soft"}  # other losses: the soft config, train.loss overridden
# set by the grid (MODELS, LOSSES, SEEDS), not by overrides
GRID_KEYS = ("name", "out_dir", "train.seed", "train.loss", "model.name", *VARIANT_KEYS)
# keys that may change between invocations without making a run folder a different experiment
RESUMABLE_KEYS = {
    "name",
    "out_dir",
    "train.epochs",
    "train.device",
    "train.log_every",
    "data.num_workers",
    "data.preload",
}


def parse_arm(arm: str, losses: dict) -> tuple[str, list[str]]:
    """An arm name -> (train.loss, its overrides): a loss of `losses` alone, or an ARMS variant."""
    if arm in ARMS:
        loss, values = ARMS[arm]
        return loss, [f"{k}={v}" for k, v in values.items()]
    if arm in losses:
        return arm, []
    raise UserError(
        f"loss '{arm}' is not one of {', '.join(losses)} nor a named variant ({', '.join(ARMS)}: "
        "vqa.report.runs.ARMS)"
    )


@dataclass
class Job:
    name: str
    run_dir: Path
    config_file: Path
    overrides: list[str]
    cfg: Config


def plan(
    config_dir: Path,
    models: list[str],
    losses: list[str],
    seeds: int,
    runs_dir: Path,
    epochs: int | None,
    extra: list[str],
) -> list[Job]:
    """Every run of the grid (`losses`: arm names, parse_arm) with its resolved config; checks all of
    them before anything runs."""
    from vqa.losses import LOSSES  # torch: only once a grid is planned

    for text in extra:
        key = parse_override(text)[0]
        if key in GRID_KEYS:
            raise UserError(
                f"override '{text}': '{key}' is set by the grid (MODELS, LOSSES, SEEDS); remove it"
            )
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: give the number of seeds per (model, loss), at least 1")
    jobs = []
    for model in models:
        for arm in losses:
            loss, variant = parse_arm(arm, LOSSES)
            config_file = config_dir / f"{model}_{CONFIG_SUFFIX.get(loss, 'soft')}.yaml"
            if not config_file.is_file():
                raise UserError(f"{config_file}: config file not found for model '{model}' and loss '{loss}'")
            for seed in range(seeds):
                name = f"{model}_{arm}_s{seed}"
                overrides = [*extra, *([f"train.epochs={epochs}"] if epochs else []), *variant]
                overrides += [
                    f"train.loss={loss}",
                    f"train.seed={seed}",
                    f"name={name}",
                    f"out_dir={runs_dir}",
                ]
                cfg = load_config(config_file, overrides)
                if cfg.model.name != model:
                    raise UserError(f"{config_file}: model.name is '{cfg.model.name}', expected '{model}'")
                jobs.append(Job(name, runs_dir / name, config_file, overrides, cfg))
    return jobs


def _rows(job: Job) -> list[dict]:
    path = job.run_dir / "metrics.jsonl"
    return read_rows(path) if path.is_file() else []


def action(job: Job) -> tuple[str, int]:
    """('skip' | 'resume' | 'start' | 'busy', epochs done) for a job, from its run folder ('busy': another
    process holds the run's lock)."""
    if runs.is_locked(job.run_dir):
        return "busy", 0
    rows = _rows(job)
    saved_path = job.run_dir / "config.yaml"
    if not saved_path.is_file():
        return "start", 0
    try:
        saved = config_from_dict(yaml.safe_load(saved_path.read_text()) or {}, source=str(saved_path))
    except yaml.YAMLError:
        raise UserError(
            f"{saved_path}: not valid YAML; delete {job.run_dir} to start the run again"
        ) from None
    want, have = flatten(to_dict(job.cfg)), flatten(to_dict(saved))
    diff = [k for k in want if k not in RESUMABLE_KEYS and want[k] != have.get(k)]
    if diff:
        k = diff[0]
        raise UserError(
            f"{job.run_dir}: holds a run with a different config ({k}: {have.get(k)!r}, the grid wants "
            f"{want[k]!r}); delete the folder or use another PAPER_RUNS"
        )
    epochs, patience = job.cfg.train.epochs, job.cfg.train.early_stop_patience
    done = rows[-1]["epoch"] if rows else 0
    if done > epochs:
        raise UserError(
            f"{job.run_dir}: has {done} epochs but the grid asks for {epochs}; delete it or raise EPOCHS"
        )
    if stopped_early(rows, patience) or (done == epochs and saved.train.epochs == epochs):
        return "skip", done
    # also a complete run whose config asked for other epochs (rewrites it), and a run killed before
    # its first checkpoint: `vqa train --resume` starts that one from its saved config
    return "resume", done


def train(job: Job, what: str, jobs: int = 1) -> None:
    """One `vqa train` process; raises UserError naming the run when it fails or stops early.

    With several jobs at once, each child gets cores / jobs threads (OMP_NUM_THREADS, unless
    set) and writes its output to <run>/train.log instead of the terminal.
    """
    cmd = [sys.executable, "-m", "vqa", "train"]
    cmd += ["--resume", str(job.run_dir), f"train.epochs={job.cfg.train.epochs}"] if what == "resume" else []
    cmd += ["--config", str(job.config_file), *job.overrides] if what == "start" else []
    env = dict(os.environ)
    log = None
    if jobs > 1:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
        job.run_dir.mkdir(parents=True, exist_ok=True)
        log = os.open(
            job.run_dir / "train.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666
        )
    clear_failed(job.run_dir)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # the child got the signal too: it checkpoints and exits
        proc.wait()
        raise
    finally:
        if log is not None:
            os.close(log)
    if code != 0 or not is_complete(_rows(job), job.cfg.train.epochs, job.cfg.train.early_stop_patience):
        if code != 0:
            mark_failed(job.run_dir, f"`{' '.join(cmd[2:])}` failed (exit code {code})")
        raise UserError(
            f"{job.run_dir}: `{' '.join(cmd[2:])}` "
            + (f"failed (exit code {code})" if code else "stopped before its last epoch")
            + "; fix the cause, then rerun: complete runs are skipped, this one resumes"
        )


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{seconds:.1f}s"


def run_grid(args: argparse.Namespace) -> None:
    """Plan, check every run folder, train what is missing (--jobs at once), then compare the grid."""
    start = time.perf_counter()
    jobs = plan(
        Path(args.config_dir),
        args.models.split(),
        args.losses.split(),
        args.seeds,
        Path(args.runs_dir),
        args.epochs,
        args.overrides,
    )
    if args.status:
        print("\n".join(status_lines(jobs)), flush=True)
        return
    if args.out is None:
        raise UserError("vqa paper: give --out (the report folder), or --status to list the runs")
    actions = [action(job) for job in jobs]  # every run folder checked before anything trains
    counts = {what: sum(a == what for a, _ in actions) for what in ("start", "resume", "skip", "busy")}
    print(
        f"paper: {len(jobs)} runs in {args.runs_dir}: {counts['skip']} complete, "
        f"{counts['resume']} to resume, {counts['start']} to train"
        + (f", {counts['busy']} being trained by another process" if counts["busy"] else ""),
        flush=True,
    )

    def run(i: int, job: Job, what: str, done: int) -> None:
        epochs = job.cfg.train.epochs
        say = {
            "skip": f"complete ({done}/{epochs} epochs), skipped",
            "busy": "being trained by another process (its lock is held), skipped",
            "resume": f"resuming after epoch {done} of {epochs}",
            "start": f"training {epochs} epochs",
        }[what]
        print(f"paper: [{i}/{len(jobs)}] {job.run_dir}: {say}", flush=True)
        if what not in ("skip", "busy"):
            train(job, what, args.jobs)
            if args.jobs > 1:
                print(f"paper: [{i}/{len(jobs)}] {job.run_dir}: done", flush=True)

    # a missing synthetic dataset is generated here, once: runs started together would each generate it
    # into the same folder (the first use of data/synthetic/tiny raced exactly so)
    from vqa.data.build import ensure_synthetic

    for job in {
        j.cfg.data.root: j for j, (what, _) in zip(jobs, actions) if what in ("start", "resume")
    }.values():
        ensure_synthetic(job.cfg)
    if args.launcher != "local":  # a submitit job array (vqa/report/launch.py)
        from vqa.report.launch import launch_grid

        if not launch_grid(args, jobs, actions):
            return  # submitted, not waited for
        actions = [action(job) for job in jobs]  # all complete now: the loop below skips every run
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(run, i, job, what, done)
            for i, (job, (what, done)) in enumerate(zip(jobs, actions), 1)
        ]
        for f in futures:
            f.result()  # the first failure, in grid order
    busy = [j.run_dir for j, (what, _) in zip(jobs, actions) if what == "busy"]
    if busy:
        raise UserError(
            f"{len(busy)} runs were being trained by another process (first: {busy[0]}); the others are done: "
            "rerun `vqa paper` once those finish to write the report"
        )
    names = ",".join(j.name for j in jobs)
    runs = f"{args.runs_dir}/{{{names}}}" if len(jobs) > 1 else str(jobs[0].run_dir)
    compare_runs([j.run_dir for j in jobs], args.out, command=f"vqa compare {runs} --out {args.out}")
    took = _duration(time.perf_counter() - start)
    print(
        f"paper: done in {took} wall time: {len(jobs)} runs ({counts['start']} trained, "
        f"{counts['resume']} resumed, {counts['skip']} skipped), report in {args.out}/",
        flush=True,
    )


def paper_command(args: argparse.Namespace) -> int:
    """`vqa paper` (arguments parsed by vqa.cli, which also turns a UserError into one line)."""
    for option, value in (("--jobs", args.jobs), ("--seeds", args.seeds), ("--epochs", args.epochs)):
        if value is not None and value < 1:
            raise UserError(f"{option} is {value}; give a positive number")
    try:
        run_grid(args)
    except KeyboardInterrupt:  # each run checkpointed on the signal: say how to go on
        print("interrupted; rerun to resume", file=sys.stderr)
        return 130
    return 0

"""`vqa paper` (`make paper`): train the models x arms x seeds grid, then `vqa compare` it.

The grid reproduces the paper's Table 1 and Figures 1-2 (Ilievski & Feng 2017) with several seeds.
An arm (`--losses`) is a loss of vqa.losses.LOSSES or a named variant of one (runs.ARMS: a loss plus
config values, e.g. `shuffled`, the control of soft_ce). Run `<model>_<arm>_s<seed>` lives in
--runs-dir and trains from `<config dir>/<model>_hard.yaml` (hard_ce) or `<model>_soft.yaml` (any other
loss, `train.loss` overridden), plus the arm's values. A complete run is skipped, an interrupted one
resumed, a missing one started (status.action); each is its own `vqa train` process, so a failure
names its run and the complete ones stay complete for the next invocation.

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
from pathlib import Path

from vqa.config import load_config, parse_override
from vqa.errors import UserError
from vqa.report.compare import compare_runs
from vqa.report.launch import Settings, launch_grid, train_argv
from vqa.report.runs import ARMS, VARIANT_KEYS
from vqa.report.status import Job, action, clear_failed, mark_failed, status_lines, trained

CONFIG_SUFFIX = {"hard_ce": "hard", "soft_ce": "soft"}  # other losses: the soft config, train.loss overridden
# set by the grid (MODELS, LOSSES, SEEDS), not by overrides
GRID_KEYS = ("name", "out_dir", "train.seed", "train.loss", "model.name", *VARIANT_KEYS)


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
                overrides = [
                    *extra,
                    *([f"train.epochs={epochs}"] if epochs else []),
                    *variant,
                    f"train.loss={loss}",
                ]
                overrides += [f"train.seed={seed}", f"name={name}", f"out_dir={runs_dir}"]
                cfg = load_config(config_file, overrides)
                if cfg.model.name != model:
                    raise UserError(f"{config_file}: model.name is '{cfg.model.name}', expected '{model}'")
                jobs.append(Job(name, runs_dir / name, config_file, overrides, cfg))
    return jobs


def train(job: Job, what: str, jobs: int = 1) -> None:
    """One `vqa train` process; raises UserError naming the run when it fails or stops early.

    With several jobs at once, each child gets cores / jobs threads (OMP_NUM_THREADS, unless
    set) and writes its output to <run>/train.log instead of the terminal.
    """
    cmd = train_argv(job, what, gpus=1)
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
    if code != 0 or not trained(job):
        shown = f"`{' '.join(cmd[2:])}`"
        what = f"{shown} failed (exit code {code})" if code else f"{shown} stopped before its last epoch"
        if code != 0:
            mark_failed(job.run_dir, what)
        raise UserError(
            f"{job.run_dir}: {what}; fix the cause, then rerun: complete runs are skipped, this one resumes"
        )


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s" if m else f"{seconds:.1f}s"


def _announce(jobs: list[Job], actions: list[tuple[str, int]], runs_dir: Path) -> dict[str, int]:
    """Print what the grid will do; the number of runs per action."""
    counts = {what: sum(a == what for a, _ in actions) for what in ("start", "resume", "skip", "busy")}
    busy = f", {counts['busy']} being trained by another process" if counts["busy"] else ""
    print(
        f"paper: {len(jobs)} runs in {runs_dir}: {counts['skip']} complete, "
        f"{counts['resume']} to resume, {counts['start']} to train{busy}",
        flush=True,
    )
    return counts


def _run_local(jobs: list[Job], actions: list[tuple[str, int]], parallel: int) -> None:
    """Train every run that is not complete here, `parallel` at once; the first failure in grid order."""

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
            train(job, what, parallel)
            if parallel > 1:
                print(f"paper: [{i}/{len(jobs)}] {job.run_dir}: done", flush=True)

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        calls = [(i, job, what, done) for i, (job, (what, done)) in enumerate(zip(jobs, actions), 1)]
        for f in [pool.submit(run, *call) for call in calls]:
            f.result()
    busy = [j.run_dir for j, (what, _) in zip(jobs, actions) if what == "busy"]
    if busy:
        raise UserError(
            f"{len(busy)} runs were being trained by another process (first: {busy[0]}); the others are done: "
            "rerun `vqa paper` once those finish to write the report"
        )


def run_grid(
    jobs: list[Job],
    runs_dir: str | Path,
    out: str,
    parallel: int = 1,
    launcher: str = "local",
    settings: Settings | None = None,
    wait: bool = False,
) -> dict[str, int] | None:
    """Check every run folder of `jobs`, train what is missing (`parallel` at once here, or as tasks of
    `launcher` with `settings`, waited for with `wait`), then compare the grid into `out`. The number
    of runs per action; None when the tasks were submitted and not waited for."""
    actions = [action(job) for job in jobs]  # every run folder checked before anything trains
    counts = _announce(jobs, actions, runs_dir)
    # a missing synthetic dataset is generated here, once: runs started together would each generate it
    from vqa.data.build import ensure_synthetic

    starting = {j.cfg.data.root: j for j, (what, _) in zip(jobs, actions) if what in ("start", "resume")}
    for job in starting.values():
        ensure_synthetic(job.cfg)
    if launcher != "local":  # a submitit job array (vqa/report/launch.py)
        if not launch_grid(jobs, actions, launcher, settings or Settings(), runs_dir, wait):
            return None  # submitted, not waited for
        actions = [action(job) for job in jobs]  # all complete now: the local pass skips every run
    _run_local(jobs, actions, parallel)
    names = ",".join(j.name for j in jobs)
    runs = f"{runs_dir}/{{{names}}}" if len(jobs) > 1 else str(jobs[0].run_dir)
    compare_runs([j.run_dir for j in jobs], out, command=f"vqa compare {runs} --out {out}")
    return counts


def paper_command(args: argparse.Namespace) -> int:
    """`vqa paper` (arguments parsed by vqa.cli, which also turns a UserError into one line)."""
    start = time.perf_counter()
    for option, value in (("--jobs", args.jobs), ("--seeds", args.seeds), ("--epochs", args.epochs)):
        if value is not None and value < 1:
            raise UserError(f"{option} is {value}; give a positive number")
    try:
        grid = (args.models.split(), args.losses.split(), args.seeds, Path(args.runs_dir), args.epochs)
        jobs = plan(Path(args.config_dir), *grid, args.overrides)
        if args.status:
            print("\n".join(status_lines(jobs)), flush=True)
            return 0
        if args.out is None:
            raise UserError("vqa paper: give --out (the report folder), or --status to list the runs")
        launch = (args.slurm_partition, args.gpus_per_run, args.cpus_per_run, args.mem_gb, args.timeout_min)
        settings = Settings(*launch, args.array_parallelism)
        counts = run_grid(jobs, args.runs_dir, args.out, args.jobs, args.launcher, settings, args.wait)
    except KeyboardInterrupt:  # each run checkpointed on the signal: say how to go on
        print("interrupted; rerun to resume", file=sys.stderr)
        return 130
    if counts is not None:
        print(
            f"paper: done in {_duration(time.perf_counter() - start)} wall time: {len(jobs)} runs "
            f"({counts['start']} trained, {counts['resume']} resumed, {counts['skip']} skipped), report in "
            f"{args.out}/",
            flush=True,
        )
    return 0

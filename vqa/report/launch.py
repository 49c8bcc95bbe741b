"""`vqa paper --launcher slurm` (or `submitit-local`): the grid's runs as one submitit job array.

Each run that is not complete becomes one array task (TrainTask) that starts or resumes its run
with `vqa train` (`torchrun --standalone --nproc_per_node G -m vqa train` when --gpus-per-run G > 1),
its output appended to RUN/train.log. Before its time limit or on preemption Slurm sends the task
SIGUSR2 (`--signal=USR2@<delay>`); submitit calls TrainTask.checkpoint, which sends `vqa train`
SIGTERM (it finishes the step, writes checkpoints/last.pt and exits) and requeues the task, which
then resumes the run exactly. A task whose run is already complete, or held by another process
(RUN/.lock), does nothing, so submitting a grid twice trains nothing twice.

`submitit-local` runs the same tasks as local processes through submitit's local executor (no
Slurm; the array parallelism is not applied): the way to try a launch before a cluster sees it.
Task logs: RUNS/.submitit/<job id>/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vqa.errors import UserError
from vqa.report.status import action, clear_failed, mark_failed, trained

CLUSTERS = {"slurm": "slurm", "submitit-local": "local"}


@dataclass
class Settings:
    """What each array task asks the scheduler for (`vqa paper --slurm-partition ...`)."""

    partition: str | None = None
    gpus_per_run: int = 1
    cpus_per_run: int = 8
    mem_gb: float = 32.0
    timeout_min: int = 240
    array_parallelism: int = 0  # 0: all tasks at once
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit


def train_argv(job, what: str, gpus: int) -> list[str]:
    """The `vqa train` command of one task: 'start' from the grid's config, or 'resume' the run."""
    if gpus > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
        cmd += ["-m", "vqa", "train"]
    else:
        cmd = [sys.executable, "-m", "vqa", "train"]
    if what == "resume":
        return [*cmd, "--resume", str(job.run_dir), f"train.epochs={job.cfg.train.epochs}"]
    return [*cmd, "--config", str(job.config_file), *job.overrides]


def _ignore_usr2() -> None:
    """In the child: the timeout signal is the task's to handle (it stops the child with SIGTERM)."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class TrainTask:
    """One run of the grid as a submitit task, requeued on timeout or preemption (`checkpoint`)."""

    def __init__(self, job, gpus: int) -> None:
        self.job, self.gpus = job, gpus
        self._proc: subprocess.Popen | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_proc": None}

    def __call__(self) -> str:
        job = self.job
        what, done = action(job)
        if what == "skip":
            return f"{job.run_dir}: complete ({done} epochs), skipped"
        if what == "busy":
            return f"{job.run_dir}: another process is training it (it holds RUN/.lock), left to it"
        clear_failed(job.run_dir)
        job.run_dir.mkdir(parents=True, exist_ok=True)
        cmd, log_path = train_argv(job, what, self.gpus), job.run_dir / "train.log"
        with open(log_path, "a") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_ignore_usr2)
            code = self._proc.wait()
        self._proc = None
        if code == 0 and trained(job):
            return f"{job.run_dir}: done"
        shown = "vqa " + " ".join(cmd[cmd.index("train") :])
        if code == 0:  # stopped by a signal from elsewhere (scancel): checkpointed, not failed
            raise UserError(f"{job.run_dir}: `{shown}` stopped before its last epoch; rerun to resume")
        reason = f"`{shown}` failed (exit code {code}); its output: {log_path}"
        mark_failed(job.run_dir, reason)
        raise UserError(f"{job.run_dir}: {reason}")

    def checkpoint(self):
        """submitit's requeue hook (timeout or preemption): stop `vqa train` at a checkpoint, then
        the same task again, which resumes the run."""
        from submitit.helpers import DelayedSubmission

        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)  # `vqa train` finishes its step and writes last.pt
            # waited for without reaping: this runs in a signal handler that may have interrupted
            # proc.wait() in __call__, which holds the Popen's lock (proc.wait() here would deadlock)
            try:
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:  # already reaped
                pass
        return DelayedSubmission(TrainTask(self.job, self.gpus))


def executor(folder: Path, cluster: str, settings: Settings):
    """A submitit executor for `cluster` (slurm | local) with the tasks' resources."""
    import submitit

    try:
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    except RuntimeError as e:  # no srun / sbatch on this machine
        raise UserError(
            f"--launcher slurm: {e}; run on a Slurm login node, or try with --launcher submitit-local"
        ) from None
    params = {
        "name": "vqa-paper",
        "timeout_min": settings.timeout_min,
        "gpus_per_node": settings.gpus_per_run,
        "cpus_per_task": settings.cpus_per_run,
        "mem_gb": settings.mem_gb,
        "nodes": 1,
        "tasks_per_node": 1,
        "slurm_signal_delay_s": settings.signal_delay_s,
    }
    if settings.partition:
        params["slurm_partition"] = settings.partition
    if settings.array_parallelism:
        params["slurm_array_parallelism"] = settings.array_parallelism
    ex.update_parameters(**params)
    return ex


def submit(jobs: list, launcher: str, settings: Settings, folder: Path) -> list:
    """One array task per run of `jobs`; the submitit job handles, in order."""
    ex = executor(folder, CLUSTERS[launcher], settings)
    with ex.batch():
        handles = [ex.submit(TrainTask(job, settings.gpus_per_run)) for job in jobs]
    return handles


def failures_of(handles: list, jobs: list) -> list[str]:
    """Wait for every task; one line per failed run (empty when all completed)."""
    failures = []
    for i, (handle, job) in enumerate(zip(handles, jobs), 1):
        try:
            print(f"paper: [{i}/{len(jobs)}] {handle.result()}", flush=True)
        except Exception as e:  # submitit's FailedJobError / UncompletedJobError: the task's traceback
            last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            failures.append(f"{job.run_dir}: task {handle.job_id} failed ({last}); log {handle.paths.stdout}")
    return failures


def launch_grid(jobs: list, actions: list, launcher: str, settings: Settings, runs_dir, wait: bool) -> bool:
    """Submit every run of the grid that is not complete as a task of `launcher` (its logs in
    RUNS/.submitit); with `wait`, wait for them and return True when all completed (the grid can be
    compared), else return False."""
    todo = [job for job, (what, _) in zip(jobs, actions) if what in ("start", "resume")]
    if not todo:
        return True
    folder = Path(runs_dir) / ".submitit"
    handles = submit(todo, launcher, settings, folder)
    ids = sorted({str(h.job_id).split("_")[0] for h in handles})
    print(
        f"paper: submitted {len(todo)} tasks ({launcher}, job {', '.join(ids)}); logs in {folder}/ "
        "and each RUN/train.log",
        flush=True,
    )
    if not wait:
        print(
            "paper: `vqa paper ... --status` lists where each run stands; rerun this command when all are "
            "done to write the report (complete runs are skipped)",
            flush=True,
        )
        return False
    failures = failures_of(handles, todo)
    if failures:
        raise UserError(f"{len(failures)} of {len(todo)} tasks failed: " + "; ".join(failures))
    return True

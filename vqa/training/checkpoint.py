"""Checkpoints: everything a run needs to continue exactly, written atomically.

A plain dict (torch.save): model, optimizer, scheduler and scaler states, the run's Progress, every RNG
state, the resolved config, both vocabularies and the image feature size (`vqa predict` reads it too).
Written to a temporary file, fsynced and renamed (vqa.io.atomic_path, durable), so a kill leaves the
old checkpoint or the new one. Read with weights_only=True, hence the numpy RNG state as plain lists.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vqa import io, runs
from vqa.config import Config, to_dict
from vqa.errors import UserError
from vqa.training.loop import EpochState, TrainState


@dataclass
class Progress:
    """Where a run stands between steps: what a resume continues from."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken (when restored; the TrainState counts them while training)
    epoch_state: EpochState | None = None  # position inside epoch `epoch + 1` when stopped mid-way
    best: dict = field(default_factory=lambda: {"accuracy": -1.0})  # val metrics of the best epoch
    bad_epochs: int = 0  # epochs since the best one (early stopping)
    log: dict | None = None  # what epoch `epoch` logged (runlog.epoch_log): redone on resume if lost

    def end_epoch(self, epoch: int, val: dict) -> bool:
        """Record a finished epoch's validation; True when it is the best so far."""
        is_best = val["accuracy"] > self.best["accuracy"]
        self.bad_epochs = 0 if is_best else self.bad_epochs + 1
        if is_best:
            self.best = {"epoch": epoch, **{k: v for k, v in val.items() if k != "predictions"}}
        self.epoch, self.epoch_state = epoch, None
        return is_best


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],  # plain types: weights_only loads them
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's own device only (one per DDP rank)
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(
        (state["numpy"][0], np.asarray(state["numpy"][1], dtype=np.uint32), *state["numpy"][2:])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")  # this process's own device's state (one per DDP rank)
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)  # the current device: fit() set it to this rank's GPU


def save_checkpoint(
    run_dir: Path, model, state: TrainState, progress: Progress, cfg: Config, data, is_best: bool
) -> None:
    """checkpoints/last.pt (and best.pt when `is_best`), each written atomically and durably.

    `model` is the bare module (not its DDP / compiled wrapper, whose state dict keys differ);
    optimizer, scheduler, scaler and the step count come from the TrainState.
    """
    scaler = state.scaler
    ckpt = {
        "model": model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": progress.epoch,
        "step": state.step,
        "epoch_state": progress.epoch_state.__dict__ if progress.epoch_state else None,
        "best": progress.best,
        "bad_epochs": progress.bad_epochs,
        "log": progress.log,
        "rng": rng_state(),
        "config": to_dict(cfg),
        "question_vocab": data.qvocab.to_dict(),
        "answer_vocab": data.avocab.to_dict(),
        "image_dim": data.image_dim,
    }
    folder = run_dir / "checkpoints"
    for name in ("last.pt", "best.pt") if is_best else ("last.pt",):
        # a file object: a full disk is an OSError naming the file, not torch's RuntimeError
        with io.atomic_path(folder / name, durable=True) as tmp, open(tmp, "wb") as f:
            torch.save(ckpt, f)


def load_for_resume(run_dir: Path, checkpoint: str = "last") -> dict | None:
    """checkpoints/<checkpoint>.pt of a run (last, or best: `vqa train --resume RUN --from best`); None
    when the run was stopped before its first checkpoint (it then starts from its saved config)."""
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    other = "best" if checkpoint == "last" else "last"
    broken = (
        f"resume from the other checkpoint with `vqa train --resume {run_dir} --from {other}`, or start the run "
        "anew with --config and --overwrite"
    )
    if checkpoint == "best" and not path.is_file():
        raise UserError(
            f"{path}: no best checkpoint (the run has not finished an epoch); resume with --from last"
        )
    if checkpoint == "last" and not path.is_file() and (run_dir / "checkpoints" / "best.pt").is_file():
        raise UserError(
            f"{path} is missing but the run has best.pt; continue from it with `vqa train --resume {run_dir} "
            "--from best` (a resume from the config would replace it)"
        )
    return runs.read_checkpoint(path, broken=broken) if path.is_file() else None


# Settings that fix a checkpoint's tensor shapes or its meaning: a resume must not change them.
FIXED_ON_RESUME = tuple(
    "model.name model.embed_dim model.rnn model.rnn_dim model.hidden_dim model.attention_dim model.glimpses "
    "model.mcb_dim model.heads model.ff_dim model.layers model.normalize_image data.features "
    "data.max_question_len train.loss train.optimizer train.debias data.val_split data.heldout_fraction "
    "data.heldout_seed".split()
)


def check_resumable(ckpt: dict, cfg: Config, run_dir: Path) -> None:
    """Refuse, before anything is loaded, an override that changes what the checkpoint was trained as."""
    saved = ckpt["config"]
    now, defaults = to_dict(cfg), to_dict(Config())  # a key a checkpoint predates had its default
    for key in FIXED_ON_RESUME:
        section, name = key.split(".")
        before, after = saved.get(section, {}).get(name, defaults[section][name]), now[section][name]
        if before != after:
            raise UserError(
                f"{run_dir}: the run was trained with {key}={before!r}; a resume cannot change it to {after!r} "
                f"(drop the override, or start a new run with another name=)"
            )


def restore(ckpt: dict, model, optimizer, scheduler, scaler) -> Progress:
    """Load every state of `ckpt` into the given objects and the RNGs; return the run's Progress."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    within = EpochState(**ckpt["epoch_state"]) if ckpt["epoch_state"] else None  # a stopped epoch
    return Progress(ckpt["epoch"], ckpt["step"], within, ckpt["best"], ckpt["bad_epochs"], ckpt.get("log"))


def open_run(cfg: Config, resume: bool, checkpoint: str = "last") -> dict | None:
    """The checkpoint a run continues from (None for a new run, or a resumed run that never wrote one),
    after the check that must come before anything is read or written: a resume never changes what the
    checkpoint was trained as. (A new run's folder is checked by vqa.runs.check_new.)"""
    ckpt = load_for_resume(cfg.run_dir, checkpoint) if resume else None
    if ckpt:
        check_resumable(ckpt, cfg, cfg.run_dir)
    return ckpt

"""`vqa train`: `fit(cfg)` wires data, model, loss, optimizer and loaders, then runs the epochs.

Each epoch is `train_one_epoch` (loop.py) then `evaluate` (validation.py), logged by the RunLog
(runlog.py) and checkpointed (checkpoint.py). The same function runs one process or one process per device under
torchrun (DDP); only rank 0 writes. SIGTERM / SIGINT finish the current step, write a checkpoint and
exit 0; `fit(cfg, resume=True)` continues exactly where the last checkpoint left off, mid-epoch
included, RNG states and all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from vqa import runs
from vqa.config import Config, load_config, load_run_config
from vqa.data.answers import AnswerVocab
from vqa.data.build import Data, Loaders, build_datasets, build_loaders, ensure_synthetic
from vqa.data.finite import nonfinite_features
from vqa.data.text import QuestionVocab
from vqa.data.word_vectors import init_embedding
from vqa.debias import build_debiased, debias_settings
from vqa.debias.prior import start_sigmoid_at_prior
from vqa.device import configure_cuda
from vqa.errors import UserError
from vqa.losses import get_loss
from vqa.models import build_model
from vqa.models.layers import compile_model
from vqa.runs import check_name
from vqa.training.checkpoint import Progress, open_run, restore, save_checkpoint, seed_everything
from vqa.training.distributed import barrier, init_distributed, shutdown
from vqa.training.loop import (
    NonFiniteLoss,
    StopRequest,
    TrainState,
    epoch_totals,
    micro_batch_size,
    train_one_epoch,
)
from vqa.training.optim import build_optimizer, build_scheduler
from vqa.training.runlog import RunLog, best_line, epoch_log
from vqa.training.selection import chosen_on, score_test, selection_line
from vqa.training.validation import evaluate, question_groups


@dataclass
class Session:
    """What the epochs of one run work with, built by `_build` before the first step."""

    data: Data
    model: torch.nn.Module  # the bare module (checkpoints hold its state dict)
    state: TrainState
    loaders: Loaders
    progress: Progress
    batch_size: int  # per process and micro-batch
    answer_types: dict[int, str]
    agreement: dict[int, str]
    eval_loss: Callable  # the run's train.loss of the base logits: validation and test losses


def fit(
    cfg: Config,
    resume: bool = False,
    overwrite: bool = False,
    inputs: tuple[Path, ...] = (),
    checkpoint: str = "last",
) -> dict:
    """Train `cfg` to completion (or to a stop signal); returns the best validation metrics.

    A new run refuses a folder that holds a run unless `overwrite`, and `overwrite` replaces only a
    run of this tool that holds none of `inputs` (vqa.runs); `resume` continues from
    checkpoints/<checkpoint>.pt (last or best; a run without a checkpoint starts from its saved
    config). The main process holds the run's lock from the first check to the end."""
    loss_fn = get_loss(cfg.train.loss, cfg.train.label_smoothing)
    dist, device = init_distributed(cfg.train.device)
    configure_cuda(device, cfg.train.tf32)
    run_dir = runs.run_folder(cfg.out_dir, cfg.name)
    vectors = [Path(cfg.model.word_vectors)] if cfg.model.word_vectors else []
    inputs = (*inputs, Path(cfg.data.root), *vectors)
    if dist.main and not resume:
        runs.check_new(run_dir, overwrite, inputs)  # before the lock creates the folder
    with runs.RunLock(run_dir) if dist.main else nullcontext():
        if dist.main and not resume:
            runs.check_new(run_dir, overwrite, inputs)  # again, now that no other process can start it
        ckpt = open_run(cfg, resume, checkpoint)  # refuses what it must before anything is read or written
        if resume and ckpt is None:
            if dist.main:
                print(
                    f"resume: {run_dir} has no checkpoint yet; starting the run from its saved config.yaml",
                    flush=True,
                )
            resume = False
        try:
            return _run(cfg, loss_fn, dist, device, ckpt, resume, overwrite)
        finally:
            shutdown(dist)


def _build(cfg: Config, loss_fn, dist, device: torch.device, ckpt: dict | None) -> Session:
    """Data, model, optimizer, schedule and loaders of a run (restored from `ckpt` when given)."""
    batch_size = micro_batch_size(cfg.train, dist.world)
    if dist.main:
        ensure_synthetic(cfg)
    barrier(dist)
    seed_everything(cfg.train.seed)
    vocabs = (
        (QuestionVocab.from_dict(ckpt["question_vocab"]), AnswerVocab.from_dict(ckpt["answer_vocab"]))
        if ckpt
        else ()
    )
    data = build_datasets(cfg, *vocabs)
    model = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim)
    if (vectors := cfg.model.word_vectors) and not ckpt:  # a resumed run restores its trained embedding
        share = init_embedding(model.question.embedding, vectors, data.qvocab.itos)
        data.lines.append(f"word vectors: {share:.1%} of the question words found in {vectors}")
    if cfg.train.loss == "bce" and cfg.train.bce_prior_init and not ckpt:  # sigmoids start at the prior
        start_sigmoid_at_prior(model, data.train, len(data.avocab))
    train_loss_fn = loss_fn
    if cfg.train.debias != "none":  # the method's branch around the model; its loss trains both
        t = cfg.train
        model = build_debiased(
            t.debias, model, data.train, len(data.avocab), cfg.model.hidden_dim, t.loss, debias_settings(t)
        )
        train_loss_fn = model.loss
    model.to(device)
    optimizer = build_optimizer(cfg.train, model)
    scaler = torch.amp.GradScaler(device.type) if cfg.train.precision == "fp16" else None
    loaders = build_loaders(cfg, data, batch_size, dist.world, dist.rank, device=device)
    steps = math.ceil(math.ceil(loaders.train_sampler.num_samples / batch_size) / cfg.train.accumulate)
    scheduler = build_scheduler(cfg.train, optimizer, steps)
    progress = restore(ckpt, model, optimizer, scheduler, scaler) if ckpt else Progress()
    train_model = DistributedDataParallel(model) if dist.enabled else model
    if cfg.train.compile:
        train_model = compile_model(train_model)  # the RNN traced into the graph (vqa/models/layers.py)
    knobs = {k: getattr(cfg.train, k) for k in ("precision", "grad_clip", "accumulate", "log_every")}
    state = TrainState(train_model, train_loss_fn, optimizer, scheduler, device, scaler, dist=dist, **knobs)
    state.step = progress.step
    answer_types, agreement = question_groups(data.val)
    return Session(data, model, state, loaders, progress, batch_size, answer_types, agreement, loss_fn)


def _run(cfg: Config, loss_fn, dist, device, ckpt: dict | None, resume: bool, overwrite: bool) -> dict:
    run_dir = cfg.run_dir
    s = _build(cfg, loss_fn, dist, device, ckpt)
    if dist.main and overwrite and not resume:
        runs.clear(run_dir)  # `--overwrite`: the old run goes, now that the new one is ready
    log = RunLog(cfg, dist.main, resume, s.progress, s.data.avocab, s.data.val.records)
    for line in s.data.lines:
        log.say(f"data: {line}")
    n_params = sum(p.numel() for p in s.model.parameters())
    where = f"{device}" + (f" x {dist.world} processes" if dist.enabled else "")
    log.say(
        f"run: {run_dir}  model {cfg.model.name} ({n_params:,} parameters)  loss {cfg.train.loss}  "
        + (f"debias {cfg.train.debias}  " if cfg.train.debias != "none" else "")
        + f"precision {cfg.train.precision}  device {where}"
        + (f"  resuming after epoch {s.progress.epoch}, step {s.progress.step}" if resume else "")
    )
    log.say(selection_line(cfg))
    try:
        with StopRequest() as stop:
            stopped = _epochs(cfg, s, log, stop)
            if not stopped and s.loaders.test is not None and "epoch" in s.progress.best:
                test = (s.eval_loss, s.loaders.test, s.data.test, device, dist, log, s.progress.best)
                score_test(cfg, s.model, s.state.model, *test)
    except NonFiniteLoss as e:  # read back at the next sync point: the features, or the loss diverged
        log.close()
        raise UserError(_nonfinite_line(e, cfg, s, dist.main)) from None
    finally:
        log.close()
    if stopped:
        log.say(
            f"stopped by signal at step {s.state.step}; checkpoint written. Resume with: vqa train --resume {run_dir}"
        )
    elif s.progress.best["accuracy"] >= 0:
        log.say(best_line(s.progress.best, run_dir, chosen_on(cfg)))
    return s.progress.best


def _epochs(cfg: Config, s: Session, log: RunLog, stop: StopRequest) -> bool:
    """The remaining epochs of the run; True when a signal stopped it (a checkpoint is then written).

    Each epoch's checkpoint is written before its metrics line, TensorBoard points and predictions,
    and holds that line (Progress.log): a write that fails after the checkpoint is redone on resume."""
    progress, state, dist, device = s.progress, s.state, s.state.dist, s.state.device
    for epoch in range(progress.epoch + 1, cfg.train.epochs + 1):
        s.loaders.train_sampler.set_epoch(epoch)
        resume_from, desc = progress.epoch_state, f"epoch {epoch}/{cfg.train.epochs}"
        s.loaders.train_sampler.start = resume_from.batches * s.batch_size if resume_from else 0
        done, stopped = train_one_epoch(state, s.loaders.train, resume_from, stop, log.step, desc)
        progress.epoch_state = done
        if stopped:
            if dist.main:
                save_checkpoint(cfg.run_dir, s.model, state, progress, cfg, s.data, is_best=False)
            return True
        totals = epoch_totals(done, dist, device)  # train loss, samples/s, seconds
        loader, precision = s.loaders.val, state.precision
        val = evaluate(state.model, s.eval_loss, loader, device, s.answer_types, precision, dist, s.agreement)
        is_best = progress.end_epoch(epoch, val)
        lr = state.optimizer.param_groups[0]["lr"]
        progress.log = epoch_log(epoch, state.step, totals, val, lr, is_best, cfg.data.val_split)
        if dist.main:
            save_checkpoint(cfg.run_dir, s.model, state, progress, cfg, s.data, is_best)
        log.epoch(progress.log)
        patience = cfg.train.early_stop_patience
        if patience and progress.bad_epochs >= patience:
            bad, best = progress.bad_epochs, progress.best["epoch"]
            log.say(f"early stop: no better val accuracy for {bad} epochs (best: epoch {best})")
            break
    return False


def _nonfinite_line(e: NonFiniteLoss, cfg: Config, s: Session, main: bool) -> str:
    """The one line for a non-finite loss or validation output: features that are not finite are named
    (file, image, row); otherwise the loss diverged. A run that never wrote a checkpoint leaves no
    folder behind (nothing in it could be resumed)."""
    dataset = s.data.train if e.split == "train" else s.data.val
    features = nonfinite_features(dataset, e.question_ids)
    last = cfg.run_dir / "checkpoints" / "last.pt"
    if last.is_file():
        where = f"the last good checkpoint is {last}"
    else:
        if main:
            runs.discard(cfg.run_dir)
        where = f"no checkpoint was written yet, so the run folder {cfg.run_dir} was removed"
    if features:
        return f"{features}; training cannot use them: re-extract or regenerate that file ({e}; {where})"
    advice = f"lower train.lr (now {cfg.train.lr:g})"
    if cfg.train.grad_clip <= 0:
        advice += " or set train.grad_clip (e.g. 1.0)"
    resume = f"; resume with: vqa train --resume {cfg.run_dir} train.lr=..." if last.is_file() else ""
    return f"training diverged: {e}; {where}{resume}; {advice}"


def train_command(args) -> int:
    """`vqa train --config FILE [overrides]` or `vqa train --resume RUN_DIR [--from best] [overrides]`."""
    inputs: tuple[Path, ...] = ()
    if args.resume:
        if args.config:
            raise UserError(
                "pass either --config (a new run) or --resume RUN_DIR (its config.yaml is used), not both"
            )
        if args.overwrite:
            raise UserError("--overwrite starts a run anew; --resume continues one: pass one of them")
        cfg = load_run_config(args.resume, args.overrides)
        if cfg.run_dir.resolve() != Path(args.resume).resolve():
            cfg.out_dir, cfg.name = str(Path(args.resume).parent), Path(args.resume).name
            check_name(cfg.name, "--resume's folder name")
    else:
        if args.checkpoint != "last":
            raise UserError(
                "--from picks the checkpoint a --resume continues from; pass it with --resume RUN_DIR"
            )
        cfg = load_config(args.config, args.overrides)
        inputs = (Path(args.config),)
    fit(cfg, resume=bool(args.resume), overwrite=args.overwrite, inputs=inputs, checkpoint=args.checkpoint)
    return 0

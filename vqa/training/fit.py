"""`vqa train`: `fit(cfg)` wires data, model, loss, optimizer and loaders, then runs the epochs.

Each epoch is `train_one_epoch` then `evaluate` (loop.py), logged by the RunLog (runlog.py) and
checkpointed (checkpoint.py). The same function runs one process or one process per device under
torchrun (DDP); only rank 0 writes. SIGTERM / SIGINT finish the current step, write a checkpoint and
exit 0; `fit(cfg, resume=True)` continues exactly where the last checkpoint left off, mid-epoch
included, RNG states and all.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from vqa.agreement import bucket_names
from vqa.config import Config, load_config, load_run_config
from vqa.data.answers import AnswerVocab
from vqa.data.build import build_datasets, build_loaders, ensure_synthetic
from vqa.data.text import QuestionVocab
from vqa.data.word_vectors import init_embedding
from vqa.debias import build_debiased, debias_settings
from vqa.device import configure_cuda
from vqa.errors import UserError
from vqa.losses import get_loss
from vqa.models import build_model
from vqa.models.layers import compile_model
from vqa.training.checkpoint import Progress, open_run, restore, save_checkpoint, seed_everything
from vqa.training.distributed import barrier, init_distributed, shutdown
from vqa.training.loop import (
    StopRequest,
    TrainState,
    epoch_totals,
    evaluate,
    micro_batch_size,
    train_one_epoch,
)
from vqa.training.optim import build_optimizer, build_scheduler
from vqa.training.runlog import RunLog, best_line, diverged
from vqa.training.selection import chosen_on, score_test, selection_line


def fit(cfg: Config, resume: bool = False, overwrite: bool = False) -> dict:
    """Train `cfg` to completion (or to a stop signal); returns the best validation metrics.

    A new run refuses a run folder that already holds a run unless `overwrite`; `resume` continues
    from checkpoints/last.pt (or starts from the saved config when the run has no checkpoint yet)."""
    loss_fn = get_loss(cfg.train.loss, cfg.train.label_smoothing)
    dist, device = init_distributed(cfg.train.device)
    configure_cuda(device, cfg.train.tf32)
    run_dir = cfg.run_dir
    ckpt = open_run(cfg, resume, overwrite)  # refuses what it must before anything is read or written
    if resume and ckpt is None:
        if dist.main:
            print(
                f"resume: {run_dir} has no checkpoint yet; starting the run from its saved config.yaml",
                flush=True,
            )
        resume = False
    batch_size = micro_batch_size(cfg.train, dist.world)  # per process and micro-batch
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
    if cfg.model.word_vectors and not ckpt:  # a resumed run restores its trained embedding
        share = init_embedding(model.question.embedding, cfg.model.word_vectors, data.qvocab.itos)
        data.lines.append(
            f"word vectors: {share:.1%} of the question words found in {cfg.model.word_vectors}"
        )
    train_loss_fn = loss_fn
    if cfg.train.debias != "none":  # the method's branch around the model; its loss trains both
        model = build_debiased(cfg.train.debias, model, data.train, len(data.avocab),
                               cfg.model.hidden_dim, cfg.train.loss, debias_settings(cfg.train))  # fmt: skip
        train_loss_fn = model.loss
    model.to(device)
    optimizer = build_optimizer(cfg.train, model)
    scaler = torch.amp.GradScaler(device.type) if cfg.train.precision == "fp16" else None

    loaders = build_loaders(cfg, data, batch_size, dist.world, dist.rank, pin_memory=device.type == "cuda")
    scheduler = build_scheduler(
        cfg.train,
        optimizer,
        math.ceil(math.ceil(loaders.train_sampler.num_samples / batch_size) / cfg.train.accumulate),
    )
    answer_types = {r.question_id: r.answer_type for r in data.val.records}
    agreement = dict(zip(data.val.question_id.tolist(), bucket_names(data.val.top_count)))
    progress = restore(ckpt, model, optimizer, scheduler, scaler, dist.local_rank) if ckpt else Progress()

    train_model = DistributedDataParallel(model) if dist.enabled else model
    if cfg.train.compile:
        train_model = compile_model(train_model)  # the RNN traced into the graph (vqa/models/layers.py)
    state = TrainState(train_model, train_loss_fn, optimizer, scheduler, device, scaler, cfg.train.precision,
                       cfg.train.grad_clip, cfg.train.accumulate, cfg.train.log_every, dist, progress.step)  # fmt: skip
    log = RunLog(cfg, dist.main, resume, progress.epoch + 1, progress.step, overwrite)
    for line in data.lines:
        log.say(f"data: {line}")
    n_params = sum(p.numel() for p in model.parameters())
    where = f"{device}" + (f" x {dist.world} processes" if dist.enabled else "")
    log.say(f"run: {run_dir}  model {cfg.model.name} ({n_params:,} parameters)  loss {cfg.train.loss}  "
            + (f"debias {cfg.train.debias}  " if cfg.train.debias != "none" else "")
            + f"precision {cfg.train.precision}  device {where}"
            + (f"  resuming after epoch {progress.epoch}, step {progress.step}" if resume else ""))  # fmt: skip
    log.say(selection_line(cfg))

    stopped = False
    try:
        with StopRequest() as stop:
            for epoch in range(progress.epoch + 1, cfg.train.epochs + 1):
                loaders.train_sampler.set_epoch(epoch)
                loaders.train_sampler.start = progress.partial.batches * batch_size if progress.partial else 0
                desc = f"epoch {epoch}/{cfg.train.epochs}"
                progress.partial, stopped = train_one_epoch(
                    state, loaders.train, progress.partial, stop, log.step, desc
                )
                if stopped:
                    if dist.main:
                        save_checkpoint(run_dir, model, state, progress, cfg, data, is_best=False)
                    break
                train_loss, rate, seconds = epoch_totals(progress.partial, dist, device)
                val = evaluate(train_model, loss_fn, loaders.val, device, answer_types, cfg.train.precision,
                               dist, agreement)  # fmt: skip
                is_best = progress.end_epoch(epoch, val)
                log.epoch(epoch, state.step, train_loss, val, optimizer.param_groups[0]["lr"], rate, seconds)
                if is_best:
                    log.predictions(val["predictions"], data.avocab, data.val.records)
                if dist.main:
                    save_checkpoint(run_dir, model, state, progress, cfg, data, is_best)
                patience = cfg.train.early_stop_patience
                if patience and progress.bad_epochs >= patience:
                    log.say(f"early stop: no better val accuracy for {progress.bad_epochs} epochs "
                            f"(best: epoch {progress.best['epoch']})")  # fmt: skip
                    break
            if not stopped and loaders.test is not None and "epoch" in progress.best:
                score_test(cfg, model, train_model, loss_fn, loaders.test, data.test, device, dist, log,
                           progress.best)  # fmt: skip
    except FloatingPointError as e:  # a non-finite loss, read back at the next sync point
        log.close()
        raise UserError(diverged(str(e), cfg, dist.main)) from None
    finally:
        log.close()
        shutdown(dist)
    if stopped:
        log.say(
            f"stopped by signal at step {state.step}; checkpoint written. Resume with: vqa train --resume {run_dir}"
        )
    elif progress.best["accuracy"] >= 0:
        log.say(best_line(progress.best, run_dir, chosen_on(cfg)))
    return progress.best


def train_command(args) -> int:
    """`vqa train --config FILE [overrides]` or `vqa train --resume RUN_DIR [overrides]`."""
    if args.resume:
        if args.config:
            raise UserError(
                "pass either --config (a new run) or --resume RUN_DIR (its config.yaml is used), not both"
            )
        cfg = load_run_config(args.resume, args.overrides)
        if cfg.run_dir.resolve() != Path(args.resume).resolve():
            cfg.out_dir, cfg.name = str(Path(args.resume).parent), Path(args.resume).name
    else:
        cfg = load_config(args.config, args.overrides)
    fit(cfg, resume=bool(args.resume), overwrite=args.overwrite)
    return 0

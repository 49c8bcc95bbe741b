"""The training loop: `fit(cfg)` wires data, model, loss and optimizer, then runs
`train_one_epoch` and `evaluate` once per epoch, logging to TensorBoard and
metrics.jsonl and keeping checkpoints `last.pt` and `best.pt` in the run folder.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from vqa.config import Config, dump_yaml, to_dict
from vqa.data.answers import AnswerVocab
from vqa.data.dataset import VQADataset, build_loader
from vqa.data.features import FeatureStore
from vqa.data.text import QuestionVocab
from vqa.data.vqa2 import IMAGE_SUBTYPE, Record, load_split
from vqa.errors import UserError
from vqa.losses import LOSSES, get_loss
from vqa.metrics import batch_accuracy, summarize
from vqa.models import build_model

ANSWER_TYPES = ("yes/no", "number", "other")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"config: train.device is '{name}' but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def ensure_synthetic(cfg: Config) -> None:
    """Generate the synthetic dataset a config points at when it is missing (`make train` on a fresh clone)."""
    root = Path(cfg.data.root)
    if not cfg.data.synth_preset or (root / "stats.json").exists():
        return
    from vqa.data.synthetic import PRESETS, generate

    if cfg.data.synth_preset not in PRESETS:
        raise UserError(
            f"config: data.synth_preset '{cfg.data.synth_preset}'; choose one of {', '.join(PRESETS)}"
        )
    print(f"data: {root} is missing; generating the synthetic '{cfg.data.synth_preset}' preset there")
    generate(root, seed=0, **PRESETS[cfg.data.synth_preset])


def features_path(cfg: Config, split: str) -> Path:
    return Path(cfg.data.root) / cfg.data.features_file.format(split=IMAGE_SUBTYPE.get(split, split))


def load_records(cfg: Config, split: str) -> list[Record]:
    return load_split(Path(cfg.data.root), split, cfg.data.questions, cfg.data.annotations)


def open_features(cfg: Config, split: str, expected_dim: int | None = None) -> FeatureStore:
    store = FeatureStore(features_path(cfg, split), cfg.data.features, cfg.data.preload)
    expected = expected_dim or cfg.data.feature_dim
    if expected and store.dim != expected:
        raise UserError(
            f"{store.path}: '{store.key}' has feature dim {store.dim} but {expected} is expected "
            "(data.feature_dim or the checkpoint); use features of the same extractor"
        )
    return store


@dataclass
class Data:
    train: VQADataset
    val: VQADataset
    qvocab: QuestionVocab
    avocab: AnswerVocab
    image_dim: int


def prepare_data(cfg: Config) -> Data:
    """Records, vocabularies (from the training split) and datasets; prints what was left out."""
    train_records = load_records(cfg, cfg.data.train_split)
    val_records = load_records(cfg, cfg.data.val_split)
    for split, recs in ((cfg.data.train_split, train_records), (cfg.data.val_split, val_records)):
        if recs[0].annotation is None:
            raise UserError(f"split '{split}' has no annotations; train and validate on annotated splits")
    qvocab = QuestionVocab.build((r.question for r in train_records), cfg.data.min_token_count)
    avocab = AnswerVocab.build([r.annotation for r in train_records], cfg.data.max_answers)
    train_feats = open_features(cfg, cfg.data.train_split)
    val_feats = open_features(cfg, cfg.data.val_split, expected_dim=train_feats.dim)
    common = dict(
        qvocab=qvocab,
        avocab=avocab,
        max_question_len=cfg.data.max_question_len,
        oov=cfg.data.soft_targets_oov,
    )
    # The hard loss has no target for a question whose most common answer is outside
    # the vocabulary; both losses train on the same questions so runs compare fairly.
    train = VQADataset(train_records, train_feats, split=cfg.data.train_split, drop_hard_oov=True, **common)
    val = VQADataset(val_records, val_feats, split=cfg.data.val_split, **common)
    print(
        f"data: {len(qvocab):,} question words, {len(avocab):,} answers, image features {train_feats.kind} dim {train_feats.dim}"
    )
    for report in (train.report, val.report):
        for line in report.lines():
            print(f"data: {line}")
    return Data(train, val, qvocab, avocab, train_feats.dim)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)


def train_one_epoch(
    model,
    loss_fn,
    optimizer,
    loader,
    device,
    *,
    grad_clip: float = 0.0,
    writer=None,
    step: int = 0,
    log_every: int = 50,
    desc: str = "train",
) -> dict:
    """One pass over `loader`; returns {"loss": mean loss, "samples_per_s": ..., "step": last step}."""
    model.train()
    total, count = 0.0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None)
    for batch in bar:
        batch = batch.to(device, non_blocking=True)
        logits = model(batch.question, batch.question_len, batch.image, batch.image_mask)  # [B, A]
        loss = loss_fn(logits, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        step += 1
        n = batch.question.shape[0]
        total += loss.item() * n
        count += n
        rate = count / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{total / count:.4f}", samples_per_s=f"{rate:.0f}")
        if writer is not None and step % log_every == 0:
            writer.add_scalar("train/loss_step", loss.item(), step)
    return {
        "loss": total / max(count, 1),
        "samples_per_s": count / (time.perf_counter() - start),
        "step": step,
    }


@torch.no_grad()
def evaluate(model, loss_fn, loader, device, answer_types: dict[int, str]) -> dict:
    """Validation loss (the run's loss and both cross-entropies) and the official accuracy.

    Accuracy is the closed form of the official metric from `answer_idx` / `answer_score`
    (vqa.metrics.batch_accuracy); `predictions` maps question id -> answer index.
    """
    model.eval()
    sums = {"loss": 0.0, "hard_ce": 0.0, "soft_ce": 0.0}
    count = 0
    scores: dict[int, float] = {}
    predictions: dict[int, int] = {}
    probs_max = []
    for batch in loader:
        batch = batch.to(device)
        logits = model(batch.question, batch.question_len, batch.image, batch.image_mask).float()
        n = batch.question.shape[0]
        sums["loss"] += loss_fn(logits, batch).item() * n
        sums["hard_ce"] += LOSSES["hard_ce"](logits, batch).item() * n
        sums["soft_ce"] += LOSSES["soft_ce"](logits, batch).item() * n
        count += n
        pred = logits.argmax(1)  # [B]
        acc = batch_accuracy(pred, batch.answer_idx, batch.answer_score)  # [B]
        probs_max.append(torch.softmax(logits, 1).max(1).values.cpu())
        for qid, p, s in zip(batch.question_id.tolist(), pred.tolist(), acc.tolist()):
            scores[qid] = s
            predictions[qid] = p
    summary = summarize(scores, answer_types)
    out = {k: v / max(count, 1) for k, v in sums.items()}
    out["accuracy"] = summary["overall"]
    for t in ANSWER_TYPES:
        out[f"accuracy_{t.replace('/', '_')}"] = summary["perAnswerType"].get(t, float("nan"))
    out["predictions"] = predictions
    return out


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a temporary file, flushed and fsynced, then renamed over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": [np.random.get_state()[0], np.random.get_state()[1].tolist(), *np.random.get_state()[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def epoch_line(epoch: int, epochs: int, train: dict, val: dict, seconds: float) -> str:
    return (
        f"epoch {epoch}/{epochs}  train_loss {train['loss']:.4f}  val_loss {val['loss']:.4f}  "
        f"acc {val['accuracy']:.2f}  yes/no {val['accuracy_yes_no']:.2f}  number {val['accuracy_number']:.2f}  "
        f"other {val['accuracy_other']:.2f}  ({train['samples_per_s']:.0f} samples/s, {seconds:.1f}s)"
    )


def fit(cfg: Config) -> dict:
    """Train `cfg` to completion; returns the best validation metrics."""
    loss_fn = get_loss(cfg.train.loss)
    device = resolve_device(cfg.train.device)
    ensure_synthetic(cfg)
    seed_everything(cfg.train.seed)
    data = prepare_data(cfg)
    model = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim).to(device)
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=cfg.train.lr_decay_epochs, gamma=cfg.train.lr_decay_factor
    )
    pin = device.type == "cuda"
    train_loader = build_loader(
        data.train, cfg.train.batch_size, True, cfg.data.num_workers, seed=cfg.train.seed, pin_memory=pin
    )
    val_loader = build_loader(data.val, cfg.train.batch_size, False, cfg.data.num_workers, pin_memory=pin)
    answer_types = {r.question_id: r.answer_type for r in data.val.records}

    run_dir = cfg.run_dir
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", dump_yaml(cfg))
    metrics_path = run_dir / "metrics.jsonl"
    metrics_path.write_text("")
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"run: {run_dir}  model {cfg.model.name} ({n_params:,} parameters)  loss {cfg.train.loss}  device {device}"
    )

    writer = SummaryWriter(log_dir=str(run_dir))
    best: dict = {"accuracy": -1.0}
    step = 0
    try:
        for epoch in range(1, cfg.train.epochs + 1):
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            try:
                train = train_one_epoch(
                    model,
                    loss_fn,
                    optimizer,
                    train_loader,
                    device,
                    grad_clip=cfg.train.grad_clip,
                    writer=writer,
                    step=step,
                    log_every=cfg.train.log_every,
                    desc=f"epoch {epoch}/{cfg.train.epochs}",
                )
            except FloatingPointError as e:
                raise UserError(
                    f"training diverged: {e}; the last good checkpoint is {run_dir / 'checkpoints' / 'last.pt'}; "
                    "lower train.lr or set train.grad_clip"
                ) from None
            step = train["step"]
            scheduler.step()
            val = evaluate(model, loss_fn, val_loader, device, answer_types)
            seconds = time.perf_counter() - start
            print(epoch_line(epoch, cfg.train.epochs, train, val, seconds), flush=True)

            scalars = {
                "train/loss": train["loss"],
                "val/loss": val["loss"],
                "val/hard_ce": val["hard_ce"],
                "val/soft_ce": val["soft_ce"],
                "val/accuracy": val["accuracy"],
                "val/accuracy_yes_no": val["accuracy_yes_no"],
                "val/accuracy_number": val["accuracy_number"],
                "val/accuracy_other": val["accuracy_other"],
                "lr": lr,
                "throughput/samples_per_s": train["samples_per_s"],
            }
            for name, value in scalars.items():
                writer.add_scalar(name, value, epoch)
            writer.flush()
            record = {"epoch": epoch, "step": step, **scalars, "seconds": seconds}
            with open(metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")

            is_best = val["accuracy"] > best["accuracy"]
            if is_best:
                best = {"epoch": epoch, **{k: v for k, v in val.items() if k != "predictions"}}
                write_predictions(
                    run_dir / f"predictions_{cfg.data.val_split}.json", val["predictions"], data.avocab
                )
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "step": step,
                "best": best,
                "rng": rng_state(),
                "config": to_dict(cfg),
                "question_vocab": data.qvocab.to_dict(),
                "answer_vocab": data.avocab.to_dict(),
                "image_dim": data.image_dim,
            }
            save_checkpoint(run_dir / "checkpoints" / "last.pt", state)
            if is_best:
                save_checkpoint(run_dir / "checkpoints" / "best.pt", state)
    finally:
        writer.close()
    print(
        f"best: epoch {best['epoch']}  acc {best['accuracy']:.2f}  yes/no {best['accuracy_yes_no']:.2f}  "
        f"number {best['accuracy_number']:.2f}  other {best['accuracy_other']:.2f}  ({run_dir})"
    )
    sys.stdout.flush()
    return best


def write_predictions(path: Path, predictions: dict[int, int], avocab: AnswerVocab) -> None:
    """A results file in the evaluation server's format: [{"question_id", "answer"}]."""
    results = [{"question_id": qid, "answer": avocab.itos[i]} for qid, i in sorted(predictions.items())]
    write_text_atomic(path, json.dumps(results))

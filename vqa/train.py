"""The training loop.

`fit(cfg)` wires data, model, loss, optimizer and schedule, then runs `train_one_epoch`
and `evaluate` once per epoch, logging to TensorBoard and metrics.jsonl and keeping
checkpoints `last.pt` and `best.pt` in the run folder. The same function runs one
process or one process per device under torchrun (DDP); only rank 0 writes.

Faults: SIGTERM / SIGINT finish the current step, write a checkpoint and exit 0;
checkpoints are written atomically; `fit(cfg, resume=True)` continues a run exactly
where its last checkpoint left it (mid-epoch included), RNG states and all.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from vqa.config import Config, dump_yaml, to_dict
from vqa.data.answers import AnswerVocab
from vqa.data.dataset import EpochSampler, ShardSampler, VQADataset, build_loader
from vqa.data.features import FeatureStore
from vqa.data.text import QuestionVocab
from vqa.data.vqa2 import IMAGE_SUBTYPE, Record, load_split
from vqa.data.word_vectors import init_embedding
from vqa.errors import UserError
from vqa.losses import LOSSES, get_loss
from vqa.metrics import batch_accuracy, summarize
from vqa.models import build_model

ANSWER_TYPES = ("yes/no", "number", "other")


# ----------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank / world size under torchrun, (0, 1) otherwise."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE set), pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dist = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_name)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if dist.enabled and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist, device


def all_sum(values: list[float], dist: Dist, device: torch.device) -> list[float]:
    """Element-wise sum over ranks (float64, so sums of per-sample losses stay exact enough)."""
    if not dist.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(t)
    return t.tolist()


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


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],  # plain types: weights_only loads them
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(
        (state["numpy"][0], np.asarray(state["numpy"][1], dtype=np.uint32), *state["numpy"][2:])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopRequest:
    """SIGTERM / SIGINT set a flag; the loop finishes its step, checkpoints and exits 0."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        self.requested = True

    def __enter__(self) -> StopRequest:
        for s in self.SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


# ----------------------------------------------------------------------------- data


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
    print(
        f"data: {root} is missing; generating the synthetic '{cfg.data.synth_preset}' preset there",
        flush=True,
    )
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
            "(data.feature_dim, the training split or the checkpoint); use features of the same extractor"
        )
    return store


@dataclass
class Data:
    train: VQADataset
    val: VQADataset
    qvocab: QuestionVocab
    avocab: AnswerVocab
    image_dim: int
    lines: list[str] = field(default_factory=list)


def prepare_data(cfg: Config, qvocab: QuestionVocab | None = None, avocab: AnswerVocab | None = None) -> Data:
    """Records, vocabularies (from the training split unless given) and datasets, with a report of what was left out."""
    train_records = load_records(cfg, cfg.data.train_split)
    val_records = load_records(cfg, cfg.data.val_split)
    for split, recs in ((cfg.data.train_split, train_records), (cfg.data.val_split, val_records)):
        if recs[0].annotation is None:
            raise UserError(f"split '{split}' has no annotations; train and validate on annotated splits")
    qvocab = qvocab or QuestionVocab.build((r.question for r in train_records), cfg.data.min_token_count)
    avocab = avocab or AnswerVocab.build([r.annotation for r in train_records], cfg.data.max_answers)
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
    lines = [
        f"{len(qvocab):,} question words, {len(avocab):,} answers, image features {train_feats.kind} dim {train_feats.dim}"
    ]
    lines += train.report.lines() + val.report.lines()
    return Data(train, val, qvocab, avocab, train_feats.dim, lines)


# ----------------------------------------------------------------------------- optimization


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)


def lr_factor(
    step: int, steps_per_epoch: int, warmup_epochs: float, milestones: list[int], gamma: float
) -> float:
    """Linear warm-up over the first `warmup_epochs` (per step), then the step decay of the
    authors' code: the rate is multiplied by `gamma` at each milestone epoch (0-based epochs)."""
    epoch = step // steps_per_epoch
    warmup_steps = warmup_epochs * steps_per_epoch
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warm * gamma ** sum(epoch >= m for m in milestones)


def build_scheduler(cfg: Config, optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    t = cfg.train
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, steps_per_epoch, t.warmup_epochs, t.lr_decay_epochs, t.lr_decay_factor),
    )


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


# ----------------------------------------------------------------------------- loops


@dataclass
class EpochState:
    """Progress through one epoch, enough to resume it mid-way."""

    batches: int = 0  # batches this rank has finished
    loss_sum: float = 0.0  # sum over this rank's samples of the batch-mean loss
    samples: int = 0
    seconds: float = 0.0


def train_one_epoch(
    model,
    loss_fn,
    optimizer,
    loader,
    device,
    *,
    scheduler=None,
    scaler=None,
    precision: str = "fp32",
    grad_clip: float = 0.0,
    step: int = 0,
    state: EpochState | None = None,
    stop: StopRequest | None = None,
    dist: Dist = SINGLE,
    on_step=None,
    desc: str = "train",
) -> tuple[EpochState, int, bool]:
    """One pass over `loader`, resuming from `state`. Returns (state, global step, stopped early).

    Every step, ranks agree on whether to stop (a signal on any rank) and whether the loss
    is finite (on every rank), so all ranks leave the loop together.
    """
    model.train()
    state = state or EpochState()
    start = time.perf_counter() - state.seconds
    bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None if dist.main else True)
    for batch in bar:
        batch = batch.to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(batch.question, batch.question_len, batch.image, batch.image_mask)  # [B, A]
        loss = loss_fn(logits.float(), batch)  # fp32 whatever the autocast precision
        flags = all_sum([float(not torch.isfinite(loss)), float(bool(stop and stop.requested))], dist, device)
        if flags[0]:
            raise FloatingPointError(f"loss is {loss.item()} at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        step += 1
        n = batch.question.shape[0]
        state.batches += 1
        state.loss_sum += loss.item() * n
        state.samples += n
        state.seconds = time.perf_counter() - start
        bar.set_postfix(
            loss=f"{state.loss_sum / state.samples:.4f}", samples_per_s=f"{state.samples / state.seconds:.0f}"
        )
        if on_step is not None:
            on_step(step, loss.item())
        if flags[1]:
            return state, step, True
    return state, step, False


@torch.no_grad()
def evaluate(model, loss_fn, loader, device, answer_types: dict[int, str], precision: str = "fp32",
             dist: Dist = SINGLE) -> dict:  # fmt: skip
    """Validation loss (the run's loss and both cross-entropies) and the official accuracy.

    Accuracy is the closed form of the official metric from `answer_idx` / `answer_score`
    (vqa.metrics.batch_accuracy). Under DDP each rank scores its own shard (no sample
    twice) and the sums and per-question scores are combined before they are returned.
    `predictions` maps question id -> answer index.
    """
    model.eval()
    # per-question sums and counts of: the run's loss, hard_ce, soft_ce (each loss has its own
    # count: hard_ce leaves out questions whose most common answer is outside the vocabulary)
    sums = [0.0] * 6
    scores: dict[int, float] = {}
    predictions: dict[int, int] = {}
    calibration: dict[int, tuple[float, float]] = {}  # confidence of the predicted answer, entropy
    for batch in loader:
        batch = batch.to(device)
        with autocast(device, precision):
            logits = model(batch.question, batch.question_len, batch.image, batch.image_mask)
        logits = logits.float()  # [B, A]
        computed: dict = {}  # the run's loss is usually hard_ce or soft_ce: compute each once
        for i, fn in enumerate((loss_fn, LOSSES["hard_ce"], LOSSES["soft_ce"])):
            if fn not in computed:
                computed[fn] = fn(logits, batch, reduction="none")
            per_question = computed[fn]  # [B']
            sums[2 * i] += per_question.sum().item()
            sums[2 * i + 1] += per_question.numel()
        log_p = torch.log_softmax(logits, 1)  # [B, A]
        confidence, pred = log_p.max(1)  # [B]
        entropy = -(log_p.exp() * log_p).sum(1)  # [B]
        acc = batch_accuracy(pred, batch.answer_idx, batch.answer_score)  # [B]
        for qid, p, s, c, h in zip(batch.question_id.tolist(), pred.tolist(), acc.tolist(),
                                   confidence.exp().tolist(), entropy.tolist()):  # fmt: skip
            scores[qid] = s
            predictions[qid] = p
            calibration[qid] = (c, h)
    sums = all_sum(sums, dist, device)
    if dist.enabled:
        gathered = [None] * dist.world
        torch_dist.all_gather_object(gathered, (scores, predictions, calibration))
        scores = {k: v for s, _, _ in gathered for k, v in s.items()}
        predictions = {k: v for _, p, _ in gathered for k, v in p.items()}
        calibration = {k: v for _, _, c in gathered for k, v in c.items()}
    summary = summarize(scores, answer_types)
    out = {
        name: sums[2 * i] / max(sums[2 * i + 1], 1) for i, name in enumerate(("loss", "hard_ce", "soft_ce"))
    }
    out["accuracy"] = summary["overall"]
    for t in ANSWER_TYPES:
        out[f"accuracy_{t.replace('/', '_')}"] = summary["perAnswerType"].get(t, float("nan"))
    qids = sorted(scores)
    out["ece"] = expected_calibration_error([calibration[q][0] for q in qids], [scores[q] for q in qids])
    out["entropy"] = float(np.mean([calibration[q][1] for q in qids]))
    out["predictions"] = predictions
    return out


def expected_calibration_error(confidence: list[float], accuracy: list[float], bins: int = 15) -> float:
    """ECE (Guo et al. 2017) with the official per-question VQA accuracy as correctness:
    sum over equal-width confidence bins of |mean accuracy - mean confidence| weighted by bin size."""
    conf, acc = np.asarray(confidence, np.float64), np.asarray(accuracy, np.float64)
    if conf.size == 0:
        return float("nan")
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.mean() * abs(acc[in_bin].mean() - conf[in_bin].mean())
    return float(total)


# ----------------------------------------------------------------------------- files


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a temporary file, flushed and fsynced, then renamed over `path`.

    A kill at any moment leaves either the previous file or the new one, never a torn one.
    """
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint to resume from; start the run without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # a checkpoint cannot run code
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file for the user
        raise UserError(
            f"{path}: unreadable checkpoint ({type(e).__name__}: {e}); delete it to restart"
        ) from None


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_predictions(path: Path, predictions: dict[int, int], avocab: AnswerVocab) -> None:
    """A results file in the evaluation server's format: [{"question_id", "answer"}]."""
    results = [{"question_id": qid, "answer": avocab.itos[i]} for qid, i in sorted(predictions.items())]
    write_text_atomic(path, json.dumps(results))


def read_metrics(path: Path, up_to_epoch: int) -> list[dict]:
    """metrics.jsonl lines of the epochs a checkpoint covers (a kill can leave one more)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= up_to_epoch]


def epoch_line(epoch: int, epochs: int, train_loss: float, val: dict, rate: float, seconds: float) -> str:
    return (
        f"epoch {epoch}/{epochs}  train_loss {train_loss:.4f}  val_loss {val['loss']:.4f}  "
        f"acc {val['accuracy']:.2f}  yes/no {val['accuracy_yes_no']:.2f}  number {val['accuracy_number']:.2f}  "
        f"other {val['accuracy_other']:.2f}  ({rate:.0f} samples/s, {seconds:.1f}s)"
    )


# ----------------------------------------------------------------------------- fit


def fit(cfg: Config, resume: bool = False) -> dict:
    """Train `cfg` to completion (or to a stop signal); returns the best validation metrics.

    With `resume`, continue from `<run_dir>/checkpoints/last.pt`: model, optimizer, scheduler,
    scaler, epoch and position in it, early-stopping counter and every RNG state.
    """
    loss_fn = get_loss(cfg.train.loss)
    dist, device = init_distributed(cfg.train.device)
    run_dir = cfg.run_dir
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt") if resume else None
    if cfg.train.batch_size % dist.world:
        raise UserError(
            f"config: train.batch_size {cfg.train.batch_size} (global) must divide by {dist.world} processes"
        )
    batch_size = cfg.train.batch_size // dist.world  # per process; the global batch stays the config's
    if dist.main:
        ensure_synthetic(cfg)
    if dist.enabled:
        torch_dist.barrier()
    seed_everything(cfg.train.seed)
    vocabs = (
        (QuestionVocab.from_dict(ckpt["question_vocab"]), AnswerVocab.from_dict(ckpt["answer_vocab"]))
        if ckpt
        else ()
    )
    data = prepare_data(cfg, *vocabs)
    model = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim)
    if cfg.model.word_vectors and not ckpt:  # a resumed run restores its trained embedding
        share = init_embedding(model.question.embedding, cfg.model.word_vectors, data.qvocab.itos)
        data.lines.append(
            f"word vectors: {share:.1%} of the question words found in {cfg.model.word_vectors}"
        )
    model.to(device)
    optimizer = build_optimizer(cfg, model)
    scaler = torch.amp.GradScaler(device.type) if cfg.train.precision == "fp16" else None

    train_sampler = EpochSampler(
        data.train, dist.world, dist.rank, shuffle=True, seed=cfg.train.seed,
        group_by_image=cfg.data.sampler == "image_grouped",
    )  # fmt: skip
    val_sampler = ShardSampler(len(data.val), dist.world, dist.rank)
    pin = device.type == "cuda"
    train_loader = build_loader(data.train, batch_size, train_sampler, cfg.data.num_workers, pin_memory=pin)
    val_loader = build_loader(data.val, batch_size, val_sampler, cfg.data.num_workers, pin_memory=pin)
    steps_per_epoch = math.ceil(train_sampler.num_samples / batch_size)
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch)
    answer_types = {r.question_id: r.answer_type for r in data.val.records}

    start_epoch, step, epoch_state, best, bad_epochs = 1, 0, None, {"accuracy": -1.0}, 0
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, step, best, bad_epochs = (
            ckpt["epoch"] + 1,
            ckpt["step"],
            ckpt["best"],
            ckpt["bad_epochs"],
        )
        if ckpt["epoch_state"]:
            epoch_state = EpochState(**ckpt["epoch_state"])
        set_rng_state(ckpt["rng"])

    train_model = DistributedDataParallel(model) if dist.enabled else model
    if cfg.train.compile:
        train_model = torch.compile(train_model)

    metrics_path = run_dir / "metrics.jsonl"
    writer = steps_writer = None
    if dist.main:
        for line in data.lines:
            print(f"data: {line}")
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", dump_yaml(cfg))
        rows = read_metrics(metrics_path, start_epoch - 1)
        write_text_atomic(metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
        # purge_step drops events a killed run logged after its last checkpoint
        writer = SummaryWriter(log_dir=str(run_dir), purge_step=start_epoch if resume else None)
        steps_writer = SummaryWriter(log_dir=str(run_dir / "steps"), purge_step=step + 1 if resume else None)
        n_params = sum(p.numel() for p in model.parameters())
        where = f"{device}" + (f" x {dist.world} processes" if dist.enabled else "")
        print(f"run: {run_dir}  model {cfg.model.name} ({n_params:,} parameters)  loss {cfg.train.loss}  "
              f"precision {cfg.train.precision}  device {where}"
              + (f"  resuming after epoch {start_epoch - 1}, step {step}" if resume else ""), flush=True)  # fmt: skip

    def on_step(s: int, loss: float) -> None:
        if steps_writer is not None and s % cfg.train.log_every == 0:
            steps_writer.add_scalar("train/loss_step", loss, s)

    def checkpoint(epoch_done: int, epoch_state_: EpochState | None, is_best: bool) -> None:
        if not dist.main:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "epoch": epoch_done,
            "step": step,
            "epoch_state": epoch_state_.__dict__ if epoch_state_ else None,
            "best": best,
            "bad_epochs": bad_epochs,
            "rng": rng_state(),
            "config": to_dict(cfg),
            "question_vocab": data.qvocab.to_dict(),
            "answer_vocab": data.avocab.to_dict(),
            "image_dim": data.image_dim,
        }
        save_checkpoint(run_dir / "checkpoints" / "last.pt", state)
        if is_best:
            save_checkpoint(run_dir / "checkpoints" / "best.pt", state)

    stopped = False
    try:
        with StopRequest() as stop:
            for epoch in range(start_epoch, cfg.train.epochs + 1):
                train_sampler.set_epoch(epoch)
                train_sampler.start = epoch_state.batches * batch_size if epoch_state else 0
                try:
                    epoch_state, step, stopped = train_one_epoch(
                        train_model, loss_fn, optimizer, train_loader, device, scheduler=scheduler, scaler=scaler,
                        precision=cfg.train.precision, grad_clip=cfg.train.grad_clip, step=step, state=epoch_state,
                        stop=stop, dist=dist, on_step=on_step, desc=f"epoch {epoch}/{cfg.train.epochs}",
                    )  # fmt: skip
                except FloatingPointError as e:
                    raise UserError(
                        f"training diverged: {e}; the last good checkpoint is {run_dir / 'checkpoints' / 'last.pt'}; "
                        "lower train.lr or set train.grad_clip, then --resume"
                    ) from None
                if stopped:
                    checkpoint(epoch - 1, epoch_state, is_best=False)
                    break
                loss_sum, samples, seconds = all_sum(
                    [epoch_state.loss_sum, epoch_state.samples, epoch_state.seconds], dist, device
                )
                train_loss, rate = loss_sum / samples, samples / (seconds / dist.world)
                val = evaluate(
                    train_model, loss_fn, val_loader, device, answer_types, cfg.train.precision, dist
                )
                epoch_state = None
                is_best = val["accuracy"] > best["accuracy"]
                bad_epochs = 0 if is_best else bad_epochs + 1
                if is_best:
                    best = {"epoch": epoch, **{k: v for k, v in val.items() if k != "predictions"}}
                if dist.main:
                    print(
                        epoch_line(epoch, cfg.train.epochs, train_loss, val, rate, seconds / dist.world),
                        flush=True,
                    )
                    scalars = {
                        "train/loss": train_loss,
                        "val/loss": val["loss"],
                        "val/hard_ce": val["hard_ce"],
                        "val/soft_ce": val["soft_ce"],
                        "val/accuracy": val["accuracy"],
                        "val/accuracy_yes_no": val["accuracy_yes_no"],
                        "val/accuracy_number": val["accuracy_number"],
                        "val/accuracy_other": val["accuracy_other"],
                        "val/ece": val["ece"],
                        "val/entropy": val["entropy"],
                        "lr": optimizer.param_groups[0]["lr"],
                        "throughput/samples_per_s": rate,
                    }
                    for name, value in scalars.items():
                        writer.add_scalar(name, value, epoch)
                    writer.flush()
                    with open(metrics_path, "a") as f:
                        f.write(
                            json.dumps(
                                {"epoch": epoch, "step": step, **scalars, "seconds": seconds / dist.world}
                            )
                            + "\n"
                        )
                    if is_best:
                        write_predictions(
                            run_dir / f"predictions_{cfg.data.val_split}.json",
                            val["predictions"],
                            data.avocab,
                        )
                checkpoint(epoch, None, is_best)
                if cfg.train.early_stop_patience and bad_epochs >= cfg.train.early_stop_patience:
                    if dist.main:
                        print(
                            f"early stop: no better val accuracy for {bad_epochs} epochs (best: epoch {best['epoch']})"
                        )
                    break
    finally:
        for w in (writer, steps_writer):
            if w is not None:
                w.close()
        if dist.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    if dist.main:
        if stopped:
            print(
                f"stopped by signal at step {step}; checkpoint written. Resume with: vqa train --resume {run_dir}",
                flush=True,
            )
        elif best["accuracy"] >= 0:
            print(
                f"best: epoch {best['epoch']}  acc {best['accuracy']:.2f}  yes/no {best['accuracy_yes_no']:.2f}  "
                f"number {best['accuracy_number']:.2f}  other {best['accuracy_other']:.2f}  ({run_dir})",
                flush=True,
            )
    return best

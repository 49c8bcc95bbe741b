"""What a run writes into its folder besides checkpoints: config.yaml, TensorBoard event files (one
TensorBoard run: per-step and per-epoch scalars and the HParams row, hparams.py), metrics.jsonl, the
printed epoch lines and the best epoch's predictions file. Only the main rank writes.

Every scalar is indexed by the global optimizer step (an epoch's at the step it ended). An epoch's
checkpoint is written before its logs and holds them (`epoch_log`). On resume, whatever a run logged
after its last checkpoint is dropped and the checkpoint's own epoch written again: metrics.jsonl is
cut, the writer purges the events after the checkpoint's step, the epoch's scalars the event files
lack are added and the best predictions rewritten, so curves hold no duplicate or missing point.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from vqa import io
from vqa.agreement import AGREEMENT_BUCKETS
from vqa.config import Config, dump_yaml
from vqa.data.answers import ANSWER_TYPES, AnswerVocab, answer_type_key
from vqa.data.sources import get_source
from vqa.errors import UserError
from vqa.training.hparams import write_hparams

# val metrics logged as `val/<name>` every epoch, in this order (accuracy_agree_<bucket>: by how many
# annotators gave the most common answer, vqa/agreement.py; not in the printed epoch line)
_BY_TYPE = tuple(f"accuracy_{answer_type_key(t)}" for t in ANSWER_TYPES)
_BY_AGREEMENT = tuple(f"accuracy_agree_{name}" for name, _, _ in AGREEMENT_BUCKETS)
VAL_SCALARS = ("loss", "hard_ce", "soft_ce", "accuracy", *_BY_TYPE, *_BY_AGREEMENT, "ece", "entropy")


def kept_rows(path: Path, up_to_epoch: int) -> list[dict]:
    """The metrics.jsonl rows of epochs <= `up_to_epoch`, for a resume. A torn last line (a kill in the
    middle of its write) is the newest write, of an epoch the resume writes again: it is dropped."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for n, line in enumerate(lines, 1):
        try:
            rows.append(io.loads(line))
        except ValueError:
            if n < len(lines):
                raise UserError(
                    f"{path}: line {n} is not valid JSON; fix or delete the line, then resume"
                ) from None
    return [r for r in rows if isinstance(r, dict) and r.get("epoch", up_to_epoch + 1) <= up_to_epoch]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    """A metric for the printed lines; '-' where the split has none (e.g. no number questions)."""
    return "-" if value is None else format(value, spec)


def type_accuracies(m: dict) -> str:
    """The per-answer-type accuracies of the printed lines."""
    return "  ".join(f"{t} {_fmt(m[f'accuracy_{answer_type_key(t)}'])}" for t in ANSWER_TYPES)


def epoch_line(
    epoch: int, epochs: int, train_loss: float, val: dict, rate: float, seconds: float, split: str = "val"
) -> str:
    """The printed line of an epoch; `split` names the validation split its val numbers are from."""
    return (
        f"epoch {epoch}/{epochs}  train_loss {train_loss:.4f}  val_loss {_fmt(val['loss'], '.4f')}  "
        f"acc {_fmt(val['accuracy'])}  {type_accuracies(val)}  [val: {split}]  ({rate:.0f} samples/s, {seconds:.1f}s)"
    )


def best_line(best: dict, run_dir: Path, split: str = "val") -> str:
    """The printed line of the best epoch; `split` names the split that chose it."""
    return f"best: epoch {best['epoch']} on {split}  acc {_fmt(best['accuracy'])}  {type_accuracies(best)}  ({run_dir})"


def epoch_log(
    epoch: int, step: int, totals: tuple, val: dict, lr: float, is_best: bool, val_split: str
) -> dict:
    """What an epoch logs: its metrics.jsonl row (the TensorBoard scalars, by name; `totals`: training loss,
    samples/s and seconds) and, for the best epoch so far, its validation predictions (question ids and
    answer indices). Kept in the epoch's checkpoint (Progress.log), so a resume can write again whatever of
    it a failure or a kill lost."""
    train_loss, rate, seconds = totals
    scalars = {"train/loss": train_loss, **{f"val/{k}": val[k] for k in VAL_SCALARS}}
    scalars |= {"lr": lr, "throughput/samples_per_s": rate}
    predictions = None
    if is_best:
        ids = list(val["predictions"])
        answers = [val["predictions"][q] for q in ids]
        predictions = (torch.tensor(ids, dtype=torch.int64), torch.tensor(answers, dtype=torch.int64))
    row = {"epoch": epoch, "step": step, "val_split": val_split, **scalars, "seconds": seconds}
    return {"row": row, "predictions": predictions}


def logged_at(run_dir: Path, step: int) -> set[str]:
    """The scalar tags with a point at `step` in the run's event files, as TensorBoard reads them (earlier
    resumes' purges applied): what a resume must not write again."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return {tag for tag in events.Tags()["scalars"] if any(e.step == step for e in events.Scalars(tag))}


class RunLog:
    """The run folder's logs, continuing after `progress` (a new run: Progress()); `avocab` and the
    validation `records` turn predictions into a results file."""

    def __init__(self, cfg: Config, enabled: bool, resume: bool, progress, avocab: AnswerVocab, records):
        self.cfg, self.enabled, self.run_dir = cfg, enabled, cfg.run_dir
        self.avocab, self.records = avocab, records
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.writer, self.best = None, None
        if not enabled:
            return
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        io.write_text_atomic(self.run_dir / "config.yaml", dump_yaml(cfg))
        # the checkpoint's own epoch is written again from the checkpoint (its log may have been lost)
        saved = progress.log if resume else None
        redo = saved if saved and saved["row"]["epoch"] == progress.epoch else None
        keep = progress.epoch - 1 if redo else progress.epoch
        rows = kept_rows(self.metrics_path, keep) if resume else []
        io.write_text_atomic(self.metrics_path, "".join(io.dumps(r) + "\n" for r in rows))
        self.best = max(rows, key=lambda r: r["val/accuracy"], default=None)  # the first best epoch
        write_hparams(self.run_dir, cfg)
        logged = logged_at(self.run_dir, redo["row"]["step"]) if redo else set()
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=progress.step + 1)
        if redo:
            self._write(redo, logged)

    def say(self, line: str) -> None:
        if self.enabled:
            print(line, flush=True)

    def step(self, step: int, loss: float) -> None:
        """train/loss_step every `train.log_every` optimizer steps."""
        if self.writer is not None and step % self.cfg.train.log_every == 0:
            self.writer.add_scalar("train/loss_step", loss, step)

    def epoch(self, entry: dict) -> None:
        """The epoch line, then what `entry` (epoch_log) holds: TensorBoard scalars, the metrics.jsonl row
        and the best epoch's predictions file."""
        if not self.enabled:
            return
        row = entry["row"]
        val = {k.removeprefix("val/"): v for k, v in row.items() if k.startswith("val/")}
        split = row.get("val_split", self.cfg.data.val_split)
        rate, seconds = row["throughput/samples_per_s"], row["seconds"]
        line = epoch_line(row["epoch"], self.cfg.train.epochs, row["train/loss"], val, rate, seconds, split)
        print(line, flush=True)
        self._write(entry)

    def _write(self, entry: dict, logged: set[str] = frozenset()) -> None:
        """The epoch's scalars at its last step (but the `logged` ones: there already), with
        `best/accuracy` and `best/epoch` for the HParams table; its row; its predictions."""
        row = entry["row"]
        if self.best is None or row["val/accuracy"] > self.best["val/accuracy"]:
            self.best = {"epoch": row["epoch"], "val/accuracy": row["val/accuracy"]}
        scalars = {k: v for k, v in row.items() if k not in ("epoch", "step", "seconds", "val_split")}
        best = {"best/accuracy": self.best["val/accuracy"], "best/epoch": self.best["epoch"]}
        for name, value in {"epoch": row["epoch"], **scalars, **best}.items():
            if value is not None and name not in logged:  # a missing metric: no point
                self.writer.add_scalar(name, value, row["step"])
        self.writer.flush()
        io.append_line(self.metrics_path, io.dumps(row))
        if entry["predictions"] is not None:
            self._predictions(*entry["predictions"])

    def _predictions(self, ids: torch.Tensor, answers: torch.Tensor) -> None:
        """The validation answers as a results file in the source's server format (`vqa eval --source`
        reads it): [{"question_id", "answer"}], or [{"image", "answer"}] for VizWiz."""
        source = get_source(self.cfg.data.source)
        chosen = dict(zip(ids.tolist(), (self.avocab.itos[i] for i in answers.tolist())))
        results = source.results(chosen, self.records)
        io.write_text_atomic(
            self.run_dir / f"predictions_{self.cfg.data.val_split}.json", json.dumps(results)
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

"""What a run writes into its folder besides checkpoints: config.yaml, TensorBoard event files (per
epoch in the run folder, per step in steps/), metrics.jsonl, the printed epoch lines and the best
epoch's predictions file. Only the main rank writes; on other ranks every method does nothing.

On resume, whatever a killed run logged after its last checkpoint is dropped: metrics.jsonl is cut
to the checkpoint's epochs and the TensorBoard writers purge later events (purge_step), so curves
never hold duplicate points.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from vqa import io
from vqa.agreement import AGREEMENT_BUCKETS
from vqa.config import Config, dump_yaml
from vqa.data.answers import ANSWER_TYPES, AnswerVocab, answer_type_key
from vqa.data.sources import get_source

# val metrics logged as `val/<name>` every epoch, in this order (accuracy_agree_<bucket>: by how many
# annotators gave the most common answer, vqa/agreement.py; not in the printed epoch line)
VAL_SCALARS = ("loss", "hard_ce", "soft_ce", "accuracy",
               *(f"accuracy_{answer_type_key(t)}" for t in ANSWER_TYPES),
               *(f"accuracy_agree_{name}" for name, _, _ in AGREEMENT_BUCKETS), "ece", "entropy")  # fmt: skip


def read_metrics(path: Path, up_to_epoch: int) -> list[dict]:
    """metrics.jsonl lines of the epochs a checkpoint covers (a kill can leave one more)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= up_to_epoch]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    """A metric for the printed lines; '-' where the split has none (e.g. no number questions)."""
    return "-" if value is None else format(value, spec)


def _types(m: dict) -> str:
    return "  ".join(f"{t} {_fmt(m[f'accuracy_{answer_type_key(t)}'])}" for t in ANSWER_TYPES)


def epoch_line(
    epoch: int, epochs: int, train_loss: float, val: dict, rate: float, seconds: float, split: str = "val"
) -> str:
    """The printed line of an epoch; `split` names the validation split its val numbers are from."""
    return (
        f"epoch {epoch}/{epochs}  train_loss {train_loss:.4f}  val_loss {_fmt(val['loss'], '.4f')}  "
        f"acc {_fmt(val['accuracy'])}  {_types(val)}  [val: {split}]  ({rate:.0f} samples/s, {seconds:.1f}s)"
    )


def best_line(best: dict, run_dir: Path, split: str = "val") -> str:
    """The printed line of the best epoch; `split` names the split that chose it."""
    return (
        f"best: epoch {best['epoch']} on {split}  acc {_fmt(best['accuracy'])}  {_types(best)}  ({run_dir})"
    )


def diverged(error: str, cfg: Config, main: bool) -> str:
    """The one line for a non-finite loss. A run that never wrote a checkpoint leaves no folder
    behind (nothing in it could be resumed); advice names what is not set yet."""
    last = cfg.run_dir / "checkpoints" / "last.pt"
    if last.is_file():
        where = (
            f"the last good checkpoint is {last} (resume with: vqa train --resume {cfg.run_dir} train.lr=...)"
        )
    else:
        if main:
            shutil.rmtree(cfg.run_dir, ignore_errors=True)
        where = f"no checkpoint was written yet, so the run folder {cfg.run_dir} was removed"
    advice = f"lower train.lr (now {cfg.train.lr:g})"
    if cfg.train.grad_clip <= 0:
        advice += " or set train.grad_clip (e.g. 1.0)"
    return f"training diverged: {error}; {where}; {advice}"


class RunLog:
    """The run folder's logs. `start_epoch` / `step` are where the run continues (1 / 0 when new)."""

    def __init__(self, cfg: Config, enabled: bool, resume: bool, start_epoch: int, step: int,
                 overwrite: bool = False):  # fmt: skip
        self.cfg, self.enabled, self.run_dir = cfg, enabled, cfg.run_dir
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.writer = self.steps_writer = None
        if not enabled:
            return
        if (
            overwrite and not resume
        ):  # `vqa train --overwrite`: the old run goes, now that the new one is ready
            shutil.rmtree(self.run_dir, ignore_errors=True)
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        io.write_text_atomic(self.run_dir / "config.yaml", dump_yaml(cfg))
        rows = read_metrics(self.metrics_path, start_epoch - 1)
        io.write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=start_epoch if resume else None)
        self.steps_writer = SummaryWriter(
            log_dir=str(self.run_dir / "steps"), purge_step=step + 1 if resume else None
        )

    def say(self, line: str) -> None:
        if self.enabled:
            print(line, flush=True)

    def step(self, step: int, loss: float) -> None:
        """train/loss_step every `train.log_every` optimizer steps."""
        if self.steps_writer is not None and step % self.cfg.train.log_every == 0:
            self.steps_writer.add_scalar("train/loss_step", loss, step)

    def epoch(self, epoch: int, step: int, train_loss: float, val: dict, lr: float, rate: float,
              seconds: float) -> None:  # fmt: skip
        """The epoch line, every scalar to TensorBoard and one line of metrics.jsonl."""
        if not self.enabled:
            return
        split = self.cfg.data.val_split
        print(epoch_line(epoch, self.cfg.train.epochs, train_loss, val, rate, seconds, split), flush=True)
        scalars = {"train/loss": train_loss, **{f"val/{k}": val[k] for k in VAL_SCALARS}, "lr": lr,
                   "throughput/samples_per_s": rate}  # fmt: skip
        for name, value in scalars.items():
            if value is not None:  # a metric the split does not have is absent from the curves
                self.writer.add_scalar(name, value, epoch)
        self.writer.flush()
        with open(self.metrics_path, "a") as f:
            row = {"epoch": epoch, "step": step, "val_split": split, **scalars, "seconds": seconds}
            f.write(io.dumps(row) + "\n")

    def predictions(self, predictions: dict[int, int], avocab: AnswerVocab, records) -> None:
        """The validation answers as a results file in the source's server format (`vqa eval --source`
        reads it): [{"question_id", "answer"}], or [{"image", "answer"}] for VizWiz."""
        if not self.enabled:
            return
        source = get_source(self.cfg.data.source)
        results = source.results({q: avocab.itos[i] for q, i in predictions.items()}, records)
        io.write_text_atomic(
            self.run_dir / f"predictions_{self.cfg.data.val_split}.json", json.dumps(results)
        )

    def close(self) -> None:
        for w in (self.writer, self.steps_writer):
            if w is not None:
                w.close()

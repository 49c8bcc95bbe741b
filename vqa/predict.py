"""`vqa predict`: load a run, answer every question of a split, write a results file for the server.

Test splits (test-dev2015, test2015) have no annotations: only the results file is written.
With annotations, the results are also scored exactly as the evaluation server scores them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vqa import io
from vqa.config import Config, config_from_dict
from vqa.data.answers import AnswerVocab
from vqa.data.build import build_split
from vqa.data.dataset import VQADataset, build_loader
from vqa.data.text import QuestionVocab
from vqa.device import resolve_device
from vqa.evaluate import evaluate, format_report
from vqa.models import build_model


@dataclass
class LoadedRun:
    cfg: Config
    model: nn.Module
    qvocab: QuestionVocab
    avocab: AnswerVocab
    image_dim: int
    epoch: int


def load_run(run_dir: str | Path, checkpoint: str = "best", device: torch.device | str = "cpu") -> LoadedRun:
    """Model, vocabularies and resolved config of a run folder, from checkpoints/<checkpoint>.pt."""
    path = Path(run_dir) / "checkpoints" / f"{checkpoint}.pt"
    state = io.read_checkpoint(path)
    cfg = config_from_dict(state["config"], source=str(path))
    qvocab = QuestionVocab.from_dict(state["question_vocab"])
    avocab = AnswerVocab.from_dict(state["answer_vocab"])
    model = build_model(cfg.model, len(qvocab), len(avocab), state["image_dim"])
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return LoadedRun(cfg, model, qvocab, avocab, state["image_dim"], state["epoch"])


def split_dataset(run: LoadedRun, split: str, data_root: str | None = None) -> VQADataset:
    """Every question of `split`, encoded with the run's vocabularies (`data_root` overrides the run's)."""
    if data_root:
        run.cfg.data.root = data_root
    return build_split(run.cfg, split, run.qvocab, run.avocab, run.image_dim)


@torch.no_grad()
def predict(
    run: LoadedRun, dataset: VQADataset, device: torch.device, batch_size: int = 256
) -> dict[int, str]:
    """question_id -> answer string (the arg-max over the answer vocabulary)."""
    loader = build_loader(dataset, batch_size, num_workers=run.cfg.data.num_workers)
    out: dict[int, str] = {}
    for batch in loader:
        batch = batch.to(device)
        logits = run.model(batch.question, batch.question_len, batch.image, batch.image_mask)  # [B, A]
        for qid, i in zip(batch.question_id.tolist(), logits.argmax(1).tolist()):
            out[qid] = run.avocab.itos[i]
    return out


def predict_command(args: argparse.Namespace) -> int:
    device = resolve_device("auto")
    run = load_run(args.run, args.checkpoint, device)
    dataset = split_dataset(run, args.split, args.data_root)
    records = dataset.records
    answers = predict(run, dataset, device)
    results = [{"question_id": qid, "answer": a} for qid, a in sorted(answers.items())]
    out = Path(args.out)
    io.write_text_atomic(out, json.dumps(results))
    print(f"predict: {len(results):,} answers for {args.split} from {args.run} (epoch {run.epoch}) -> {out}")
    if records[0].annotation is not None:
        report = evaluate(answers, [r.annotation for r in records])
        print(format_report(report))
        if args.report:
            io.write_text_atomic(args.report, json.dumps(report, indent=1))
    return 0

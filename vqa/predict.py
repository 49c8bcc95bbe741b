"""`vqa predict`: load a run, answer every question of a split, write a results file for the server.

    vqa predict --run R --split test2015 [--out DIR_OR_FILE] [--name NAME]

The results file has the format of the run's dataset (data.source): a JSON list of {"question_id",
"answer"} (VQA v1 / v2, VQA-CP, OK-VQA) or of {"image", "answer"} (VizWiz). --out a folder (default:
the run folder) gets the evaluation server's name for it (VQA v2:
vqa_OpenEnded_mscoco_<split>_<name>_results.json, <name> = --name or the run's name); --out a file
path is used as it is.

VQA v2 (section 4 of docs/vqa-reference.md): test-dev is a subset of test2015 and EvalAI scores every
phase from the complete test2015 file, so `--split test2015` is the submission.

Every question of the split is answered, or nothing is written. With annotations the results are also
scored exactly as `vqa eval` scores them.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vqa import io, runs
from vqa.config import Config, config_from_dict
from vqa.data.answers import AnswerVocab
from vqa.data.build import build_split, split_files
from vqa.data.dataset import VQADataset
from vqa.data.feed import build_loader
from vqa.data.finite import nonfinite_features
from vqa.data.sources import Source, get_source
from vqa.data.text import QuestionVocab
from vqa.debias import base_weights
from vqa.device import resolve_device
from vqa.errors import UserError
from vqa.evaluate import format_report, split_report
from vqa.models import build_model

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # safe in a file name, no spaces


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
    state = runs.read_checkpoint(path)
    cfg = config_from_dict(state["config"], source=str(path))
    qvocab = QuestionVocab.from_dict(state["question_vocab"])
    avocab = AnswerVocab.from_dict(state["answer_vocab"])
    model = build_model(cfg.model, len(qvocab), len(avocab), state["image_dim"])
    model.load_state_dict(base_weights(state["model"], cfg.train.debias))  # the base model alone
    model.to(device).eval()
    return LoadedRun(cfg, model, qvocab, avocab, state["image_dim"], state["epoch"])


def split_dataset(
    run: LoadedRun, split: str, data_root: str | None = None, keep_text: bool = True
) -> VQADataset:
    """Every question of `split`, encoded with the run's vocabularies (`data_root` overrides the run's);
    `keep_text`: keep the question text and answers (`vqa attention` draws them)."""
    if data_root:
        run.cfg.data.root = data_root
    return build_split(run.cfg, split, run.qvocab, run.avocab, run.image_dim, keep_text=keep_text)


@torch.no_grad()
def predict(
    run: LoadedRun, dataset: VQADataset, device: torch.device, batch_size: int = 256
) -> dict[int, str]:
    """question_id -> answer string (the arg-max over the answer vocabulary); a UserError line when
    the model's outputs are not finite (naming the feature file, image and row when the features are
    the cause): an arg-max over NaN is no answer."""
    loader = build_loader(dataset, batch_size, num_workers=run.cfg.data.num_workers)
    out: dict[int, str] = {}
    bad: list[int] = []
    for batch in loader:
        qids = batch.question_id
        batch = batch.to(device)
        logits = run.model(batch.question, batch.question_len, batch.image, batch.image_mask)  # [B, A]
        bad += qids[~torch.isfinite(logits).all(1).cpu()].tolist()
        for qid, i in zip(qids.tolist(), logits.argmax(1).tolist()):
            out[qid] = run.avocab.itos[i]
    if bad:
        cause = nonfinite_features(dataset, bad)
        if cause:
            raise UserError(f"{cause}; nothing written: re-extract or regenerate that file")
        raise UserError(
            f"the model's outputs are not finite for {len(bad):,} questions (first: {bad[0]}); nothing written: "
            "the checkpoint's weights are not usable, use the other --checkpoint"
        )
    return out


def server_name(source: Source, split: str, name: str) -> str:
    """The results file's name on the dataset's server (or ours where it has none), or a UserError
    line for a bad name."""
    if not NAME_PATTERN.fullmatch(name):
        raise UserError(
            f"name '{name}' cannot go into the results file name; pass --name with letters, digits, '_', '-' "
            "or '.' only (e.g. --name pool-soft)"
        )
    return source.results_file(split, name)


def check_writable(path: Path, option: str) -> None:
    """Refuse, before any work, a target that cannot be written: a folder in the way, a file where
    a folder must be, or a folder without write permission."""
    if path.is_dir():
        raise UserError(f"{option} {path}: a folder of that name is in the way; pass another file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(
                    f"{option} {path}: {parent} is a file, not a folder; pass a folder or a file path inside one"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"{option} {path}: folder {parent} is not writable; choose another {option}")
            return


def results_path(out: str | None, run_dir: str | Path, name: str) -> Path:
    """The file to write: `out` itself when it names a file, else `name` inside the folder `out`
    (default: the run folder). A folder is an existing one, a path ending in '/', or a new path
    without a suffix."""
    path = Path(out) if out else Path(run_dir)
    if not out or path.is_dir() or out.endswith(("/", os.sep)) or (not path.exists() and not path.suffix):
        path = path / name
    check_writable(path, "--out")
    return path


def check_complete(answers: dict[int, str], dataset: VQADataset, questions_file: Path, split: str) -> int:
    """The number of questions of the split; a UserError line unless `answers` holds exactly one answer
    for each question of `questions_file` (a results file missing questions is never written)."""
    expected = set(dataset.question_id.tolist())
    missing = sorted(expected - answers.keys())
    extra = sorted(answers.keys() - expected)
    if missing:
        rows = np.flatnonzero(np.isin(dataset.question_id, missing[:3]))
        by_image = dataset.records.keyed_by == "image"
        first = [dataset.records.image_key(i) for i in rows] if by_image else missing[:3]
        raise UserError(
            f"{split}: {len(missing):,} of {len(expected):,} questions of {questions_file} have no answer "
            f"(first: {first}); nothing written. Give every image of the split features and run again"
        )
    if extra:
        raise UserError(
            f"{split}: {len(extra):,} answers are for questions not in {questions_file} (first: {extra[:3]}); "
            "nothing written. Use the questions file of the split the features belong to"
        )
    return len(expected)


def split_lines(source: Source, split: str, n: int, path: Path, name: str) -> list[str]:
    """What the results file is for on the server, and its name there when --out renamed it."""
    lines = []
    info = source.split(split)
    if info.server:
        official = info.size
        size = f"{n:,} questions" + (
            "" if not official or n == official else f"; {source.title}'s {split} has {official:,}"
        )
        lines.append(f"{split} ({size}): {info.server}")
    if path.name != name:
        lines.append(f"the evaluation server's name for this file: {name}")
    return lines


def predict_command(args: argparse.Namespace) -> int:
    device = resolve_device("auto")
    run = load_run(args.run, args.checkpoint, device)
    source = get_source(run.cfg.data.source)
    source.split(args.split)  # a split the dataset does not have: refused before any work
    name = server_name(source, args.split, args.name or run.cfg.name)
    out = results_path(args.out, args.run, name)
    if args.report:
        check_writable(Path(args.report), "--report")
    questions_file, answers_file = split_files(run.cfg, args.split)
    inputs = [
        ("questions file", questions_file),
        ("annotations file", answers_file),
        *((f"run's checkpoint {c}.pt", Path(args.run) / "checkpoints" / f"{c}.pt") for c in ("best", "last")),
        ("run's config", Path(args.run) / "config.yaml"),
        ("run's metrics", Path(args.run) / "metrics.jsonl"),
        ("feature file", Path(run.cfg.data.root) / run.cfg.data.features_file.format(split=args.split)),
    ]
    io.refuse_inputs_as_outputs([("--out", out), ("--report", args.report)], inputs)
    if args.report and Path(args.report).exists() and os.path.samefile(args.report, out):
        raise UserError(f"--report {args.report} is the results file --out writes; pass two different files")
    dataset = split_dataset(run, args.split, args.data_root, keep_text=False)
    if partial := len(dataset.report.not_all_answers):  # answered, left out of the scores as `vqa eval` does
        print(f"predict: {partial:,} questions of {args.split} have no 10 answers: answered, not scored")
    answers = predict(run, dataset, device)
    n = check_complete(answers, dataset, questions_file, args.split)
    results = source.results(answers, dataset.records)
    io.write_json_atomic(out, results)
    print(f"predict: {len(results):,} answers for {args.split} from {args.run} (epoch {run.epoch}) -> {out}")
    for line in split_lines(source, args.split, n, out, name):
        print(f"predict: {line}")
    if dataset.annotated:
        report = split_report(source, answers_file or questions_file, questions_file, results)
        print(format_report(report))
        if args.report:
            io.write_json_atomic(args.report, report, indent=1)
    elif args.report:
        print(f"predict: no --report: {args.split} has no annotations to score against")
    return 0

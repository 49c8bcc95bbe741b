"""`vqa stats --config C [key=value ...]`: the data statistics a loss study checks before it trains.

For the training split (the questions the losses train on: those whose most common answer is in the
answer vocabulary) and the validation split of a config:

- human agreement: how many of the ten annotators gave the most common answer (its top count, every
  answer counted under the evaluator's keys: vqa.agreement), the share of questions in each agreement
  bucket, and the official accuracy of answering the most common answer (the ceiling of a model that
  gives one answer per question);
- target entropy: the mean entropy of the human soft targets (vqa.data.target_stats);
- the label smoothing epsilon whose target is as spread out (train.label_smoothing of the matched
  control; the training split's is the one to use);
- out-of-vocabulary weight: the share of the human answers outside the answer vocabulary (the weight a
  soft target loses), and the questions whose most common answer lies outside it.

The Datasets are built as `vqa train` builds them, so the data must exist; nothing is written unless
--out names a JSON file for the numbers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vqa.agreement import AGREEMENT_BUCKETS, bucket_label, bucket_names
from vqa.config import Config, load_config
from vqa.data.answers import SCORE_OF_COUNT
from vqa.data.build import build_datasets
from vqa.data.dataset import VQADataset
from vqa.data.target_stats import matching_label_smoothing, soft_target_entropy
from vqa.errors import UserError
from vqa.io import refuse_inputs_as_outputs, write_json_atomic


def split_stats(ds: VQADataset, num_answers: int) -> dict:
    """The numbers of the module docstring for one encoded split (questions with 10 answers)."""
    top = ds.top_count[ds.top_count > 0]  # [Q] 1..10; 0: a question without answers (not scored)
    names = bucket_names(top)
    ceiling = SCORE_OF_COUNT[top].astype(np.float64)  # [Q] official accuracy of the most common answer
    r = ds.report
    return {
        "split": r.split,
        "questions": int(len(ds)),
        "mean_top_count": float(top.mean()) if top.size else None,
        "agreement_buckets": {b: names.count(b) / max(len(names), 1) for b, _, _ in AGREEMENT_BUCKETS},
        "most_common_answer_accuracy": float(ceiling.mean()) if top.size else None,
        "soft_target_entropy": soft_target_entropy(ds.answer_count),
        "matching_label_smoothing": matching_label_smoothing(ds.answer_count, num_answers),
        "oov_weight": r.target_weight_lost,
        "most_common_answer_oov": r.hard_answer_oov,
        "left_out_for_it": r.dropped_hard_oov,
        "no_answer_in_vocabulary": r.no_answer_in_vocab,
    }


def stats_lines(s: dict, num_answers: int) -> list[str]:
    """How `vqa stats` prints one split's numbers."""
    if s["mean_top_count"] is None:
        return [f"{s['split']}: {s['questions']:,} questions, none with 10 answers: nothing to measure"]
    buckets = ", ".join(f"{bucket_label(b)}: {100 * v:.1f}%" for b, v in s["agreement_buckets"].items())
    left_out = f" ({s['left_out_for_it']:,} left out of training)" if s["left_out_for_it"] else ""
    return [
        f"{s['split']}: {s['questions']:,} questions",
        f"  human agreement: the most common answer is given by {s['mean_top_count']:.2f} of 10 annotators "
        f"on average; top count {buckets}",
        f"  answering the most common answer scores {100 * s['most_common_answer_accuracy']:.2f}% "
        "(official accuracy; the ceiling of one answer per question)",
        f"  soft target entropy: {s['soft_target_entropy']:.4f} nats; label smoothing as spread out: "
        f"train.label_smoothing={s['matching_label_smoothing']:.4f} (over {num_answers:,} answers)",
        f"  outside the answer vocabulary: {100 * s['oov_weight']:.2f}% of the answer weight; the most "
        f"common answer of {s['most_common_answer_oov']:,} questions{left_out}; no answer at all: "
        f"{s['no_answer_in_vocabulary']:,}",
    ]


def config_stats(cfg: Config) -> tuple[int, list[dict]]:
    """(answers in the vocabulary, `split_stats` of the training and validation splits) of a config,
    its Datasets built as `vqa train` builds them."""
    data = build_datasets(cfg)
    n = len(data.avocab)
    return n, [split_stats(data.train, n), split_stats(data.val, n)]


def stats_command(args: argparse.Namespace) -> int:
    """`vqa stats --config C [--out FILE.json] [key=value ...]` (vqa.cli parses)."""
    if args.out and Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; give the JSON file to write")
    refuse_inputs_as_outputs([("--out", args.out)], [("config file", args.config)])
    cfg = load_config(args.config, args.overrides)
    n, splits = config_stats(cfg)
    print(f"{args.config}: data.source {cfg.data.source} in {cfg.data.root}, {n:,} answers in the vocabulary")
    for s in splits:
        print("\n".join(stats_lines(s, n)))
    if args.out:
        write_json_atomic(args.out, {"config": args.config, "answers": n, "splits": splits}, indent=1)
        print(f"stats: -> {args.out}")
    return 0

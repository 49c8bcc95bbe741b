"""Helpers several test files share; tests import them as `from helpers import ...`.

(pytest puts this folder on sys.path: tests/ has a conftest.py and no __init__.py, and the
default import mode is "prepend".)

`random_batch`, a Batch with random sparse targets, is defined once, in the losses benchmark,
which measures on it; the tests reuse that definition (tests may import from vqa.bench, never
the reverse), through here so that no test depends on where the benchmark keeps it.

`collate` stacks a list of `VQADataset.__getitem__` items into a Batch, the plain reference that
`VQADataset.__getitems__` (the batch path training reads) must equal.

`assert_same_metrics` compares two runs (an interrupted and resumed one with an uninterrupted one):
metrics.jsonl and every TensorBoard curve, as TensorBoard's reader sees them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vqa.bench.losses import random_batch
from vqa.data.dataset import Batch

__all__ = ["assert_same_metrics", "collate", "curves", "metrics", "pad", "random_batch"]

COMPARED = ("epoch", "step", "train/loss", "val/loss", "val/hard_ce", "val/soft_ce", "val/accuracy",
            "val/accuracy_yes_no", "val/accuracy_number", "val/accuracy_other", "lr")  # fmt: skip


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_metrics(a: Path, b: Path) -> None:
    ma, mb = metrics(a), metrics(b)
    assert len(ma) == len(mb)
    for x, y in zip(ma, mb):
        for key in COMPARED:
            assert x[key] == pytest.approx(y[key], abs=1e-6), (x["epoch"], key)
    ca, cb = curves(a), curves(b)  # TensorBoard's view: no duplicate or stale point after the resume
    assert set(ca) == set(cb) and "train/loss_step" in ca
    for tag in set(ca) - {"throughput/samples_per_s"}:
        assert [s for s, _ in ca[tag]] == [s for s, _ in cb[tag]], tag
        assert [v for _, v in ca[tag]] == pytest.approx([v for _, v in cb[tag]], abs=1e-6), tag


def curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run)).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def pad(images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [n_b, D] of each question stacked into [B, N, D] (N the most regions) with the mask
    [B, N] of the real ones; the dtype kept (float16 from our files: Batch.to converts on the device)."""
    n_max = max(x.shape[0] for x in images)
    image = np.zeros((len(images), n_max, images[0].shape[1]), images[0].dtype)
    mask = np.zeros((len(images), n_max), bool)
    for b, x in enumerate(images):
        image[b, : x.shape[0]] = x
        mask[b, : x.shape[0]] = True
    return torch.from_numpy(image), torch.from_numpy(mask)


def collate(items: list[tuple]) -> Batch:
    """Stack a list of items (`VQADataset.__getitem__`); region features padded with a mask (`pad`)."""
    q, qlen, images, ans, aidx, aw, ascore, qid, qtype = zip(*items)
    image, mask = pad(list(images))
    longs = (torch.from_numpy(np.asarray(x, np.int64)) for x in (q, qlen, ans, aidx, qid, qtype))
    q, qlen, ans, aidx, qid, qtype = longs
    weight, score = torch.from_numpy(np.stack(aw)), torch.from_numpy(np.stack(ascore))
    return Batch(q, qlen, image, mask, ans, aidx, weight, score, qid, qtype)

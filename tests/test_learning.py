"""Every registered model learns: 2 epochs on the `tiny` synthetic data beat the question-only prior.

The prior answers each validation question with the most common training answer to the same
words; the synthetic questions come in complementary pairs (the same words, another image,
another answer), so only a model that reads the image can beat it.
"""

from __future__ import annotations

import json

import pytest
from test_train import question_only_prior

from vqa.cli import main
from vqa.models import MODELS

# Small sizes so each run takes a few seconds on a CPU; every model gets the same question encoder.
COMMON = [
    "train.epochs=2", "train.batch_size=16", "train.lr=3e-3", "train.lr_decay_epochs=[]",
    "model.embed_dim=32", "model.rnn_dim=64", "model.hidden_dim=64", "model.attention_dim=32",
    "model.mcb_dim=256", "model.glimpses=1", "model.dropout=0.0",
]  # fmt: skip
FEATURES = {"updn": "boxes"}  # the region-box model; the others read the 7 x 7 grid


@pytest.fixture(scope="module")
def prior(tiny_data) -> float:
    return question_only_prior(tiny_data)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_beats_the_question_only_prior(name, tiny_data, tmp_path, prior):
    features = FEATURES.get(name, "grid")
    args = ["train", "--config", "configs/synthetic/avg_soft.yaml", f"data.root={tiny_data}",
            f"out_dir={tmp_path}", f"name={name}", f"model.name={name}", f"data.features={features}", *COMMON]  # fmt: skip
    assert main(args) == 0
    metrics = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    best = max(m["val/accuracy"] for m in metrics)
    assert best > prior + 1.0, (
        f"{name} ({features}): best val accuracy {best:.2f} after 2 epochs does not beat "
        f"the question-only prior {prior:.2f} by a point"
    )

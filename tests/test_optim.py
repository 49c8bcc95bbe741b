"""The optimizers and schedules the published configs need: Adam's betas and eps, Adamax, the epochwise warm-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vqa.config import load_config
from vqa.errors import UserError
from vqa.training.optim import build_optimizer, build_scheduler, lr_factor

CONFIGS = Path(__file__).parents[1] / "configs"


def test_epochwise_warmup_is_mcans_schedule():
    """MCAN's WarmupOptimizer and BAN's gradual_warmup_steps: 1/4, 2/4, 3/4 of the rate in epochs 1-3,
    then the full rate; x0.2 from 0-based epochs 10 and 12 (MCAN's LR_DECAY_LIST over 13 epochs)."""
    per_epoch = [lr_factor(e * 5 + 4, 5, 3, [10, 12], 0.2, "epochwise") for e in range(13)]
    expected = [0.25, 0.5, 0.75] + [1.0] * 7 + [0.2, 0.2, 0.04]
    assert per_epoch == pytest.approx(expected)
    within = {lr_factor(s, 5, 3, [], 0.2, "epochwise") for s in range(5)}
    assert within == {0.25}  # constant inside an epoch, unlike the linear warm-up
    assert lr_factor(3, 10, 2, [], 0.1) == pytest.approx(0.2)  # linear: step 4 of 20


@pytest.mark.parametrize("config, kind, betas, eps", [
    ("mcan_bce", torch.optim.Adam, (0.9, 0.98), 1e-9),
    ("ban_bce", torch.optim.Adamax, (0.9, 0.999), 1e-8),
])  # fmt: skip
def test_published_optimizers_reach_torch(config, kind, betas, eps):
    cfg = load_config(CONFIGS / "vqa2" / f"{config}.yaml")
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(cfg.train, model)
    assert type(opt) is kind
    group = opt.param_groups[0]
    assert (group["betas"], group["eps"]) == (betas, eps)
    sched = build_scheduler(cfg.train, opt, steps_per_epoch=4)
    assert group["lr"] == pytest.approx(cfg.train.lr / 4)  # the first warm-up epoch
    for _ in range(4 * 3):
        opt.step()
        sched.step()
    assert group["lr"] == pytest.approx(cfg.train.lr)


@pytest.mark.parametrize("overrides, match", [
    (["train.adam_betas=[0.9]"], "train.adam_betas"),
    (["train.adam_betas=[0.9, 1.0]"], "train.adam_betas"),
    (["train.adam_eps=0"], "train.adam_eps"),
    (["train.warmup=epochwise", "train.warmup_epochs=1.5"], "whole epochs"),
    (["train.warmup=cosine"], "train.warmup"),
    (["model.name=mcan", "model.hidden_dim=100", "model.heads=8"], "multiple of 'model.heads'"),
    (["model.layers=0"], "model.layers"),
    (["model.fc_dropout=1"], "model.fc_dropout"),
])  # fmt: skip
def test_bad_settings_name_the_key(overrides, match):
    with pytest.raises(UserError, match=match):
        load_config(None, overrides)

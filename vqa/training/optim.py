"""The optimizer and the learning-rate schedule: a warm-up (linear, or epochwise as MCAN and BAN
train), then the authors' step decay."""

from __future__ import annotations

import torch

from vqa.config import TrainConfig


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    adams = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax}
    if cfg.optimizer in adams:
        betas = (cfg.adam_betas[0], cfg.adam_betas[1])
        return adams[cfg.optimizer](
            params, lr=cfg.lr, betas=betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay
        )
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def lr_factor(
    step: int,
    steps_per_epoch: int,
    warmup_epochs: float,
    milestones: list[int],
    gamma: float,
    warmup: str = "linear",
) -> float:
    """A warm-up over the first `warmup_epochs`, then the step decay of the authors' code: the rate
    is multiplied by `gamma` at each milestone epoch (0-based epochs).

    `linear`: from 0 to 1 per step. `epochwise` (MCAN's and BAN's code): x (k + 1) / (W + 1) during
    0-based epoch k < W, so W = 3 gives 1/4, 2/4, 3/4, then the full rate.
    """
    epoch = step // steps_per_epoch
    if warmup == "epochwise":
        warm = (epoch + 1) / (warmup_epochs + 1) if epoch < warmup_epochs else 1.0
    else:
        warmup_steps = warmup_epochs * steps_per_epoch
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warm * gamma ** sum(epoch >= m for m in milestones)


def build_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, steps_per_epoch, cfg.warmup_epochs, cfg.lr_decay_epochs, cfg.lr_decay_factor, cfg.warmup
        ),
    )

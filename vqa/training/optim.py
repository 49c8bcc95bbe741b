"""The optimizer and the learning-rate schedule: linear warm-up, then the authors' step decay."""

from __future__ import annotations

import torch

from vqa.config import TrainConfig


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def lr_factor(
    step: int, steps_per_epoch: int, warmup_epochs: float, milestones: list[int], gamma: float
) -> float:
    """Linear warm-up over the first `warmup_epochs` (per step), then the step decay of the
    authors' code: the rate is multiplied by `gamma` at each milestone epoch (0-based epochs)."""
    epoch = step // steps_per_epoch
    warmup_steps = warmup_epochs * steps_per_epoch
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warm * gamma ** sum(epoch >= m for m in milestones)


def build_scheduler(cfg: TrainConfig, optimizer, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, steps_per_epoch, cfg.warmup_epochs, cfg.lr_decay_epochs, cfg.lr_decay_factor
        ),
    )

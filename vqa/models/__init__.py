"""The model registry: MODELS maps a config name to a builder; build_model() looks it up."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from vqa.errors import UserError
from vqa.models.avg import build_avg
from vqa.models.mcb import build_mcb
from vqa.models.pool import build_pool
from vqa.models.updn import build_updn

MODELS: dict[str, Callable[..., nn.Module]] = {
    "avg": build_avg,
    "pool": build_pool,
    "mcb": build_mcb,
    "updn": build_updn,
}


def build_model(cfg, num_tokens: int, num_answers: int, image_dim: int) -> nn.Module:
    """Build `cfg.name` (a ModelConfig) for the given vocabulary and feature sizes."""
    if cfg.name not in MODELS:
        raise UserError(f"config: unknown model.name '{cfg.name}'; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[cfg.name](cfg, num_tokens, num_answers, image_dim)

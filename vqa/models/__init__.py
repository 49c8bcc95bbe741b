"""The model registry: MODELS maps a config name to a model class; build_model() builds one, passing
(num_tokens, num_answers, image_dim) and each size the class names from the ModelConfig, so a model
file holds only its module and a new size is one ModelConfig field.

The interface every model gives, so a method (vqa/debias/) can wrap any of them:
- `forward(question, question_len, image, image_mask) -> logits [B, A]` = `classifier(fuse(...)[0])`;
  attention models also take `return_attention=True` and return (logits, attention [B, N, G]);
- `fuse(...) -> (joint [B, joint_dim], question_vec [B, question_dim])`: what the classifier reads, and
  the question encoder's vector; `classifier(joint) -> logits [B, num_answers]` (a module);
- the attributes `joint_dim`, `question_dim` and `num_answers`.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict

from torch import nn

from vqa.errors import UserError
from vqa.models.avg import AvgModel
from vqa.models.ban import BANModel
from vqa.models.mcan import MCANModel
from vqa.models.mcb import MCBModel
from vqa.models.pool import PoolModel
from vqa.models.updn import UpDnModel

MODELS: dict[str, type[nn.Module]] = {
    "avg": AvgModel,
    "pool": PoolModel,
    "mcb": MCBModel,
    "updn": UpDnModel,
    "mcan": MCANModel,
    "ban": BANModel,
}


def build_model(cfg, num_tokens: int, num_answers: int, image_dim: int) -> nn.Module:
    """Build `cfg.name` (a ModelConfig) for the given vocabulary and feature sizes."""
    if cfg.name not in MODELS:
        raise UserError(f"config: unknown model.name '{cfg.name}'; choose one of {', '.join(sorted(MODELS))}")
    model = MODELS[cfg.name]
    accepted = inspect.signature(model).parameters
    sizes = {k: v for k, v in asdict(cfg).items() if k in accepted}
    return model(num_tokens, num_answers, image_dim, **sizes)

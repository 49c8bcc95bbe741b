"""Bias product (Clark et al. 2019, "Don't Take the Easy Way Out", section 3.2.1): the base model is
trained as a product of experts with the question type's answer prior, log p_hat = log p + log b
(mixin.py), so it gains nothing from learning what the prior already gives. The prior is fixed
(prior.py); the only parameter of the branch is the learned smoothing s = sigmoid(a)."""

from __future__ import annotations

import torch
from torch import nn

from vqa.debias.base import Method, Settings, batch_prior
from vqa.debias.mixin import ensemble_loss


class BiasProductBranch(nn.Module):
    def __init__(
        self,
        joint_dim: int,
        question_dim: int,
        num_answers: int,
        hidden_dim: int,
        prior: torch.Tensor,
        loss: str,
        settings: Settings,
    ):
        super().__init__()
        self.loss_name = loss
        self.register_buffer("prior", prior, persistent=False)  # [T + 1, A], rebuilt from the data
        self.smooth = nn.Parameter(torch.full((1,), -1.0))  # the authors' smooth_init

    def forward(self, joint: torch.Tensor, question_vec: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.smooth).expand(joint.shape[0], 1)  # [B, 1]: s

    def loss(self, logits: torch.Tensor, extra: torch.Tensor, batch) -> torch.Tensor:
        prior = batch_prior(self.prior, batch.question_type)  # [B, A]
        return ensemble_loss(self.loss_name, logits, prior, torch.ones_like(extra), extra, batch)[0]


BIAS_PRODUCT = Method("bias_product", ("hard_ce", "soft_ce", "bce"), BiasProductBranch, "Clark et al. 2019")

"""Learned-Mixin +H (Clark et al. 2019, "Don't Take the Easy Way Out", sections 3.2.2-3.2.3): the
product of experts with the question type's prior b, scaled by a learned gate
g(x) = softplus(w^T joint + c) that decides per question how much to trust the prior (mixin.py),
plus w times the entropy of the gated prior, so the gate cannot switch the prior off by flattening
it (train.debias_entropy, 0.36 for VQA; 0 gives the learned-mixin without the penalty)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vqa.debias.base import Method, Settings, batch_prior
from vqa.debias.mixin import ensemble_loss


class LMHBranch(nn.Module):
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
        self.loss_name, self.entropy_weight = loss, settings.entropy
        self.register_buffer("prior", prior, persistent=False)  # [T + 1, A], rebuilt from the data
        self.gate = nn.Linear(joint_dim, 1)  # the authors' bias_lin
        self.smooth = nn.Parameter(torch.full((1,), -1.0))  # the authors' smooth_init

    def forward(self, joint: torch.Tensor, question_vec: torch.Tensor) -> torch.Tensor:
        gate = F.softplus(self.gate(joint))  # [B, 1]: g(x)
        return torch.cat([gate, torch.sigmoid(self.smooth).expand_as(gate)], 1)  # [B, 2]: g, s

    def loss(self, logits: torch.Tensor, extra: torch.Tensor, batch) -> torch.Tensor:
        prior = batch_prior(self.prior, batch.question_type)  # [B, A]
        loss, entropy = ensemble_loss(self.loss_name, logits, prior, extra[:, :1], extra[:, 1:], batch)
        return loss + self.entropy_weight * entropy


LMH = Method("lmh", ("hard_ce", "soft_ce", "bce"), LMHBranch, "Clark et al. 2019")

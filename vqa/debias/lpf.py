"""LPF (Liang et al. 2021, "LPF: A Language-Prior Feedback Objective Function for De-biased VQA"):
a question-only branch measures how much of each question's answer the language prior already gives,
alpha = p_q(y) (softmax of the question-only logits at the target: the most common answer for
hard_ce, sum_k w_k p_q(a_k) for the soft targets), and the base model's per-question loss is
reweighted by (1 - alpha)^gamma (gamma = train.debias_gamma, 5), so questions the prior answers
count less:

    L = mean_i (1 - alpha_i)^gamma L_i(x_i)  +  train.debias_question_weight * L(q_logits)

The weight is feedback, not a path for gradients (detached); the branch is an MLP on the detached
question vector, trained by its own loss (the run's train.loss)."""

from __future__ import annotations

import torch
from torch import nn

from vqa.debias.base import Method, Settings, base_loss, per_question_loss, question_mlp, target_probability


class LPFBranch(nn.Module):
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
        self.loss_name, self.gamma, self.weight = loss, settings.gamma, settings.question_weight
        self.question_only = question_mlp(question_dim, hidden_dim, num_answers, layers=1)

    def forward(self, joint: torch.Tensor, question_vec: torch.Tensor) -> torch.Tensor:
        return self.question_only(question_vec.detach())  # [B, A]

    def loss(self, logits: torch.Tensor, extra: torch.Tensor, batch) -> torch.Tensor:
        alpha = target_probability(self.loss_name, torch.softmax(extra.detach(), 1), batch)  # [B]
        weight = (1 - alpha).clamp(min=0) ** self.gamma  # [B]
        per_question, valid = per_question_loss(self.loss_name, logits, batch)  # [B], [B]
        main = (weight * valid * per_question).sum() / valid.sum().clamp(min=1)
        return main + self.weight * base_loss(self.loss_name, extra, batch)


LPF = Method("lpf", ("hard_ce", "soft_ce", "bce"), LPFBranch, "Liang et al. 2021")

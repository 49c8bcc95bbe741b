"""RUBi (Cadene et al. 2019, "RUBi: Reducing Unimodal Biases in VQA"): a question-only branch masks
the base model's logits during training so that questions answerable from the question alone
contribute less to its gradient.

    q_pred = c_1(question_vec), with no gradient into the question encoder (the vector is detached)
    main loss on x * sigmoid(q_pred)    (the fused prediction, eq. 3)
    question loss on q_out = c_2(q_pred), weight train.debias_question_weight (1.0)

c_1 is an MLP (question vector -> hidden -> hidden -> A), c_2 a linear A -> A, as in the authors'
RUBiNet (rubi.bootstrap.pytorch). Both losses are the run's train.loss: cross-entropy in the paper
(hard_ce; soft_ce on the soft targets), bce as the UpDn port of the GGE code trains it."""

from __future__ import annotations

import torch
from torch import nn

from vqa.debias.base import Method, Settings, base_loss, question_mlp


class RUBiBranch(nn.Module):
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
        self.loss_name, self.weight, self.num_answers = loss, settings.question_weight, num_answers
        self.c_1 = question_mlp(question_dim, hidden_dim, num_answers)
        self.c_2 = nn.Linear(num_answers, num_answers)

    def forward(self, joint: torch.Tensor, question_vec: torch.Tensor) -> torch.Tensor:
        q_pred = self.c_1(question_vec.detach())  # [B, A]: no gradient into the encoder
        return torch.cat([q_pred, self.c_2(q_pred)], 1)  # [B, 2A]: the mask's logits, q_out

    def loss(self, logits: torch.Tensor, extra: torch.Tensor, batch) -> torch.Tensor:
        q_pred, q_out = extra[:, : self.num_answers], extra[:, self.num_answers :]
        fused = logits * torch.sigmoid(q_pred)  # [B, A]
        return base_loss(self.loss_name, fused, batch) + self.weight * base_loss(self.loss_name, q_out, batch)


RUBI = Method("rubi", ("hard_ce", "soft_ce", "bce"), RUBiBranch, "Cadene et al. 2019")

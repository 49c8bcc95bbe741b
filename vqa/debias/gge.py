"""GGE-DQ (Han et al. 2021, "Greedy Gradient Ensemble for Robust Visual Question Answering"): the
biased models are fitted first, greedily, and the base model learns what they leave, its target
being the negative gradient of the biased ensemble's loss.

With the sigmoid loss the negative gradient of BCE(z, y) at a biased prediction z is, per answer,
y_hat(z) = 2 y sigmoid(-2 y z) (the authors' form; zero where y is zero, so it stays sparse):

    distribution bias b (the question type's prior, prior.py) -> y_1 = y_hat(b)
    question-only branch q_out = c_2(c_1(question_vec)), the vector detached, fitted to y_1
    the base model x fitted to y_2 = y_hat(sigmoid(q_out) + b), held fixed (detached)

    L = BCE(x, y_2) + train.debias_question_weight * BCE(q_out, y_1)

as the authors' `gge_tog` mode (base_model.py; they leave y_2 attached, the paper treats it as a
label). Defined for the sigmoid loss only (bce)."""

from __future__ import annotations

import torch
from torch import nn

from vqa.debias.base import Method, Settings, question_mlp
from vqa.losses import bce


def pseudo_scores(score: torch.Tensor, biased: torch.Tensor) -> torch.Tensor:
    """[B, K]: the negative BCE gradient 2 y sigmoid(-2 y z) at the K gathered answers."""
    return 2 * score * torch.sigmoid(-2 * score * biased)


class GGEBranch(nn.Module):
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
        self.weight = settings.question_weight
        self.register_buffer("prior", prior, persistent=False)  # [T + 1, A], rebuilt from the data
        self.c_1 = question_mlp(question_dim, hidden_dim, num_answers)
        self.c_2 = nn.Linear(num_answers, num_answers)

    def forward(self, joint: torch.Tensor, question_vec: torch.Tensor) -> torch.Tensor:
        return self.c_2(self.c_1(question_vec.detach()))  # [B, A]: q_out

    def loss(self, logits: torch.Tensor, extra: torch.Tensor, batch) -> torch.Tensor:
        rows = torch.where(batch.question_type < 0, self.prior.shape[0] - 1, batch.question_type)  # [B]
        b = self.prior[rows[:, None], batch.answer_idx]  # [B, K]: the prior at the gathered answers
        y_1 = pseudo_scores(batch.answer_score, b)  # [B, K]
        q_out = extra.gather(1, batch.answer_idx)  # [B, K]
        y_2 = pseudo_scores(batch.answer_score, torch.sigmoid(q_out.detach()) + b)  # [B, K]
        question_loss = bce(extra, batch._replace(answer_score=y_1))
        return bce(logits, batch._replace(answer_score=y_2)) + self.weight * question_loss


GGE = Method("gge", ("bce",), GGEBranch, "Han et al. 2021")

"""What a debiasing method is, and the wrapper that adds its branch to any model.

A method (one file in vqa/debias/) is a `Method`: its name, the train.loss values its paper defines
it for, and a Branch module. The `Debiased` wrapper runs the base model's parts
(`fuse -> (joint [B, H], question_vec [B, Hq])`, `classifier(joint) -> logits [B, A]`) and, in
training mode only, the branch on (joint, question_vec): its forward returns one tensor, the base
logits first and the branch's columns after them ([B, A + E]), so the training loop, the compiled
graph and DDP see a model like any other. The branch's `loss(outputs, batch)` is the training loss;
it reads the per-question-type prior (a buffer, `prior.py`) through `batch.question_type`. In
evaluation mode (validation, test, `vqa predict`) the wrapper returns the base logits alone.

A Branch is built as Branch(joint_dim, question_dim, num_answers, hidden_dim, prior, loss, settings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vqa.losses import LOSSES

BASE_PREFIX = "model."  # the base model's keys in a Debiased state dict ("branch." for the branch)


@dataclass(frozen=True)
class Settings:
    """The methods' hyper-parameters (train.debias_*), each used by the methods that name it."""

    entropy: float = 0.36  # lmh: entropy penalty weight (Clark et al. 2019); 0 = learned-mixin
    gamma: float = 5.0  # lpf: (1 - p_q(y))^gamma (Liang et al. 2021)
    question_weight: float = 1.0  # rubi, lpf, gge: weight of the question-only loss


@dataclass(frozen=True)
class Method:
    name: str
    losses: tuple[str, ...]  # the train.loss values the method is defined for
    branch: type[nn.Module]
    paper: str  # the reference, for messages and docs


class Debiased(nn.Module):
    """A base model and a method's branch; evaluation and prediction use the base logits alone."""

    def __init__(self, model: nn.Module, branch: nn.Module, num_answers: int):
        super().__init__()
        self.model, self.branch, self.num_answers = model, branch, num_answers

    def forward(self, question, question_len, image, image_mask) -> torch.Tensor:
        joint, question_vec = self.model.fuse(question, question_len, image, image_mask)  # [B, H], [B, Hq]
        logits = self.model.classifier(joint)  # [B, A]
        if not self.training:
            return logits
        extra = self.branch(joint, question_vec)  # [B, E]
        return torch.cat([logits, extra.to(logits.dtype)], 1)  # [B, A + E]

    def loss(self, outputs: torch.Tensor, batch) -> torch.Tensor:
        """The method's training loss from the training forward's [B, A + E] outputs."""
        return self.branch.loss(outputs[:, : self.num_answers], outputs[:, self.num_answers :], batch)


def question_mlp(question_dim: int, hidden_dim: int, num_answers: int, layers: int = 2) -> nn.Sequential:
    """The question-only classifier: `layers` hidden ReLU layers of `hidden_dim`, then the answers
    (RUBi's and GGE's c_1: question vector -> 1024 -> 1024 -> A)."""
    sizes = [question_dim, *[hidden_dim] * layers]
    parts: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        parts += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*parts, nn.Linear(sizes[-1], num_answers))


def batch_prior(prior: torch.Tensor, question_type: torch.Tensor) -> torch.Tensor:
    """[B, A] rows of the prior [T + 1, A] for the batch's question types (-1: the last row)."""
    return prior[torch.where(question_type < 0, prior.shape[0] - 1, question_type)]


def base_loss(name: str, logits: torch.Tensor, batch) -> torch.Tensor:
    """The run's loss (train.loss) of `logits` [B, A], averaged over the questions that carry a target."""
    return LOSSES[name](logits, batch)


def per_question_loss(name: str, logits: torch.Tensor, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss [B], has a target [B] as 0 / 1) of the run's loss per question, without a host sync
    (hard_ce's questions whose most common answer is outside the vocabulary give 0 and weight 0)."""
    if name == "hard_ce":
        loss = F.cross_entropy(logits.float(), batch.answer, ignore_index=-1, reduction="none")  # [B]
        return loss, (batch.answer >= 0).float()
    loss = LOSSES[name](logits, batch, reduction="none")  # [B]
    return loss, torch.ones_like(loss)


def target_probability(name: str, probs: torch.Tensor, batch) -> torch.Tensor:
    """[B]: the probability `probs` [B, A] gives the question's target: the most common answer's
    for hard_ce (0 without one), else the soft weights' sum of w_k p(a_k)."""
    if name == "hard_ce":
        picked = probs.gather(1, batch.answer.clamp(min=0)[:, None]).squeeze(1)  # [B]
        return picked * (batch.answer >= 0)
    return (batch.answer_weight * probs.gather(1, batch.answer_idx)).sum(1)


def binary_log_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log sigmoid(x), log(1 - sigmoid(x))) per answer: the sigmoid (bce) form of the ensembles."""
    log_p = -F.softplus(-logits)
    return log_p, log_p - logits


def binary_ce(log_p: torch.Tensor, log_not_p: torch.Tensor, batch) -> torch.Tensor:
    """sum_a -(t_a log p_a + (1 - t_a) log(1 - p_a)) averaged over the batch, t the official scores
    (zero outside the K gathered answers: the target term is a sparse gather)."""
    t = batch.answer_score  # [B, K]
    picked = (log_p - log_not_p).gather(1, batch.answer_idx)  # [B, K]
    return (-log_not_p.sum(1) - (t * picked).sum(1)).mean()

"""The product of experts of Clark et al. 2019 (bias product, learned-mixin, LMH), in both forms.

The base model's prediction is combined with the question type's prior b (prior.py), scaled by a
gate g(x) >= 0 (1 for the bias product, softplus(w^T joint) for the learned-mixin):

    softmax form (hard_ce, soft_ce; the paper's eq. 1-3):
        log p_hat = log softmax(x) + g(x) log b_tilde,   renormalized by the run's loss
        b_tilde = (1 - s) b / sum(b) + s / A   (the prior as a distribution, smoothed toward uniform)
    sigmoid form (bce; the authors' VQA code, vqa_debias_loss_functions.py): per answer, the two
    outcomes {yes, no} with log probabilities (log sigmoid(x), log(1 - sigmoid(x))) plus
    g(x) (log(b + s), log(1 - b + s)), renormalized per answer, then binary cross-entropy on the scores.

s = sigmoid(a) is the authors' learned smoothing (a starts at -1). The entropy of the gated prior
(softmax(g log b_tilde), or per answer the renormalized pair) is what LMH penalizes: the mean over
questions (softmax form) or over questions and answers (sigmoid form, as the authors' code).
"""

from __future__ import annotations

import torch

from vqa.debias.base import base_loss, binary_ce, binary_log_probs


def _renormalize(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) - log(exp(a) + exp(b)): two log weights per answer made log probabilities."""
    norm = torch.logaddexp(a, b)
    return a - norm, b - norm


def _softmax_form(name, logits, prior, gate, smooth, batch) -> tuple[torch.Tensor, torch.Tensor]:
    dist = prior / prior.sum(1, keepdim=True).clamp(min=1e-12)  # [B, A]
    log_b = torch.log((1 - smooth) * dist + smooth / prior.shape[1])  # [B, A]
    scaled = gate * log_b  # [B, A]
    loss = base_loss(name, torch.log_softmax(logits, 1) + scaled, batch)
    log_q = torch.log_softmax(scaled, 1)
    return loss, -(log_q.exp() * log_q).sum(1).mean()


def _sigmoid_form(logits, prior, gate, smooth, batch) -> tuple[torch.Tensor, torch.Tensor]:
    bias_yes, bias_no = gate * torch.log(prior + smooth), gate * torch.log1p(-prior + smooth)  # [B, A]
    log_p, log_not_p = binary_log_probs(logits)
    loss = binary_ce(*_renormalize(log_p + bias_yes, log_not_p + bias_no), batch)
    yes, no = _renormalize(bias_yes, bias_no)
    entropy = -(yes.exp() * yes + no.exp() * no).mean()
    return loss, entropy


def ensemble_loss(
    name: str, logits: torch.Tensor, prior: torch.Tensor, gate: torch.Tensor, smooth: torch.Tensor, batch
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss of the ensemble under train.loss `name`, entropy of the gated prior).

    logits [B, A] the base model's; prior [B, A] the batch's rows of b; gate [B, 1]; smooth [B, 1]."""
    if name == "bce":
        return _sigmoid_form(logits, prior, gate, smooth, batch)
    return _softmax_form(name, logits, prior, gate, smooth, batch)

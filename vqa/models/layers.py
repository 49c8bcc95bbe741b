"""Parts shared by the models: question encoder, MLP, masked attention helpers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


class QuestionEncoder(nn.Module):
    """Word embedding + single-layer LSTM/GRU; returns the last valid hidden state.

    Padding is token 0. Sequences are packed so the state is taken at each
    question's own last word, not at the padded end (pytorch-vqa does the same).
    """

    def __init__(
        self, num_tokens: int, embed_dim: int, hidden_dim: int, rnn: str = "lstm", dropout: float = 0.0
    ):
        super().__init__()
        self.embedding = nn.Embedding(num_tokens, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.tanh = nn.Tanh()
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn]
        self.rnn = rnn_cls(embed_dim, hidden_dim, batch_first=True)
        self.out_dim = hidden_dim

    def forward(self, question: torch.Tensor, question_len: torch.Tensor) -> torch.Tensor:
        x = self.tanh(self.dropout(self.embedding(question)))  # [B, T, E]
        lengths = question_len.clamp(min=1).cpu()  # an empty question still reads one pad token
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # LSTM gives (h, c)
        return h[-1]  # [B, H]


class MLP(nn.Module):
    """Linear -> ReLU -> Dropout -> Linear: the usual VQA classifier head."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def l2_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    return x / (x.norm(p=2, dim=dim, keepdim=True) + eps)


def masked_mean(image: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid regions: image [B, N, D], image_mask [B, N] -> [B, D]."""
    m = image_mask.unsqueeze(-1).to(image.dtype)  # [B, N, 1]
    return (image * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Softmax over `dim` where masked-out positions get exactly zero weight.

    logits [B, N, G], mask [B, N]. Computed in fp32 for stability under autocast.
    """
    mask = mask.unsqueeze(-1) if mask.dim() < logits.dim() else mask
    logits = logits.float().masked_fill(~mask, float("-inf"))
    weights = F.softmax(logits, dim=dim)
    return torch.nan_to_num(weights, nan=0.0)  # a row with no valid region gives zeros, not NaN


def attend(image: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Glimpses: image [B, N, D], weights [B, N, G] -> [B, G, D]."""
    return torch.einsum("bng,bnd->bgd", weights.to(image.dtype), image)

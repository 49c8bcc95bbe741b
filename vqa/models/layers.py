"""Parts shared by the models: question encoder, MLP, masked attention helpers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class QuestionEncoder(nn.Module):
    """Word embedding + single-layer LSTM/GRU; returns the hidden state at each question's last word.

    The RNN runs over the whole padded question [B, T] and the output at question_len - 1 is gathered:
    for a unidirectional RNN that equals a packed run's final state (tests/test_models.py) without
    packing's costs (lengths on the CPU, a host sync per step; data-dependent batch sizes that break a
    torch.compile graph). `question_len` may live on any device.

    The RNN runs in fp32, outside autocast: CUDA autocast casts cuDNN RNNs to float16 whatever the
    autocast dtype (aten/src/ATen/cudnn/AutocastRNN.cpp), so a bf16 run would train it in fp16 without
    a gradient scaler, and CPU autocast runs LSTM (not GRU) in bf16. The layers after it autocast.
    """

    def __init__(
        self,
        num_tokens: int,
        embed_dim: int,
        hidden_dim: int,
        rnn: str = "lstm",
        dropout: float = 0.0,
        tanh: bool = True,
    ):
        super().__init__()
        self.embedding = nn.Embedding(num_tokens, embed_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.tanh = nn.Tanh() if tanh else nn.Identity()  # MCAN and BAN feed the embedding as it is
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn]
        self.rnn = rnn_cls(embed_dim, hidden_dim, batch_first=True)
        self.out_dim = hidden_dim

    def states(self, question: Tensor) -> Tensor:
        """The RNN output at every position [B, T, H], fp32 (MCAN and BAN attend over the words)."""
        x = self.tanh(self.dropout(self.embedding(question)))  # [B, T, E]
        with torch.autocast(x.device.type, enabled=False):  # fp32 RNN: see the class docstring
            out, _ = self.rnn(x.float())  # [B, T, H], fp32
        return out

    def forward(self, question: Tensor, question_len: Tensor) -> Tensor:
        return last_state(self.states(question), question_len)  # [B, H]


def last_state(states: Tensor, question_len: Tensor) -> Tensor:
    """states [B, T, H] at position question_len - 1 -> [B, H] (an empty question reads one pad token);
    question_len on any device, no host sync."""
    lengths = question_len.to(states.device, non_blocking=True)  # [B]
    last = (lengths.clamp(min=1) - 1).view(-1, 1, 1)  # [B, 1, 1]
    return states.gather(1, last.expand(-1, 1, states.shape[-1])).squeeze(1)  # [B, H]


def token_mask(question_len: Tensor, length: int, device: torch.device) -> Tensor:
    """bool [B, length]: true at the words of each question (at least one, as last_state reads); no host sync."""
    lengths = question_len.to(device, non_blocking=True).clamp(min=1)  # [B]
    return torch.arange(length, device=device)[None, :] < lengths[:, None]


def compile_model(model: nn.Module, **kwargs) -> nn.Module:
    """torch.compile(model, **kwargs) with the question RNN traced into the model's graph.

    Dynamo breaks the graph at every nn.LSTM / nn.GRU unless the process-wide
    torch._dynamo.config.allow_rnn is set before the first call; the RNN then becomes T steps of
    matmuls (T = data.max_question_len). A changing batch size or box count recompiles once, with
    that dimension symbolic (dynamic=None).
    """
    torch._dynamo.config.allow_rnn = True
    return torch.compile(model, **kwargs)


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

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def l2_normalize(x: Tensor, dim: int = -1, eps: float = 1e-8) -> Tensor:
    return x / (x.norm(p=2, dim=dim, keepdim=True) + eps)


def masked_mean(image: Tensor, image_mask: Tensor) -> Tensor:
    """Mean over the valid regions: image [B, N, D], image_mask [B, N] -> [B, D]."""
    m = image_mask.unsqueeze(-1).to(image.dtype)  # [B, N, 1]
    return (image * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_softmax(logits: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Softmax over `dim` where masked-out positions get exactly zero weight: logits [B, N, G], mask
    [B, N]; fp32 for stability under autocast."""
    mask = mask.unsqueeze(-1) if mask.dim() < logits.dim() else mask
    logits = logits.float().masked_fill(~mask, float("-inf"))
    weights = F.softmax(logits, dim=dim)
    return torch.nan_to_num(weights, nan=0.0)  # a row with no valid region gives zeros, not NaN


def attend(image: Tensor, weights: Tensor) -> Tensor:
    """Glimpses: image [B, N, D], weights [B, N, G] -> [B, G, D]."""
    return torch.einsum("bng,bnd->bgd", weights.to(image.dtype), image)


class AttendingModel(nn.Module):
    """A model with attention: its `fuse_attend(question, question_len, image, image_mask)` gives (joint
    [B, H], question vector [B, Hq], attention [B, N, G]); `fuse` and `forward` follow from it, once for
    every attention model (pool, mcb, updn, mcan, ban)."""

    def fuse(
        self, question: Tensor, question_len: Tensor, image: Tensor, image_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(joint [B, H], question vector [B, Hq]): what `classifier` reads, and the question's encoding."""
        return self.fuse_attend(question, question_len, image, image_mask)[:2]

    def forward(
        self,
        question: Tensor,
        question_len: Tensor,
        image: Tensor,
        image_mask: Tensor,
        return_attention: bool = False,
    ):
        """logits [B, A] (and the attention [B, N, G] with `return_attention`)."""
        joint, _, att = self.fuse_attend(question, question_len, image, image_mask)
        logits = self.classifier(joint)  # [B, A]
        return (logits, att) if return_attention else logits

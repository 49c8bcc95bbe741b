"""UpDn: top-down attention over bottom-up region features (Anderson et al. 2018, arXiv 1707.07998),
section 3.3, as the bottom-up-attention-vqa baseline trains it:

- question: GRU (or LSTM) last state q;
- attention: a_i = w_a^T f_a([v_i; q]) over the N boxes, softmax over the valid ones, G glimpses (1);
- fusion: h = f_q(q) ∘ f_v(v_hat); classifier: W_o f_o(h) (logits);

every f a gated tanh layer, f(x) = tanh(W x + b) ∘ sigmoid(W' x + b') (eq. 13-15). A grid works too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vqa.models.layers import AttendingModel, QuestionEncoder, attend, l2_normalize, masked_softmax


class GatedTanh(nn.Module):
    """y = tanh(W x + b) ∘ sigmoid(W' x + b') (Anderson et al. 2018, eq. 13-14); dropout on the input."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, 2 * out_dim)  # the tanh and gate halves in one matmul

    def forward(self, x: Tensor) -> Tensor:
        return gated_tanh(self.linear(self.dropout(x)))


def gated_tanh(pre: Tensor) -> Tensor:
    """tanh(first half) * sigmoid(second half) of the last dim."""
    y, gate = pre.chunk(2, dim=-1)
    return torch.tanh(y) * torch.sigmoid(gate)


class UpDnModel(AttendingModel):
    def __init__(
        self,
        num_tokens: int,
        num_answers: int,
        image_dim: int,
        *,  # sizes by name, all explicit: the builder passes ModelConfig's values
        embed_dim: int,
        rnn_dim: int,
        hidden_dim: int,
        attention_dim: int,
        glimpses: int,
        dropout: float,
        rnn: str,
        normalize_image: bool,
    ):
        super().__init__()
        self.question = QuestionEncoder(num_tokens, embed_dim, rnn_dim, rnn=rnn, dropout=dropout)
        self.normalize_image = normalize_image
        # f_a([v_i; q]) with its weight split as W_v v_i + W_q q: q is projected once, not per box
        self.att_dropout = nn.Dropout(dropout)
        self.att_v = nn.Linear(image_dim, 2 * attention_dim)
        self.att_q = nn.Linear(rnn_dim, 2 * attention_dim, bias=False)
        self.att_out = nn.Linear(attention_dim, glimpses)
        self.q_net = GatedTanh(rnn_dim, hidden_dim, dropout)
        self.v_net = GatedTanh(glimpses * image_dim, hidden_dim, dropout)
        # W_o f_o(h): the joint h goes through the gated layer and the output layer
        self.classifier = nn.Sequential(
            GatedTanh(hidden_dim, hidden_dim, dropout),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_answers),
        )
        self.joint_dim, self.question_dim, self.num_answers = hidden_dim, rnn_dim, num_answers

    def fuse_attend(
        self, question: Tensor, question_len: Tensor, image: Tensor, image_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(joint h [B, hidden_dim], question vector [B, rnn_dim], attention [B, N, G] fp32)."""
        q = self.question(question, question_len)  # [B, H]
        v = l2_normalize(image) if self.normalize_image else image  # [B, N, D]
        pre = self.att_v(self.att_dropout(v)) + self.att_q(self.att_dropout(q)).unsqueeze(1)  # [B, N, 2*att]
        att = masked_softmax(self.att_out(gated_tanh(pre)), image_mask)  # [B, N, G], fp32
        v_att = attend(v, att).flatten(1)  # [B, G*D]
        return self.q_net(q) * self.v_net(v_att), q, att  # [B, hidden], [B, H], [B, N, G]

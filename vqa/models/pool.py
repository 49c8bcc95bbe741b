"""POOL: the paper's attention model, after MLB (Kim et al. 2016, arXiv 1610.04325).

Low-rank bilinear pooling replaces x^T W y by P^T (tanh(U^T x) ∘ tanh(V^T y)) (eq. 3-4), twice (section
4, eq. 12-14): attention alpha = softmax(P^T (tanh(U^T q 1^T) ∘ tanh(V^T F))) over the grid cells, one
map per glimpse (G = 2); fusion of the G attended vectors, concatenated, with the question in
tanh(V'^T [f_1 .. f_G]) ∘ tanh(U'^T q), then a linear layer. The soft cross-entropy paper applies it
to the 14x14 ResNet-152 grid (Ilievski & Feng 2017, section 4); padded boxes get zero attention.
"""

from __future__ import annotations

from torch import Tensor, nn

from vqa.models.layers import AttendingModel, QuestionEncoder, attend, l2_normalize, masked_softmax


class PoolModel(AttendingModel):
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
        # attention: Hadamard product of tanh projections, per cell
        self.att_q = nn.Sequential(nn.Dropout(dropout), nn.Linear(rnn_dim, attention_dim), nn.Tanh())
        self.att_v = nn.Sequential(nn.Dropout(dropout), nn.Linear(image_dim, attention_dim), nn.Tanh())
        self.att_out = nn.Sequential(nn.Dropout(dropout), nn.Linear(attention_dim, glimpses))
        # fusion of the attended image with the question
        self.fuse_q = nn.Sequential(nn.Dropout(dropout), nn.Linear(rnn_dim, hidden_dim), nn.Tanh())
        self.fuse_v = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(glimpses * image_dim, hidden_dim), nn.Tanh()
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_dim, num_answers))
        self.joint_dim, self.question_dim, self.num_answers = hidden_dim, rnn_dim, num_answers

    def fuse_attend(
        self, question: Tensor, question_len: Tensor, image: Tensor, image_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(joint [B, hidden_dim], question vector [B, rnn_dim], attention [B, N, G] fp32)."""
        q = self.question(question, question_len)  # [B, H]
        v = l2_normalize(image) if self.normalize_image else image  # [B, N, D]
        joint = self.att_q(q).unsqueeze(1) * self.att_v(v)  # [B, N, attention_dim]
        att = masked_softmax(self.att_out(joint), image_mask)  # [B, N, G], fp32
        v_att = attend(v, att).flatten(1)  # [B, G*D]
        return self.fuse_q(q) * self.fuse_v(v_att), q, att  # [B, hidden], [B, H], [B, N, G]

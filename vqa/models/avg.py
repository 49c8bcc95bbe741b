"""AVG: the paper's "deeper LSTM Q + normalized CNN" baseline, no attention: the question's LSTM state
and the L2-normalized mean of the region / grid vectors (for a grid, ResNet's global average pool),
each projected with tanh, fused by element-wise product and classified by an MLP (Antol et al. 2015;
Ilievski & Feng 2017, section 4).
"""

from __future__ import annotations

from torch import Tensor, nn

from vqa.models.layers import MLP, QuestionEncoder, l2_normalize, masked_mean


class AvgModel(nn.Module):
    def __init__(
        self,
        num_tokens: int,
        num_answers: int,
        image_dim: int,
        *,  # sizes by name, all explicit: the builder passes ModelConfig's values
        embed_dim: int,
        rnn_dim: int,
        hidden_dim: int,
        dropout: float,
        rnn: str,
        normalize_image: bool,
    ):
        super().__init__()
        self.question = QuestionEncoder(num_tokens, embed_dim, rnn_dim, rnn=rnn, dropout=dropout)
        self.normalize_image = normalize_image
        self.q_proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(rnn_dim, hidden_dim), nn.Tanh())
        self.v_proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(image_dim, hidden_dim), nn.Tanh())
        self.classifier = MLP(hidden_dim, hidden_dim, num_answers, dropout=dropout)
        self.joint_dim, self.question_dim, self.num_answers = hidden_dim, rnn_dim, num_answers

    def fuse(
        self, question: Tensor, question_len: Tensor, image: Tensor, image_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(joint [B, hidden_dim], question vector [B, rnn_dim]): what `classifier` reads and the LSTM state."""
        q = self.question(question, question_len)  # [B, H]
        v = masked_mean(image, image_mask)  # [B, D]
        if self.normalize_image:
            v = l2_normalize(v)
        return self.q_proj(q) * self.v_proj(v), q  # [B, hidden], [B, H]

    def forward(self, question: Tensor, question_len: Tensor, image: Tensor, image_mask: Tensor) -> Tensor:
        return self.classifier(self.fuse(question, question_len, image, image_mask)[0])  # [B, A]

"""BAN: bilinear attention networks (Kim et al. 2018, arXiv 1805.07932), BAN-G with G glimpses, as
jnhwkim/ban-vqa builds it (base_model.py, bc.py, attention.py):

- question: word embedding -> GRU of hidden_dim, the state at every word Q [B, T, H];
- attention: G bilinear attention maps over all (box, word) pairs (rank 3 * hidden_dim, softmax over
  the valid pairs of each map), computed once from the first Q;
- residual learning of attention (eq. 14): per glimpse, f_g = BAN_g(V, Q; A_g) [B, H] is projected and
  added to every word, Q <- P_g f_g 1^T + Q;
- joint = the sum of Q over the valid words; classifier: weight-normalized Linear(H, 2H) -> ReLU ->
  Dropout -> Linear(2H, A).

BAN-8 on VQA v2 is hidden 1280, 8 glimpses. The counting module (Zhang et al. 2018) is left out: the
features carry no box coordinates. `dropout` (0.5) on the attention's boxes and in the classifier,
`fc_dropout` (0.2) on the inputs of the other fully connected layers. Padding is masked everywhere.
"""

from __future__ import annotations

from torch import Tensor, nn

from vqa.models.attention_blocks import BilinearAttentionMap, BilinearPooling, fc, normalized_linear
from vqa.models.layers import AttendingModel, QuestionEncoder, l2_normalize, last_state, token_mask

ATTENTION_RANK = 3  # k of the authors' BCNet for the attention map: rank k * hidden_dim


class BANModel(AttendingModel):
    def __init__(
        self,
        num_tokens: int,
        num_answers: int,
        image_dim: int,
        *,  # sizes by name, all explicit: the builder passes ModelConfig's values
        embed_dim: int,
        hidden_dim: int,
        glimpses: int,
        dropout: float,
        rnn: str,
        normalize_image: bool,
        fc_dropout: float,
    ):
        super().__init__()
        self.question = QuestionEncoder(num_tokens, embed_dim, hidden_dim, rnn=rnn, tanh=False)
        self.normalize_image = normalize_image
        self.attention = BilinearAttentionMap(
            image_dim, hidden_dim, hidden_dim, glimpses, ATTENTION_RANK, fc_dropout, dropout
        )
        self.pool = nn.ModuleList(
            BilinearPooling(image_dim, hidden_dim, hidden_dim, fc_dropout) for _ in range(glimpses)
        )
        self.project = nn.ModuleList(
            fc(hidden_dim, hidden_dim, fc_dropout, relu=False) for _ in range(glimpses)
        )
        self.classifier = nn.Sequential(
            normalized_linear(hidden_dim, 2 * hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            normalized_linear(2 * hidden_dim, num_answers),
        )
        self.joint_dim, self.question_dim, self.num_answers = hidden_dim, hidden_dim, num_answers

    def fuse_attend(
        self, question: Tensor, question_len: Tensor, image: Tensor, image_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(joint [B, H], question vector [B, H], attention [B, N, G] fp32: each map summed over the words)."""
        q = self.question.states(question)  # [B, T, H]
        q_mask = token_mask(question_len, question.shape[1], question.device)  # [B, T]
        v = l2_normalize(image) if self.normalize_image else image  # [B, N, D]
        att = self.attention(v, q, image_mask, q_mask)  # [B, G, N, T], fp32
        q_vec = last_state(q, question_len)  # [B, H]: the GRU's vector, before any image
        for g, (pool, project) in enumerate(zip(self.pool, self.project)):
            q = project(pool(v, q, att[:, g]).unsqueeze(1)) + q  # [B, T, H]
        joint = (q * q_mask.unsqueeze(-1).to(q.dtype)).sum(1)  # [B, H]
        return joint, q_vec, att.sum(-1).transpose(1, 2)

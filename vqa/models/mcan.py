"""MCAN: deep modular co-attention networks (Yu et al. 2019, arXiv 1906.10770), encoder-decoder form,
as MILVLG/mcan-vqa builds it (net.py, mca.py):

- question: word embedding -> LSTM of hidden_dim, the state at every word [B, T, H];
- image: the box (or grid cell) features, projected to hidden_dim [B, N, H];
- encoder: `layers` SA layers over the words; decoder: `layers` SGA layers over the boxes, each guided
  by the encoder's last output (`heads` heads, feed-forward of ff_dim, post-norm residuals, dropout);
- AttFlat pools each side into one vector of 2 * hidden_dim (an MLP of attention_dim, `glimpses` maps);
  joint = LayerNorm(question vector + image vector); a linear layer gives the logits.

MCAN-small is hidden 512, 8 heads, feed-forward 2048, 6 layers; MCAN-large 1024, 16, 4096, 6. Padded
words and boxes are masked in every attention.
"""

from __future__ import annotations

from torch import Tensor, nn

from vqa.models.attention_blocks import AttentionFlatten, GuidedAttentionLayer, SelfAttentionLayer
from vqa.models.layers import AttendingModel, QuestionEncoder, l2_normalize, token_mask


class MCANModel(AttendingModel):
    def __init__(
        self,
        num_tokens: int,
        num_answers: int,
        image_dim: int,
        *,  # sizes by name, all explicit: the builder passes ModelConfig's values
        embed_dim: int,
        hidden_dim: int,
        heads: int,
        ff_dim: int,
        layers: int,
        attention_dim: int,
        glimpses: int,
        dropout: float,
        rnn: str,
        normalize_image: bool,
    ):
        super().__init__()
        if hidden_dim % heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not a multiple of heads {heads}")
        self.question = QuestionEncoder(num_tokens, embed_dim, hidden_dim, rnn=rnn, tanh=False)
        self.normalize_image = normalize_image
        self.image_proj = nn.Linear(image_dim, hidden_dim)
        self.encoder = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, heads, ff_dim, dropout) for _ in range(layers)
        )
        self.decoder = nn.ModuleList(
            GuidedAttentionLayer(hidden_dim, heads, ff_dim, dropout) for _ in range(layers)
        )
        flat_dim = 2 * hidden_dim
        self.flat_q = AttentionFlatten(hidden_dim, attention_dim, glimpses, flat_dim, dropout)
        self.flat_v = AttentionFlatten(hidden_dim, attention_dim, glimpses, flat_dim, dropout)
        self.norm = nn.LayerNorm(flat_dim)
        self.classifier = nn.Linear(flat_dim, num_answers)
        self.joint_dim, self.question_dim, self.num_answers = flat_dim, flat_dim, num_answers

    def fuse_attend(
        self, question: Tensor, question_len: Tensor, image: Tensor, image_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(joint [B, 2H], question vector [B, 2H], image attention [B, N, G] fp32)."""
        x = self.question.states(question)  # [B, T, H]
        x_mask = token_mask(question_len, question.shape[1], question.device)  # [B, T]
        y = self.image_proj(l2_normalize(image) if self.normalize_image else image)  # [B, N, H]
        for layer in self.encoder:
            x = layer(x, x_mask)
        for layer in self.decoder:
            y = layer(y, x, image_mask, x_mask)
        q_vec, _ = self.flat_q(x, x_mask)  # [B, 2H]
        v_vec, att = self.flat_v(y, image_mask)  # [B, 2H], [B, N, G]
        return self.norm(q_vec + v_vec), q_vec, att

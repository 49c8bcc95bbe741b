"""The attention parts of MCAN and BAN. Every part takes a bool mask of its keys ([B, N], true = real
word or box): a masked key gets exactly zero weight, so padding never reaches a valid position.

MCAN (Yu et al. 2019; MILVLG/mcan-vqa): scaled dot-product attention with `heads` heads, post-norm
residual layers SA (self-attention) and SGA (self-attention, then attention guided by the question),
a position-wise feed-forward net, and AttFlat, the attention pooling of a sequence into one vector.

BAN (Kim et al. 2018; jnhwkim/ban-vqa): the low-rank bilinear attention map
A_g = softmax(((1 · p_g^T) ∘ ReLU(V U)) ReLU(Q W)^T) over all box-word pairs (eq. 9) and the bilinear
pooling f_k = ReLU(V U')^T A ReLU(Q W') of one glimpse (eq. 5), weight-normalized as the authors' code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from vqa.models.layers import attend, masked_softmax


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention of `heads` heads; dropout on the attention weights while training."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.merge = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, query: Tensor, context: Tensor, context_mask: Tensor) -> Tensor:
        """query [B, Nq, D] attends to context [B, Nk, D] where context_mask [B, Nk] -> [B, Nq, D]."""
        b, nq, d = query.shape

        def split(x: Tensor) -> Tensor:  # [B, N, D] -> [B, h, N, D / h]
            return x.view(b, -1, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split(self.q(query)),
            split(self.k(context)),
            split(self.v(context)),
            attn_mask=context_mask[:, None, None, :],  # [B, 1, 1, Nk]
            dropout_p=self.dropout if self.training else 0.0,
        )  # [B, h, Nq, D / h]
        return self.merge(out.transpose(1, 2).reshape(b, nq, d))


class FeedForward(nn.Sequential):
    """Linear -> ReLU -> Dropout -> Linear, position-wise."""

    def __init__(self, dim: int, ff_dim: int, dropout: float):
        super().__init__(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))


class SelfAttentionLayer(nn.Module):
    """MCAN's SA: x = LN(x + MHA(x, x)); x = LN(x + FFN(x))."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.attention = MultiHeadAttention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, mask)))  # [B, N, D]
        return self.norm2(x + self.dropout(self.ff(x)))


class GuidedAttentionLayer(nn.Module):
    """MCAN's SGA: y = LN(y + MHA(y, y)); y = LN(y + MHA(y, x)) (x guides y); y = LN(y + FFN(y))."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.self_attention = MultiHeadAttention(dim, heads, dropout)
        self.guided_attention = MultiHeadAttention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, y: Tensor, x: Tensor, y_mask: Tensor, x_mask: Tensor) -> Tensor:
        """y [B, N, D] (the boxes) with mask [B, N], guided by x [B, T, D] with mask [B, T]."""
        y = self.norm1(y + self.dropout(self.self_attention(y, y, y_mask)))
        y = self.norm2(y + self.dropout(self.guided_attention(y, x, x_mask)))
        return self.norm3(y + self.dropout(self.ff(y)))


class AttentionFlatten(nn.Module):
    """MCAN's AttFlat: G attention maps over the positions (an MLP per position), the G attended
    vectors concatenated and projected to out_dim."""

    def __init__(self, dim: int, mlp_dim: int, glimpses: int, out_dim: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(mlp_dim, glimpses)
        )
        self.merge = nn.Linear(glimpses * dim, out_dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, N, D], mask [B, N] -> (vector [B, out_dim], attention [B, N, G] fp32)."""
        att = masked_softmax(self.mlp(x), mask)  # [B, N, G]
        return self.merge(attend(x, att).flatten(1)), att


def normalized_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """A Linear whose weight is g * W / ||W|| with one scalar gain g (weight_norm with dim=None)."""
    return weight_norm(nn.Linear(in_dim, out_dim), dim=None)


def fc(in_dim: int, out_dim: int, dropout: float, relu: bool = True) -> nn.Sequential:
    """BAN's FCNet layer: Dropout -> weight-normalized Linear -> ReLU."""
    layers = [nn.Dropout(dropout), normalized_linear(in_dim, out_dim)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class BilinearAttentionMap(nn.Module):
    """BAN's attention: G maps over all (box, word) pairs, each a softmax over the valid pairs, of rank
    k * dim (the authors' k = 3), one row p_g of the glimpse matrix per map; `att_dropout` on the projected
    boxes. The authors' per-map bias is left out: a constant cancels in the map's softmax."""

    def __init__(
        self, v_dim: int, q_dim: int, dim: int, glimpses: int, k: int, dropout: float, att_dropout: float
    ):
        super().__init__()
        self.v_net = fc(v_dim, dim * k, dropout)
        self.q_net = fc(q_dim, dim * k, dropout)
        self.dropout = nn.Dropout(att_dropout)
        self.glimpse_matrix = nn.Parameter(torch.randn(glimpses, dim * k))  # [G, kD], N(0, 1) as theirs

    def forward(self, v: Tensor, q: Tensor, v_mask: Tensor, q_mask: Tensor) -> Tensor:
        """v [B, N, Dv], q [B, T, Dq], masks [B, N] and [B, T] -> attention [B, G, N, T] fp32, summing to
        1 over (N, T) per map; a padded box or word gets exactly zero."""
        v_ = self.dropout(self.v_net(v))  # [B, N, kD]
        q_ = self.q_net(q)  # [B, T, kD]
        # p_g scales the words, not the boxes: [B, G, T, kD] is the smaller product (T <= 14 words)
        q_g = q_.unsqueeze(1) * self.glimpse_matrix.to(q_.dtype)[None, :, None, :]  # [B, G, T, kD]
        logits = v_.unsqueeze(1) @ q_g.transpose(-1, -2)  # [B, G, N, T]
        pair = (v_mask[:, :, None] & q_mask[:, None, :])[:, None]  # [B, 1, N, T]
        logits = logits.float().masked_fill(~pair, float("-inf"))
        att = F.softmax(logits.flatten(2), dim=-1).view_as(logits)
        return torch.nan_to_num(att, nan=0.0)  # an image with no valid box gives zeros, not NaN


class BilinearPooling(nn.Module):
    """BAN's joint vector of one glimpse: f_k = sum_{i,j} A_ij ReLU(V U')_ik ReLU(Q W')_jk -> [B, dim]."""

    def __init__(self, v_dim: int, q_dim: int, dim: int, dropout: float):
        super().__init__()
        self.v_net = fc(v_dim, dim, dropout)
        self.q_net = fc(q_dim, dim, dropout)

    def forward(self, v: Tensor, q: Tensor, att: Tensor) -> Tensor:
        """v [B, N, Dv], q [B, T, Dq], att [B, N, T] -> [B, dim]."""
        v_, q_ = self.v_net(v), self.q_net(q)  # [B, N, D], [B, T, D]
        return torch.einsum("bvk,bvq,bqk->bk", v_, att.to(v_.dtype), q_)

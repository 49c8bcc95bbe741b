"""MCB: multimodal compact bilinear pooling with attention (Fukui et al. 2016, arXiv 1606.01847).

The outer product x ⊗ y has D1*D2 entries. MCB projects it to d dimensions with a count sketch Ψ
(Charikar et al. 2002) without building it: the sketch of an outer product is the circular
convolution of the two sketches (Pham & Pagh 2013), a product in the Fourier domain, so
Ψ(x ⊗ y) = irfft(rfft(Ψ1(x)) * rfft(Ψ2(y))) (eq. 4-5). The model (figure 3): question LSTM; image
cells L2-normalized; MCB of the question with every cell -> Linear + ReLU -> G attention maps; the G
attended vectors MCB-fused with the question once more -> linear classifier.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from vqa.models.layers import AttendingModel, QuestionEncoder, attend, l2_normalize, masked_softmax


def signed_sqrt(x: Tensor, eps: float = 1e-8) -> Tensor:
    """sign(x) * sqrt(|x|): the "power normalization" after MCB (Fukui et al., section 3.2).

    The eps keeps the gradient finite at x = 0 (plain sqrt(relu(x)) - sqrt(relu(-x))
    gives inf * 0 = NaN there); sign(0) = 0 keeps the value and gradient at 0 exactly 0.
    """
    return torch.sign(x) * torch.sqrt(x.abs() + eps)


class _SignedSqrtL2(torch.autograd.Function):
    """l2_normalize(signed_sqrt(z)) over the last dim with a hand-written backward: the [B, N, d] tensors
    after MCB are the model's largest, and this keeps two of them for backward (plain autograd: four or
    five) and makes four elementwise passes instead of about ten."""

    @staticmethod
    def forward(ctx, z: Tensor, eps: float) -> Tensor:
        root = z.abs().add_(eps).sqrt_()  # sqrt(|z| + eps)
        s = torch.sign(z).mul_(root)  # signed sqrt
        norm = s.norm(dim=-1, keepdim=True).clamp_(min=eps)  # [..., 1]
        out = s.div_(norm)
        ctx.save_for_backward(out, root, norm)
        ctx.eps = eps
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        out, root, norm = ctx.saved_tensors
        radial = torch.linalg.vecdot(grad, out).unsqueeze(-1) * (norm > ctx.eps)  # none where norm is clamped
        grad_z = torch.addcmul(grad, out, radial, value=-1)  # through s / ||s||, times ||s||
        # d signed_sqrt / dz = 0.5 / sqrt(|z| + eps): finite everywhere, z = 0 included
        return grad_z.div_(root).mul_(0.5 / norm), None


def signed_sqrt_l2(z: Tensor, eps: float = 1e-8) -> Tensor:
    """l2_normalize(signed_sqrt(z)) in one autograd node (the normalization after MCB); last dim."""
    return _SignedSqrtL2.apply(z, eps)


def count_sketch(x: Tensor, hash_: Tensor, sign: Tensor, out_dim: int) -> Tensor:
    """Count sketch Ψ(x): out[..., hash_[i]] += sign[i] * x[..., i]. x [..., D] -> [..., out_dim]."""
    flat = x.reshape(-1, x.shape[-1]) * sign.to(x.dtype)  # [M, D]
    out = flat.new_zeros(flat.shape[0], out_dim).index_add_(1, hash_, flat)  # [M, d]
    return out.reshape(*x.shape[:-1], out_dim)


class CompactBilinearPooling(nn.Module):
    """Ψ(x ⊗ y) in `out_dim` dimensions, computed by FFT, never as an outer product.

    x [..., in_dim1] and y [..., in_dim2] broadcast, so a question [B, 1, Dq] meets every cell of an image
    [B, N, Dv] with its sketch and FFT computed once. Hashes and signs come from a generator seeded by
    `seed` and are buffers, so a checkpoint reloads the same projection. The FFT runs in fp32 even under
    autocast (torch.fft has no bf16). With `normalize`, signed square root and L2 normalization follow.
    """

    def __init__(self, in_dim1: int, in_dim2: int, out_dim: int, seed: int = 0, normalize: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.in_dim1, self.in_dim2, self.out_dim, self.normalize = in_dim1, in_dim2, out_dim, normalize
        self.register_buffer("hash1", torch.randint(out_dim, (in_dim1,), generator=g))
        self.register_buffer("sign1", torch.randint(2, (in_dim1,), generator=g).float() * 2 - 1)
        self.register_buffer("hash2", torch.randint(out_dim, (in_dim2,), generator=g))
        self.register_buffer("sign2", torch.randint(2, (in_dim2,), generator=g).float() * 2 - 1)

    def sketches(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The two count sketches, fp32: Ψ1(x) [..., d], Ψ2(y) [..., d]."""
        return (
            count_sketch(x.float(), self.hash1, self.sign1, self.out_dim),
            count_sketch(y.float(), self.hash2, self.sign2, self.out_dim),
        )

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            sx, sy = self.sketches(x, y)  # [..., d] each
            fx = torch.fft.rfft(sx, dim=-1)  # [..., d // 2 + 1] complex
            fy = torch.fft.rfft(sy, dim=-1)
            z = torch.fft.irfft(fx * fy, n=self.out_dim, dim=-1)  # [..., d]: circular convolution
            if self.normalize:
                z = signed_sqrt_l2(z)
        return z

    def extra_repr(self) -> str:
        return f"in_dim1={self.in_dim1}, in_dim2={self.in_dim2}, out_dim={self.out_dim}, normalize={self.normalize}"


class MCBModel(AttendingModel):
    def __init__(
        self,
        num_tokens: int,
        num_answers: int,
        image_dim: int,
        *,  # sizes by name, all explicit: the builder passes ModelConfig's values
        embed_dim: int,
        rnn_dim: int,
        mcb_dim: int,
        attention_dim: int,
        glimpses: int,
        dropout: float,
        rnn: str,
        normalize_image: bool,
        seed: int = 0,
    ):
        super().__init__()
        self.question = QuestionEncoder(num_tokens, embed_dim, rnn_dim, rnn=rnn, dropout=dropout)
        self.normalize_image = normalize_image
        self.dropout = nn.Dropout(dropout)
        self.att_mcb = CompactBilinearPooling(rnn_dim, image_dim, mcb_dim, seed=seed)
        self.att_net = nn.Sequential(
            nn.Linear(mcb_dim, attention_dim),  # the paper's 1x1 convolutions, per cell
            nn.ReLU(),
            nn.Linear(attention_dim, glimpses),
        )
        self.fuse_mcb = CompactBilinearPooling(rnn_dim, glimpses * image_dim, mcb_dim, seed=seed + 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(mcb_dim, num_answers))
        self.joint_dim, self.question_dim, self.num_answers = mcb_dim, rnn_dim, num_answers

    def fuse_attend(
        self, question: Tensor, question_len: Tensor, image: Tensor, image_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(joint [B, mcb_dim] fp32, question vector [B, rnn_dim], attention [B, N, G] fp32)."""
        q = self.dropout(self.question(question, question_len))  # [B, H]
        v = l2_normalize(image) if self.normalize_image else image  # [B, N, D]
        joint = self.att_mcb(q.unsqueeze(1), self.dropout(v))  # [B, N, d]
        att = masked_softmax(self.att_net(joint), image_mask)  # [B, N, G], fp32
        v_att = attend(v, att).flatten(1)  # [B, G*D]
        return self.fuse_mcb(q, v_att), q, att  # [B, d], [B, H], [B, N, G]

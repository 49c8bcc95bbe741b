"""Device resolution and mixed precision, once for the package (training, predict, attention,
extract and the benchmarks all use these; nothing calls `.cuda()`)."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from vqa.errors import UserError


def resolve_device(name: str, setting: str = "config: train.device") -> torch.device:
    """`auto` -> cuda when available, else cpu; an explicit cuda without a GPU is a user error
    naming `setting` (the config key or command-line option the name came from)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{setting} is '{name}' but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """torch.autocast for `precision` bf16 / fp16 on `device`; nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def configure_cuda(device: torch.device, tf32: bool) -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions on Ampere and later (train.tf32, on by default):
    about 10 mantissa bits instead of 23 in the products, fp32 accumulation, several times the
    fp32 throughput. No effect on the CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

"""CUDA checks, run by scripts/gpu_check.sh on a GPU machine; skipped on the CPU."""

import pytest
import torch
from helpers import random_batch

from vqa.cli import main
from vqa.config import ModelConfig
from vqa.losses import LOSSES
from vqa.models import MODELS, build_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_bf16_forward_backward_on_cuda(name):
    cfg = ModelConfig(
        name=name, embed_dim=16, rnn_dim=32, hidden_dim=32, attention_dim=16, mcb_dim=64, dropout=0.0
    )
    model = build_model(cfg, num_tokens=20, num_answers=30, image_dim=24).cuda()
    q = torch.randint(1, 20, (8, 6), device="cuda")
    qlen = torch.full((8,), 6, device="cuda")
    image = torch.randn(8, 12, 24, device="cuda")
    mask = torch.ones(8, 12, dtype=torch.bool, device="cuda")
    mask[:, 9:] = False
    batch = random_batch(8, 30, k=4).to(torch.device("cuda"))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(q, qlen, image, mask)
    loss = LOSSES["soft_ce"](logits.float(), batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_losses_agree_between_cpu_and_cuda():
    batch = random_batch(64, 3000, seed=1)
    logits = torch.randn(64, 3000)
    for name in sorted(set(LOSSES) - {"sampled_ce"}):  # sampled_ce draws differently on each device
        cpu = LOSSES[name](logits, batch).item()
        gpu = LOSSES[name](logits.cuda(), batch.to(torch.device("cuda"))).item()
        assert gpu == pytest.approx(cpu, rel=1e-5), name


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_run_on_cuda(tiny_data, tmp_path, precision):
    args = ["train", "--config", "configs/synthetic/avg_soft.yaml", f"data.root={tiny_data}", f"out_dir={tmp_path}",
            "train.epochs=2", "train.device=cuda", f"train.precision={precision}", "data.num_workers=2"]  # fmt: skip
    assert main(args) == 0
    ckpt = torch.load(tmp_path / "avg_soft" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["best"]["accuracy"] > 0

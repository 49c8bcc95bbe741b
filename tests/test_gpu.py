"""CUDA checks, run by scripts/gpu_check.sh on a GPU machine; skipped on the CPU.

Mixed precision with unequal question lengths and a compact bilinear size that is not a power of
two; all four models through `vqa train` in bf16 and fp16; an exact resume with the CUDA RNG; DDP
with NCCL; torch.compile; feature extraction and the memory probe on the GPU.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import random_batch

from vqa.cli import main
from vqa.config import ModelConfig
from vqa.debias import DEBIAS
from vqa.losses import LOSSES
from vqa.models import MODELS, build_model
from vqa.models.layers import QuestionEncoder, compile_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

NUM_TOKENS, NUM_ANSWERS, IMAGE_DIM = 20, 30, 24
SIZES = dict(
    embed_dim=16, rnn_dim=32, hidden_dim=32, attention_dim=16, mcb_dim=1000, heads=4, ff_dim=64, layers=2
)
SIZES.update(dropout=0.0, fc_dropout=0.0)  # no dropout draws: compiled and eager see the same numbers
RUN = ["train.device=cuda", "data.num_workers=2", "model.mcb_dim=1000"]  # every `vqa train` here
COMPARED = ("epoch", "step", "train/loss", "val/loss", "val/hard_ce", "val/soft_ce", "val/accuracy", "lr")


@pytest.fixture
def exact_fp32():
    """TF32 off for comparisons to 1e-5 (fit() turns it on process-wide with train.tf32)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def cuda_model(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, **{**SIZES, **overrides})
    return build_model(cfg, NUM_TOKENS, NUM_ANSWERS, IMAGE_DIM).cuda()


def cuda_inputs(batch: int = 8, length: int = 9, boxes: int = 12, seed: int = 1):
    """Questions of unequal lengths 1..length (padded with 0), boxes with 3..boxes valid; on CUDA."""
    g = torch.Generator().manual_seed(seed)
    question_len = torch.randint(1, length + 1, (batch,), generator=g)
    question_len[0] = length
    question = torch.randint(1, NUM_TOKENS, (batch, length), generator=g)
    question[torch.arange(length)[None, :] >= question_len[:, None]] = 0
    num_boxes = torch.randint(3, boxes + 1, (batch,), generator=g)
    image_mask = torch.arange(boxes)[None, :] < num_boxes[:, None]  # [B, N]
    image = torch.randn(batch, boxes, IMAGE_DIM, generator=g) * image_mask[..., None]
    # question_len stays on the CPU, as Batch.to leaves it
    return question.cuda(), question_len, image.cuda(), image_mask.cuda()


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ---- the models in mixed precision ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_bf16_forward_backward_on_cuda(name):
    """bf16 logits, an fp32 question RNN (CUDA autocast would run cuDNN's in fp16), finite gradients."""
    model = cuda_model(name)
    seen = []
    model.question.rnn.register_forward_hook(
        lambda mod, args, out: seen.append((args[0].dtype, out[0].dtype))
    )
    batch = random_batch(8, NUM_ANSWERS, k=4).to(torch.device("cuda"))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(*cuda_inputs())
    assert seen == [(torch.float32, torch.float32)]
    assert logits.dtype == torch.bfloat16 and logits.shape == (8, NUM_ANSWERS)
    loss = LOSSES["soft_ce"](logits.float(), batch)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_gathered_state_equals_packed_cudnn_state(rnn, exact_fp32):
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    encoder = QuestionEncoder(NUM_TOKENS, 16, 32, rnn=rnn).cuda()
    question, question_len, _, _ = cuda_inputs(batch=16)
    gathered = encoder(question, question_len)
    x = encoder.tanh(encoder.embedding(question))
    _, state = encoder.rnn(pack_padded_sequence(x, question_len, batch_first=True, enforce_sorted=False))
    torch.testing.assert_close(gathered, (state[0] if rnn == "lstm" else state)[-1], rtol=0, atol=1e-5)


def test_losses_agree_between_cpu_and_cuda():
    batch = random_batch(64, 3000, seed=1)
    logits = torch.randn(64, 3000)
    for name in sorted(set(LOSSES) - {"sampled_ce"}):  # sampled_ce draws differently on each device
        cpu = LOSSES[name](logits, batch).item()
        gpu = LOSSES[name](logits.cuda(), batch.to(torch.device("cuda"))).item()
        assert gpu == pytest.approx(cpu, rel=1e-5), name


# ---- `vqa train` on the GPU -----------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_run_on_cuda(name, precision, tiny_data, tmp_path):
    args = ["train", "--config", f"configs/synthetic/{name}_soft.yaml", f"data.root={tiny_data}",
            f"out_dir={tmp_path}", "name=run", "train.epochs=1", f"train.precision={precision}", *RUN]  # fmt: skip
    assert main(args) == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["best"]["accuracy"] > 0
    (m,) = metrics(tmp_path / "run")
    assert all(m[k] is not None and np.isfinite(m[k]) for k in ("train/loss", "val/loss", "val/accuracy"))


def test_resume_with_the_cuda_rng_equals_uninterrupted(tiny_data, tmp_path):
    """Dropout draws from the CUDA generator: a resumed run must restore it to match the uninterrupted one."""
    common = ["--config", "configs/synthetic/avg_soft.yaml", f"data.root={tiny_data}", f"out_dir={tmp_path}",
              "model.dropout=0.3", *RUN]  # fmt: skip
    assert main(["train", *common, "name=ref", "train.epochs=2"]) == 0
    assert main(["train", *common, "name=r", "train.epochs=1"]) == 0
    assert "cuda" in torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)["rng"]
    assert main(["train", "--resume", str(tmp_path / "r"), "train.epochs=2"]) == 0
    ref, resumed = metrics(tmp_path / "ref"), metrics(tmp_path / "r")
    assert len(ref) == len(resumed) == 2
    for a, b in zip(ref, resumed):
        for key in COMPARED:
            assert a[key] == pytest.approx(b[key], abs=1e-5), (a["epoch"], key)


def test_ddp_with_nccl_on_every_gpu(tiny_data, tmp_path):
    gpus = torch.cuda.device_count()
    if gpus < 2:
        pytest.skip(f"DDP with NCCL needs 2 or more GPUs; {gpus} visible")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus)]
    args = ["--config", "configs/synthetic/avg_hard.yaml", f"data.root={tiny_data}", f"out_dir={tmp_path}",
            "name=ddp", "train.epochs=1", f"train.batch_size={32 * gpus}", *RUN]  # fmt: skip
    proc = subprocess.run([*torchrun, "-m", "vqa", "train", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"x {gpus} processes" in proc.stdout and proc.stdout.count("epoch 1/1") == 1  # rank 0 prints
    (m,) = metrics(tmp_path / "ddp")
    assert np.isfinite(m["train/loss"]) and m["val/accuracy"] > 0


# ---- torch.compile --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compiled_model_matches_eager_and_trains(name):
    """The default backend (Inductor), one graph and no break; three bf16 training steps.

    One compilation per model (fwd + bwd at fixed shapes) keeps gpu_check short; the recompile
    for a partial batch is tested on the CPU (test_models.py) and by the compiled `vqa train` below.
    """
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = cuda_model(name)
    eager = cuda_model(name)  # the same weights (same seed)
    compiled = compile_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(3):
        question, question_len, image, mask = cuda_inputs(seed=step)
        targets = random_batch(8, NUM_ANSWERS, k=4, seed=step).to(torch.device("cuda"))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = compiled(question, question_len, image, mask)
            if step == 0:
                expected = eager(question, question_len, image, mask)
                torch.testing.assert_close(logits.float(), expected.float(), rtol=0.05, atol=0.05)
        loss = LOSSES["soft_ce"](logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss), step
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1


def test_training_run_compiled_on_cuda(tiny_data, tmp_path):
    args = ["train", "--config", "configs/synthetic/updn_soft.yaml", f"data.root={tiny_data}", f"out_dir={tmp_path}",
            "name=run", "train.epochs=1", "train.precision=bf16", "train.compile=true", *RUN]  # fmt: skip
    assert main(args) == 0
    (m,) = metrics(tmp_path / "run")
    assert np.isfinite(m["train/loss"]) and m["val/accuracy"] > 0


# ---- tools on the GPU -----------------------------------------------------------------------------


def test_extract_on_cuda_matches_cpu(fixture_builder, tmp_path):
    """Pinned batches, channels-last, bf16 autocast, rows written by the background thread."""
    import h5py

    from vqa.features.extract import extract

    fixture_builder.write_images(tmp_path / "train2014", "train2014")
    small = dict(arch="resnet18", size=64, weights="none", workers=2, batch_size=3)
    extract(tmp_path / "train2014", tmp_path / "cpu.h5", device="cpu", **small)
    extract(tmp_path / "train2014", tmp_path / "cuda.h5", device="cuda", **small)
    assert torch.backends.cudnn.benchmark
    with h5py.File(tmp_path / "cpu.h5") as a, h5py.File(tmp_path / "cuda.h5") as b:
        assert a["ids"][()].tolist() == b["ids"][()].tolist() and b["grid"].dtype == np.float16
        cpu, gpu = a["grid"][()].astype(np.float32), b["grid"][()].astype(np.float32)
    assert np.isfinite(gpu).all()
    assert np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu) < 5e-2  # bf16 trunk against fp32


def test_peak_bytes_measures_on_the_device_of_the_tensors():
    from vqa.bench.measure import peak_bytes

    x = torch.randn(1024, 1024, device="cuda")
    assert peak_bytes(lambda: x @ x, "cuda") >= 4 * 1024 * 1024
    cpu = torch.randn(256, 256)
    assert peak_bytes(lambda: cpu @ cpu) >= 4 * 256 * 256  # CPU tensors: the CPU tracer
    with pytest.raises(ValueError, match="nothing was allocated on cuda"):
        peak_bytes(lambda: cpu @ cpu, "cuda")
    with pytest.raises(ValueError, match="made tensors on cuda"):
        peak_bytes(lambda: x @ x, "cpu")


class EndOfWindow(Exception):
    pass


@pytest.mark.parametrize("loss", ["soft_ce", "hard_ce"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_no_host_sync_between_log_steps(name, loss, tiny_data):
    """train_one_epoch reads the device back once every log_every steps: five steps in between run
    under torch.cuda.set_sync_debug_mode("error"), which raises on any synchronizing call."""
    _check_no_host_sync(name, loss, "none", tiny_data)


@pytest.mark.parametrize("method", sorted(DEBIAS))
def test_no_host_sync_with_a_debiasing_method(method, tiny_data):
    """The same for every debiasing method around UpDn (its branch, prior lookup and loss)."""
    _check_no_host_sync("updn", DEBIAS[method].losses[-1], method, tiny_data)


def _check_no_host_sync(name: str, loss: str, method: str, tiny_data) -> None:
    import itertools

    from vqa.config import load_config
    from vqa.data.build import build_datasets
    from vqa.data.feed import build_loader
    from vqa.data.loader import EpochSampler
    from vqa.debias import Settings, build_debiased
    from vqa.training.loop import TrainState, train_one_epoch

    cfg = load_config(f"configs/synthetic/{name}_soft.yaml", [f"data.root={tiny_data}", "model.mcb_dim=1000"])
    data = build_datasets(cfg)
    device = torch.device("cuda")
    model = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim)
    loss_fn = LOSSES[loss]
    if method != "none":
        model = build_debiased(method, model, data.train, len(data.avocab), 64, loss, Settings())
        loss_fn = model.loss
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = build_loader(data.train, 32, EpochSampler(data.train, seed=0), pin_memory=True)
    batches = list(itertools.islice(iter(loader), 6))
    state = TrainState(model, loss_fn, optimizer, None, device, precision="bf16", log_every=1000)
    train_one_epoch(state, batches[:1])  # warm-up (ends with the epoch-end sync): handles, allocations
    torch.cuda.synchronize()

    class Window:  # an epoch longer than the five steps: no epoch-end sync inside the window
        def __len__(self):
            return 1000

        def __iter__(self):
            yield from batches[1:]
            raise EndOfWindow

    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(EndOfWindow):
            train_one_epoch(state, Window())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert state.step == 6

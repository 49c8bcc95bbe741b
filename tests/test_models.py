"""Every registered model: shapes, gradients, finiteness, masks; and the MCB layer's math."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch

from vqa.bench.models import compact_bilinear_outer
from vqa.config import ModelConfig
from vqa.models import MODELS, build_model
from vqa.models.layers import QuestionEncoder, compile_model, l2_normalize
from vqa.models.mcb import CompactBilinearPooling, signed_sqrt, signed_sqrt_l2

NUM_TOKENS, NUM_ANSWERS, IMAGE_DIM = 20, 7, 16
SMALL = dict(
    embed_dim=8,
    rnn_dim=12,
    hidden_dim=10,
    attention_dim=6,
    glimpses=2,
    mcb_dim=32,
    heads=2,
    ff_dim=12,
    layers=2,
)
DROPOUTS = dict(dropout=0.0, fc_dropout=0.0)


def small_model(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, **{**SMALL, **DROPOUTS, **overrides})
    return build_model(cfg, NUM_TOKENS, NUM_ANSWERS, IMAGE_DIM)


def has_attention(model: torch.nn.Module) -> bool:
    return "return_attention" in inspect.signature(model.forward).parameters


def make_inputs(kind: str, batch: int = 4, seed: int = 1):
    """Question batch plus either a 3x3 grid (all valid) or 5 padded boxes (1..5 valid)."""
    g = torch.Generator().manual_seed(seed)
    question_len = torch.tensor([5, 3, 1, 4][:batch])
    question = torch.randint(1, NUM_TOKENS, (batch, 5), generator=g)
    question[torch.arange(5)[None, :] >= question_len[:, None]] = 0  # pad after the last word
    if kind == "grid":
        image = torch.randn(batch, 9, IMAGE_DIM, generator=g)
        image_mask = torch.ones(batch, 9, dtype=torch.bool)
    else:
        num_boxes = torch.tensor([5, 3, 1, 2][:batch])
        image_mask = torch.arange(5)[None, :] < num_boxes[:, None]  # [B, 5]
        image = torch.randn(batch, 5, IMAGE_DIM, generator=g) * image_mask[..., None]  # padding is zeros
    return question, question_len, image, image_mask


@pytest.mark.parametrize("kind", ["grid", "boxes"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape(name, kind):
    model = small_model(name)
    inputs = make_inputs(kind)
    logits = model(*inputs)
    assert logits.shape == (4, NUM_ANSWERS)
    assert logits.dtype == torch.float32
    if has_attention(model):
        logits2, att = model(*inputs, return_attention=True)
        assert torch.equal(logits, logits2)
        assert att.shape == (4, inputs[2].shape[1], SMALL["glimpses"])
        torch.testing.assert_close(att.sum(1), torch.ones(4, SMALL["glimpses"]))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_backward_reaches_every_parameter(name):
    model = small_model(name)
    model(*make_inputs("boxes")).logsumexp(-1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: all-zero gradient for {pname}"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_finite_forward_backward(name, precision):
    model = small_model(name)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        logits = model(*make_inputs("boxes"))
        loss = logits.float().logsumexp(-1).mean()
    loss.backward()
    assert torch.isfinite(logits).all()
    for pname, p in model.named_parameters():
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname} under {precision}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padded_boxes_do_not_matter(name):
    model = small_model(name).eval()
    question, question_len, image, image_mask = make_inputs("boxes")
    noisy = image + torch.randn_like(image) * 5 * (~image_mask)[..., None]  # only padding changes
    assert not torch.equal(noisy, image)
    with torch.no_grad():
        assert torch.equal(
            model(question, question_len, noisy, image_mask), model(question, question_len, image, image_mask)
        )
        if has_attention(model):
            _, att = model(question, question_len, noisy, image_mask, return_attention=True)
            assert (att[~image_mask] == 0).all(), "padded boxes must get exactly zero attention"
            assert (att[image_mask] > 0).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padded_words_do_not_matter(name):
    """What follows a question's last word changes nothing: MCAN and BAN mask the words they attend to."""
    model = small_model(name).eval()
    question, question_len, image, image_mask = make_inputs("boxes")
    other = question.clone()
    other[torch.arange(5)[None, :] >= question_len[:, None]] = 7  # a real token where padding was
    assert not torch.equal(other, question)
    with torch.no_grad():
        torch.testing.assert_close(
            model(other, question_len, image, image_mask),
            model(question, question_len, image, image_mask),
            rtol=0,
            atol=1e-6,
        )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameter_count(name):
    """Printed (pytest -s) at the small test sizes and at the default config on 2048-d features."""
    small = sum(p.numel() for p in small_model(name).parameters())
    with torch.device("meta"):
        cfg = dataclasses.replace(ModelConfig(), name=name)
        full = sum(p.numel() for p in build_model(cfg, 15000, 3000, 2048).parameters())
    print(
        f"\n{name}: {small:,} parameters (test sizes); {full:,} (default ModelConfig, 15k words, 3k answers, 2048-d)"
    )
    assert 0 < small < full


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_rnn_runs_fp32_and_logits_bf16_under_autocast(name, rnn):
    """CPU autocast would run an LSTM in bf16 (CUDA autocast: any cuDNN RNN in fp16); the encoder opts out."""
    model = small_model(name, rnn=rnn)
    seen = []
    model.question.rnn.register_forward_hook(
        lambda mod, args, out: seen.append((args[0].dtype, out[0].dtype))
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(*make_inputs("boxes"))
    assert seen == [(torch.float32, torch.float32)]
    assert logits.dtype == torch.bfloat16  # the layers after the RNN still autocast


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_gathered_state_equals_packed_final_state(rnn):
    """The output at question_len - 1 of an unpacked run is the final state of a packed run."""
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    encoder = QuestionEncoder(NUM_TOKENS, 8, 12, rnn=rnn)
    question = torch.randint(1, NUM_TOKENS, (6, 7))
    question_len = torch.tensor([7, 3, 1, 0, 5, 2])  # unequal, one empty (reads one pad token)
    question[torch.arange(7)[None, :] >= question_len[:, None]] = 0
    gathered = encoder(question, question_len)  # [B, H]
    x = encoder.tanh(encoder.embedding(question))
    packed = pack_padded_sequence(x, question_len.clamp(min=1), batch_first=True, enforce_sorted=False)
    _, state = encoder.rnn(packed)
    final = (state[0] if rnn == "lstm" else state)[-1]  # [B, H]
    torch.testing.assert_close(gathered, final, rtol=0, atol=1e-6)
    other = question.clone()
    other[question == 0] = 3  # what follows the last word does not matter
    torch.testing.assert_close(encoder(other, question_len)[question_len > 0], gathered[question_len > 0])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_compiles_to_one_graph(name):
    """compile_model lets Dynamo trace the question RNN: one graph, no break, on every model."""
    torch._dynamo.reset()
    model = small_model(name)
    with torch._dynamo.config.patch(allow_rnn=False):  # torch's default, restored after
        compile_model(model, backend="eager")  # sets the flag Dynamo reads when it traces
        explanation = torch._dynamo.explain(model)(*make_inputs("boxes"))
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0
    assert not explanation.break_reasons, [r.reason for r in explanation.break_reasons]


def test_compiled_model_recompiles_once_per_varying_dim():
    """The last partial batch and varying box counts each cost one recompile, then stay symbolic."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = small_model("updn")
    question, question_len, _, _ = make_inputs("boxes")
    with torch._dynamo.config.patch(allow_rnn=False):
        compiled = compile_model(model, backend="eager")
        for batch, boxes in [(4, 5), (3, 5), (4, 7), (2, 6), (4, 3), (3, 9)]:
            image = torch.randn(batch, boxes, IMAGE_DIM)
            mask = torch.arange(boxes)[None, :] < torch.tensor([boxes, 2, 1, 3][:batch])[:, None]
            torch.testing.assert_close(
                compiled(question[:batch], question_len[:batch], image, mask),
                model(question[:batch], question_len[:batch], image, mask),
            )
    assert counters["stats"]["unique_graphs"] == 3  # static, then batch symbolic, then boxes too
    assert not counters["graph_break"]


# ---- the compact bilinear pooling layer ----------------------------------------------------------


@pytest.mark.parametrize("out_dim", [11, 16])
def test_mcb_equals_circular_convolution_of_sketches(out_dim):
    layer = CompactBilinearPooling(5, 7, out_dim, seed=3, normalize=False)
    x, y = torch.randn(3, 5), torch.randn(3, 7)
    sx, sy = layer.sketches(x, y)  # [3, d]
    k = torch.arange(out_dim)
    shift = (k[:, None] - k[None, :]) % out_dim  # conv[k] = sum_j sx[j] sy[(k - j) mod d]
    conv = torch.einsum("bj,bkj->bk", sx, sy[:, shift])
    torch.testing.assert_close(layer(x, y), conv, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer(x, y), compact_bilinear_outer(layer, x, y), rtol=1e-5, atol=1e-5)


def test_mcb_sketch_is_a_count_sketch():
    layer = CompactBilinearPooling(6, 4, 8, seed=0)
    sx, _ = layer.sketches(torch.eye(6), torch.zeros(6, 4))  # row i: sign1[i] at hash1[i]
    expected = torch.zeros(6, 8)
    expected[torch.arange(6), layer.hash1] = layer.sign1
    assert torch.equal(sx, expected)
    assert set(layer.sign1.tolist()) <= {-1.0, 1.0}


def test_mcb_broadcasts_question_over_cells():
    layer = CompactBilinearPooling(5, 7, 16, seed=1)
    q, v = torch.randn(2, 5), torch.randn(2, 3, 7)
    per_cell = torch.stack([layer(q, v[:, n]) for n in range(3)], dim=1)
    torch.testing.assert_close(layer(q.unsqueeze(1), v), per_cell)


def test_mcb_hashes_follow_the_seed_not_the_global_rng():
    torch.manual_seed(0)
    a = CompactBilinearPooling(10, 10, 64, seed=7)
    torch.manual_seed(1)
    b = CompactBilinearPooling(10, 10, 64, seed=7)
    c = CompactBilinearPooling(10, 10, 64, seed=8)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.hash1, c.hash1)


def test_mcb_state_dict_round_trip():
    model = small_model("mcb").eval()
    other = small_model("mcb")
    for layer in (other.att_mcb, other.fuse_mcb):  # different hashes than the saved model
        fresh = CompactBilinearPooling(layer.in_dim1, layer.in_dim2, layer.out_dim, seed=99)
        layer.load_state_dict(fresh.state_dict())
    inputs = make_inputs("grid")
    assert {"att_mcb.hash1", "att_mcb.sign2", "fuse_mcb.hash2"} <= set(model.state_dict())
    with torch.no_grad():
        assert not torch.equal(model(*inputs), other.eval()(*inputs))
        other.load_state_dict(model.state_dict())
        assert torch.equal(model(*inputs), other(*inputs))


def test_mcb_inner_products_approximate_bilinear_kernel():
    """<Ψ(x⊗y), Ψ(x'⊗y')> estimates <x,x'><y,y'> (tensor sketch, Pham & Pagh 2013); error falls with d."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 16, generator=g), torch.randn(256, 16, generator=g)
    x2 = x + 0.5 * torch.randn(256, 16, generator=g)  # correlated pairs: kernel values far from 0
    y2 = y + 0.5 * torch.randn(256, 16, generator=g)
    exact = (x * x2).sum(1) * (y * y2).sum(1)  # [256]
    errors = []
    for d in (64, 512, 4096):
        err = 0.0
        for seed in range(4):
            layer = CompactBilinearPooling(16, 16, d, seed=seed, normalize=False)
            approx = (layer(x, y) * layer(x2, y2)).sum(1)
            err += ((approx - exact).abs().mean() / exact.abs().mean()).item() / 4
        errors.append(err)
    print(f"\nMCB relative inner-product error at d = 64, 512, 4096: {[round(e, 4) for e in errors]}")
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.1


def test_mcb_fp32_under_autocast_and_finite_at_zero():
    layer = CompactBilinearPooling(5, 7, 16, seed=0)
    x = torch.zeros(2, 5, requires_grad=True)  # output all zero: the signed sqrt's worst case
    y = torch.randn(2, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.bfloat16(), y)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    z = torch.tensor([0.0, 1e-30, -4.0], requires_grad=True)
    signed_sqrt(z).sum().backward()
    assert torch.isfinite(z.grad).all()
    torch.testing.assert_close(signed_sqrt(torch.tensor([4.0, -9.0])), torch.tensor([2.0, -3.0]))


def test_fused_signed_sqrt_l2_matches_autograd():
    z = torch.randn(3, 4, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(signed_sqrt_l2, (z,))
    grad = torch.randn(3, 4, 9, dtype=torch.float64)
    fused, unfused = signed_sqrt_l2(z), l2_normalize(signed_sqrt(z))
    torch.testing.assert_close(fused, unfused)
    torch.testing.assert_close(
        torch.autograd.grad(fused, z, grad)[0], torch.autograd.grad(unfused, z, grad)[0]
    )


# ---- the interface a method wraps (vqa/models/__init__.py) ---------------------------------------


@pytest.mark.parametrize("kind", ["grid", "boxes"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_fuse_then_classifier_is_forward(name, kind):
    """fuse() gives (joint [B, joint_dim], question_vec [B, question_dim]); classifier(joint) is forward's logits,
    in eval mode and in train mode with dropout (same RNG state, same draws)."""
    model = small_model(name, dropout=0.3, fc_dropout=0.3)
    inputs = make_inputs(kind)
    assert model.num_answers == NUM_ANSWERS
    for train in (False, True):
        model.train(train)
        torch.manual_seed(3)
        logits = model(*inputs)
        torch.manual_seed(3)
        joint, question_vec = model.fuse(*inputs)
        assert joint.shape == (4, model.joint_dim)
        assert question_vec.shape == (4, model.question_dim)
        assert torch.equal(model.classifier(joint), logits)
    assert isinstance(model.classifier, torch.nn.Module)
    joint.float().sum().backward()  # the question vector and the joint are in the graph
    assert model.question.embedding.weight.grad is not None

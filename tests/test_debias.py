"""Debiasing methods (vqa/debias): every method on every model, the prior by hand, the LMH, bias
product, RUBi, LPF and GGE losses against dense references written from the papers' equations,
the test-time path, and the refusals at config load."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vqa.config import ModelConfig, load_config
from vqa.data.answers import SCORE_OF_COUNT
from vqa.data.dataset import Batch
from vqa.debias import DEBIAS, Debiased, Settings, base_weights, build_debiased
from vqa.debias.prior import answer_log_odds, question_type_prior, start_sigmoid_at_prior
from vqa.errors import UserError
from vqa.models import MODELS, build_model
from vqa.models.layers import compile_model

NUM_TOKENS, NUM_ANSWERS, IMAGE_DIM, TYPES = 20, 9, 16, 3
SMALL = dict(embed_dim=8, rnn_dim=12, hidden_dim=16, attention_dim=6, glimpses=2, mcb_dim=32, dropout=0.0,
             heads=2, ff_dim=16, layers=1, fc_dropout=0.0)  # fmt: skip


DEFAULTS = Settings()


def make_batch(batch: int = 6, seed: int = 1) -> Batch:
    """Questions of unequal lengths over 5 padded boxes, with sparse targets (3 answer slots, the
    official scores of their counts, the most common answer first) and question types (-1 for one)."""
    g = torch.Generator().manual_seed(seed)
    question_len = torch.randint(1, 6, (batch,), generator=g)
    question = torch.randint(1, NUM_TOKENS, (batch, 5), generator=g)
    question[torch.arange(5)[None, :] >= question_len[:, None]] = 0
    mask = torch.arange(5)[None, :] < torch.randint(1, 6, (batch,), generator=g)[:, None]
    image = torch.randn(batch, 5, IMAGE_DIM, generator=g) * mask[..., None]
    idx = torch.stack([torch.randperm(NUM_ANSWERS, generator=g)[:3] for _ in range(batch)])  # [B, 3]
    count = torch.tensor([[6, 3, 1], [10, 0, 0], [4, 4, 2], [7, 2, 0], [5, 1, 0], [9, 1, 0]])[:batch]
    answer = torch.where(torch.arange(batch) == 1, -1, idx[:, 0])  # one question without a hard target
    qtype = torch.randint(0, TYPES, (batch,), generator=g)
    qtype[0] = -1
    return Batch(question, question_len, image, mask, answer, torch.where(count > 0, idx, 0),
                 count.float() / 10, torch.from_numpy(SCORE_OF_COUNT[count.numpy()]),
                 torch.arange(batch), qtype)  # fmt: skip


def random_prior(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    prior = torch.rand(TYPES + 1, NUM_ANSWERS, generator=g) * 0.8
    prior[1, 2] = 0.0  # an answer a type never had
    return prior


def wrapped(model_name: str, method: str, loss: str, settings: Settings = DEFAULTS) -> Debiased:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=model_name, **SMALL), NUM_TOKENS, NUM_ANSWERS, IMAGE_DIM)
    branch = DEBIAS[method].branch(model.joint_dim, model.question_dim, NUM_ANSWERS, 16, random_prior(),
                                   loss, settings)  # fmt: skip
    return Debiased(model, branch, NUM_ANSWERS)


CASES = [(m, loss) for m in DEBIAS for loss in DEBIAS[m].losses]


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("method, loss", CASES)
def test_every_method_on_every_model_trains_and_evaluates_on_the_base(model_name, method, loss):
    net = wrapped(model_name, method, loss)
    batch = make_batch()
    net.train()
    outputs = net(batch.question, batch.question_len, batch.image, batch.image_mask)
    assert outputs.shape[0] == 6 and outputs.shape[1] > NUM_ANSWERS
    value = net.loss(outputs, batch)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [
        n for n, g in grads.items() if g is None
    ]
    assert any(g.abs().sum() > 0 for n, g in grads.items() if n.startswith("branch."))
    net.eval()
    with torch.no_grad():
        logits = net(batch.question, batch.question_len, batch.image, batch.image_mask)
        assert torch.equal(
            logits, net.model(batch.question, batch.question_len, batch.image, batch.image_mask)
        )
        for p in net.branch.parameters():  # the test-time path never reads the branch
            p.add_(torch.randn_like(p))
        if hasattr(net.branch, "prior"):
            net.branch.prior = torch.zeros_like(net.branch.prior)
        again = net(batch.question, batch.question_len, batch.image, batch.image_mask)
    assert torch.equal(logits, again) and logits.shape == (6, NUM_ANSWERS)


def test_question_branches_send_no_gradient_into_the_question_encoder():
    """RUBi, LPF and GGE read the question vector detached: the question-only loss alone leaves the
    encoder without a gradient (Cadene et al. 2019)."""
    for method in ("rubi", "lpf", "gge"):
        net = wrapped("updn", method, "bce")
        batch = make_batch()
        joint, q = net.model.fuse(batch.question, batch.question_len, batch.image, batch.image_mask)
        extra = net.branch(joint, q)
        extra.sum().backward()
        assert all(p.grad is None for p in net.model.parameters()), method
        assert any(p.grad is not None for p in net.branch.parameters()), method


def test_prior_is_the_mean_score_per_question_type_by_hand():
    """Type 0: questions A (answer 1 scored 1.0, answer 2 scored 0.3) and B (answer 1 scored 0.6);
    type 1: question C (answer 0 scored 0.9); question D has no type (last row): answer 2 scored 1."""
    qtype = np.array([0, 0, 1, -1])
    idx = np.array([[1, 2], [1, 0], [0, 0], [2, 0]])
    score = np.array([[1.0, 0.3], [0.6, 0.0], [0.9, 0.0], [1.0, 0.0]])
    prior = question_type_prior(qtype, idx, score, num_types=3, num_answers=4)
    expected = np.array(
        [[0.0, (1.0 + 0.6) / 2, 0.3 / 2, 0.0], [0.9, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1.0, 0]], np.float32
    )
    np.testing.assert_allclose(prior, expected, rtol=1e-6)


def hand_dataset() -> SimpleNamespace:
    """Questions A (answer 1 by 10 people, answer 2 by 1), B (answer 1 by 2), C (answer 0 by 3),
    D (answer 1 by 10): official scores 1.0, 0.3; 0.6; 0.9; 1.0. Answer 3 is never given."""
    count = np.array([[10, 1], [2, 0], [3, 0], [10, 0]])
    idx = np.array([[1, 2], [1, 0], [0, 0], [1, 0]])
    return SimpleNamespace(
        records=SimpleNamespace(question_type=np.array([0, 1, -1, 0])), answer_idx=idx, answer_count=count
    )


def test_sigmoid_start_is_each_answers_mean_training_score_by_hand():
    p = np.array([0.9 / 4, (1.0 + 0.6 + 1.0) / 4, 0.3 / 4, 1e-4])  # answer 3: the floor
    np.testing.assert_allclose(answer_log_odds(hand_dataset(), 4).numpy(), np.log(p / (1 - p)), rtol=1e-5)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_model_starts_a_sigmoid_loss_at_the_prior(model_name):
    """The answer layer's bias, and only it, is set: at zero input to that layer the sigmoid outputs
    are the answers' mean training scores."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=model_name, **SMALL), NUM_TOKENS, 4, IMAGE_DIM)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start_sigmoid_at_prior(model, hand_dataset(), 4)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == 1 and changed[0].startswith("classifier.") and changed[0].endswith("bias")
    p = torch.tensor([0.9 / 4, 2.6 / 4, 0.3 / 4, 1e-4])
    torch.testing.assert_close(torch.sigmoid(model.state_dict()[changed[0]]), p, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("prior_init", [True, False])
def test_a_bce_run_starts_at_the_prior(prior_init, tiny_data, tmp_path):
    """fit starts a bce run's answer layer at the prior: its first epoch's training loss is about the
    prior's (about 8 on `tiny`), not the zero-bias start's (about 20 for AVG, 36 for UpDn, whose
    saturated hidden units then kept it at the constant answer for 20 epochs, docs/debias.md), which
    train.bce_prior_init=false keeps (the published bottom-up attention protocol)."""
    from vqa.training.fit import fit

    cfg = load_config(
        "configs/synthetic/avg_soft.yaml",
        [
            f"data.root={tiny_data}",
            "train.loss=bce",
            f"train.bce_prior_init={str(prior_init).lower()}",
            "train.epochs=1",
            f"out_dir={tmp_path}",
            "name=bce",
            "model.hidden_dim=32",
            "model.rnn_dim=32",
            "model.embed_dim=16",
        ],
    )
    fit(cfg)
    (row,) = [json.loads(line) for line in (tmp_path / "bce" / "metrics.jsonl").read_text().splitlines()]
    assert (row["train/loss"] < 12) == prior_init, row["train/loss"]


# ---- dense references, written from the papers' equations (targets as dense [B, A] tensors) -------


def dense_scores(batch: Batch) -> torch.Tensor:
    return torch.zeros(len(batch.answer), NUM_ANSWERS).scatter_add_(1, batch.answer_idx, batch.answer_score)


def dense_weights(batch: Batch) -> torch.Tensor:
    return torch.zeros(len(batch.answer), NUM_ANSWERS).scatter_add_(1, batch.answer_idx, batch.answer_weight)


def dense_ce(log_q: torch.Tensor, batch: Batch, loss: str) -> torch.Tensor:
    """Cross-entropy of log-probabilities: on the most common answer (hard_ce, its questions only) or
    on the soft weights (soft_ce)."""
    if loss == "hard_ce":
        keep = batch.answer >= 0
        return -log_q[keep].gather(1, batch.answer[keep][:, None]).mean()
    return -(dense_weights(batch) * log_q).sum(1).mean()


def dense_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / len(logits)


def clark_binary(logits, prior, gate, smooth, labels, w):
    """The authors' LearnedMixin.forward (vqa_debias_loss_functions.py), dense, with `w` its weight."""
    bias = torch.log(torch.stack([prior, 1 - prior], 2) + smooth[:, :, None]) * gate[:, :, None]  # [B, A, 2]
    log_probs = torch.stack([F.logsigmoid(logits), F.logsigmoid(-logits)], 2)
    combined = torch.log_softmax(bias + log_probs, 2)
    loss = -(combined[..., 0] * labels + (1 - labels) * combined[..., 1]).sum(1).mean(0)
    bias_lp = torch.log_softmax(bias, 2)
    return loss + w * (-(bias_lp.exp() * bias_lp).sum(2).mean())


def parts(method: str, loss: str, settings: Settings = DEFAULTS, seed: int = 3):
    torch.manual_seed(seed)
    net = wrapped("avg", method, loss, settings)
    batch = make_batch(seed=seed)
    net.train()
    outputs = net(batch.question, batch.question_len, batch.image, batch.image_mask)
    prior = net.branch.prior[torch.where(batch.question_type < 0, TYPES, batch.question_type)] if hasattr(
        net.branch, "prior") else None  # fmt: skip
    return net, batch, outputs, outputs[:, :NUM_ANSWERS], outputs[:, NUM_ANSWERS:], prior


@pytest.mark.parametrize("entropy", [0.36, 0.0])
def test_lmh_sigmoid_form_matches_the_authors_dense_code(entropy):
    net, batch, outputs, logits, extra, prior = parts("lmh", "bce", Settings(entropy=entropy))
    gate, smooth = extra[:, :1], extra[:, 1:2]
    assert torch.allclose(gate, F.softplus(net.branch.gate(net.model.fuse(*batch[:4])[0])))
    expected = clark_binary(logits, prior, gate, smooth, dense_scores(batch), entropy)
    torch.testing.assert_close(net.loss(outputs, batch), expected, rtol=1e-5, atol=1e-5)


def test_bias_product_sigmoid_form_is_the_ensemble_with_gate_one():
    net, batch, outputs, logits, extra, prior = parts("bias_product", "bce")
    expected = clark_binary(logits, prior, torch.ones_like(extra), extra, dense_scores(batch), 0.0)
    torch.testing.assert_close(net.loss(outputs, batch), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["hard_ce", "soft_ce"])
@pytest.mark.parametrize("method", ["lmh", "bias_product"])
def test_softmax_form_is_softmax_of_log_p_plus_gated_log_prior(method, loss):
    """Clark et al. eq. 1-3: p_hat = softmax(log p + g(x) log b~), b~ the prior as a distribution
    mixed with the uniform by s; LMH adds w * H(softmax(g(x) log b~))."""
    net, batch, outputs, logits, extra, prior = parts(method, loss)
    gate, smooth = (extra[:, :1], extra[:, 1:2]) if method == "lmh" else (torch.ones_like(extra), extra)
    b = (1 - smooth) * prior / prior.sum(1, keepdim=True) + smooth / NUM_ANSWERS
    expected = dense_ce(torch.log_softmax(torch.log_softmax(logits, 1) + gate * torch.log(b), 1), batch, loss)
    if method == "lmh":
        q = torch.softmax(gate * torch.log(b), 1)
        expected = expected + 0.36 * -(q * torch.log(q)).sum(1).mean()
    torch.testing.assert_close(net.loss(outputs, batch), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["hard_ce", "soft_ce", "bce"])
def test_rubi_loss_matches_the_dense_equations(loss):
    """Cadene et al. eq. 3-5: L(x * sigmoid(c_1(q))) + L(c_2(c_1(q)))."""
    net, batch, outputs, logits, extra, _ = parts("rubi", loss)
    q_pred, q_out = extra[:, :NUM_ANSWERS], extra[:, NUM_ANSWERS:]
    q = net.model.fuse(*batch[:4])[1]
    torch.testing.assert_close(q_pred, net.branch.c_1(q))
    fused = logits * torch.sigmoid(q_pred)
    if loss == "bce":
        expected = dense_bce(fused, dense_scores(batch)) + dense_bce(q_out, dense_scores(batch))
    else:
        expected = dense_ce(torch.log_softmax(fused, 1), batch, loss) + dense_ce(
            torch.log_softmax(q_out, 1), batch, loss
        )
    torch.testing.assert_close(net.loss(outputs, batch), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["hard_ce", "soft_ce", "bce"])
def test_lpf_loss_matches_the_dense_equations(loss):
    """Liang et al.: mean_i (1 - p_q(y_i))^5 L_i + L(q_logits), p_q the question-only softmax."""
    net, batch, outputs, logits, q_logits, _ = parts("lpf", loss)
    p_q = torch.softmax(q_logits, 1)
    if loss == "hard_ce":
        keep = batch.answer >= 0
        alpha = p_q[keep].gather(1, batch.answer[keep][:, None]).squeeze(1)
        per = -torch.log_softmax(logits, 1)[keep].gather(1, batch.answer[keep][:, None]).squeeze(1)
    else:
        alpha = (dense_weights(batch) * p_q).sum(1)
        per = (-(dense_weights(batch) * torch.log_softmax(logits, 1)).sum(1) if loss == "soft_ce" else
               F.binary_cross_entropy_with_logits(logits, dense_scores(batch), reduction="none").sum(1))  # fmt: skip
    q_loss = (dense_bce(q_logits, dense_scores(batch)) if loss == "bce"
              else dense_ce(torch.log_softmax(q_logits, 1), batch, loss))  # fmt: skip
    expected = ((1 - alpha) ** 5 * per).mean() + q_loss
    torch.testing.assert_close(net.loss(outputs, batch), expected, rtol=1e-5, atol=1e-5)


def test_gge_loss_matches_the_authors_dense_code():
    """The authors' gge_tog: y1 = 2y sigmoid(-2y b); BCE(q_out, y1); y2 = 2y sigmoid(-2y (sigmoid(q_out) + b));
    BCE(x, y2), both times the number of answers."""
    net, batch, outputs, logits, q_out, prior = parts("gge", "bce")
    y = dense_scores(batch)
    y1 = 2 * y * torch.sigmoid(-2 * y * prior)
    y2 = 2 * y * torch.sigmoid(-2 * y * (torch.sigmoid(q_out.detach()) + prior))
    expected = dense_bce(logits, y2) + dense_bce(q_out, y1)
    torch.testing.assert_close(net.loss(outputs, batch), expected, rtol=1e-5, atol=1e-5)


# ---- wiring ------------------------------------------------------------------------------------


def test_a_loss_the_paper_does_not_define_is_refused_at_config_load():
    with pytest.raises(
        UserError, match=r"train.debias gge \(Han et al. 2021\) is defined for train.loss bce"
    ):
        load_config(None, ["train.debias=gge", "train.loss=soft_ce"])
    with pytest.raises(UserError, match="not kl"):
        load_config(None, ["train.debias=lmh", "train.loss=kl"])
    with pytest.raises(UserError, match="train.debias' is 'lmx'; choose one of none, bias_product"):
        load_config(None, ["train.debias=lmx"])
    assert load_config(None, ["train.debias=rubi", "train.loss=hard_ce"]).train.debias == "rubi"


def test_base_weights_are_the_models_own_state():
    net = wrapped("updn", "lmh", "bce")
    fresh = build_model(ModelConfig(name="updn", **SMALL), NUM_TOKENS, NUM_ANSWERS, IMAGE_DIM)
    fresh.load_state_dict(base_weights(net.state_dict(), "lmh"))  # strict: exactly the base keys
    assert "prior" not in " ".join(net.state_dict())  # rebuilt from the data, not stored


def test_build_debiased_uses_the_training_split_prior(tiny_data):
    from vqa.data.build import build_datasets

    cfg = load_config("configs/synthetic/avg_soft.yaml", [f"data.root={tiny_data}", "train.loss=bce"])
    data = build_datasets(cfg)
    model = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim)
    net = build_debiased("lmh", model, data.train, len(data.avocab), 16, "bce", Settings())
    types = data.train.records.question_type
    t = int(np.bincount(types[types >= 0]).argmax())
    rows = np.flatnonzero(types == t)
    expected = np.zeros(len(data.avocab))
    np.add.at(
        expected, data.train.answer_idx[rows].ravel(), SCORE_OF_COUNT[data.train.answer_count[rows]].ravel()
    )
    np.testing.assert_allclose(net.branch.prior[t].numpy(), expected / len(rows), rtol=1e-5)


def test_a_wrapped_model_compiles_to_one_graph():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    net = wrapped("updn", "rubi", "soft_ce")
    compiled = compile_model(net, backend="eager")
    batch = make_batch()
    net.train()
    net.loss(compiled(*batch[:4]), batch).backward()
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1


def test_verdicts_say_where_the_paired_interval_lies():
    from vqa.report.debias import verdict

    def diff(low, high, n=5):
        return {"n": n, "mean": (low + high) / 2, "ci_low": low, "ci_high": high}

    lmh = {"model": "updn", "arm": "lmh", "minus": "bce", "n": 5}
    line = verdict(lmh | {"all": diff(1.0, 3.0), "in_distribution": diff(-4.0, -2.0)})
    assert line == (
        "UPDN lmh vs bce: test All +2.00 [+1.00, +3.00] -> above the baseline; "
        "in distribution -3.00 [-4.00, -2.00] -> below the baseline (n=5 seed pairs)"
    )
    rubi = {"model": "avg", "arm": "rubi", "minus": "bce", "n": 5}
    held = verdict(rubi | {"all": diff(-1.0, 2.0), "in_distribution": diff(0.0, 0.0, n=1) | {"ci_low": None}})
    assert "-> undecided (the interval holds 0);" in held
    assert held.endswith("-> undecided (no interval) (n=5 seed pairs)")

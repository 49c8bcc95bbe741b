"""Each loss against a dense reference built from the same sparse targets."""

import pytest
import torch
import torch.nn.functional as F
from helpers import random_batch

from vqa.bench.losses import dense_soft_ce
from vqa.errors import UserError
from vqa.losses import LOSSES, get_loss

A = 40


def dense_target(batch, values):
    """The dense float64 [B, A] target a sparse [B, K] one stands for."""
    t = torch.zeros(batch.answer_idx.shape[0], A, dtype=torch.float64)
    return t.scatter_add_(1, batch.answer_idx, values.double())


def _hard_ce(x, batch):
    valid = batch.answer >= 0
    return F.cross_entropy(x[valid], batch.answer[valid])


def _soft_ce(x, batch):
    return -(dense_target(batch, batch.answer_weight) * torch.log_softmax(x, 1)).sum(1).mean()


def _kl(x, batch):
    w = dense_target(batch, batch.answer_weight)  # [B, A]
    logp = torch.log_softmax(x, 1)
    return (torch.where(w > 0, w * (w.clamp(min=1e-300).log() - logp), torch.zeros_like(w))).sum(1).mean()


def _bce(x, batch):
    s = dense_target(batch, batch.answer_score)  # [B, A]
    return F.binary_cross_entropy_with_logits(x, s, reduction="mean") * A


def _sampled_ce(x, batch):
    # The loss draws one answer per question with torch.multinomial over the [B', K] weights; from
    # the same RNG state this replays the draw, then scores it against a dense one-hot target.
    # (That the draws follow the counts is test_sampled_ce_draws_answers_in_proportion_to_counts.)
    valid = batch.answer_weight.sum(1) > 0  # [B]
    probs = batch.answer_weight.clone()
    probs[~valid, 0] = 1.0  # the loss draws slot 0 for a question without weights, then masks it out
    choice = torch.multinomial(probs, 1)[valid]  # [B', 1]
    target = torch.zeros(int(valid.sum()), A, dtype=torch.float64)
    target.scatter_(1, batch.answer_idx[valid].gather(1, choice), 1.0)  # [B', A] one-hot
    return -(target * torch.log_softmax(x[valid], 1)).sum(1).mean()


def _label_smoothing(x, batch, epsilon=0.1):
    # the smoothed one-hot target, dense: 1 - eps + eps / A on the most common answer, eps / A elsewhere
    valid = batch.answer >= 0
    target = torch.full((int(valid.sum()), A), epsilon / A, dtype=torch.float64)
    target.scatter_add_(
        1, batch.answer[valid, None], torch.full((int(valid.sum()), 1), 1 - epsilon, dtype=torch.float64)
    )
    return -(target * torch.log_softmax(x[valid], 1)).sum(1).mean()


# Every registered loss needs one: test_loss_and_gradient_match_dense_reference fails for a loss
# added to LOSSES without a dense float64 reference here.
REFERENCES = {"hard_ce": _hard_ce, "soft_ce": _soft_ce, "kl": _kl, "bce": _bce, "sampled_ce": _sampled_ce,
              "label_smoothing": _label_smoothing}  # fmt: skip


@pytest.fixture
def batch():
    b = random_batch(16, A, k=6, seed=3)
    # a question whose most common answer is outside the vocabulary (no hard target)
    return b._replace(answer=torch.where(torch.arange(16) == 5, -1, b.answer))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_and_gradient_match_dense_reference(name, batch):
    if name not in REFERENCES:
        pytest.fail(f"loss '{name}' has no dense reference; add one to REFERENCES in {__file__}")
    logits = torch.randn(16, A, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x1 = logits.clone().float().requires_grad_()
    x2 = logits.clone().requires_grad_()
    torch.manual_seed(0)  # the same draws for a stochastic loss and its reference
    loss = LOSSES[name](x1, batch)
    torch.manual_seed(0)
    ref = REFERENCES[name](x2, batch)
    loss.backward()
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5, rel=1e-6)
    torch.testing.assert_close(x1.grad.double(), x2.grad, atol=1e-6, rtol=1e-5)


def test_soft_ce_equals_hard_ce_for_a_unanimous_question():
    b = random_batch(4, A, k=3, seed=1)
    idx = b.answer_idx.clone()
    w = torch.zeros_like(b.answer_weight)
    w[:, 0] = 1.0  # all ten annotators gave answer idx[:, 0]
    b = b._replace(answer=idx[:, 0], answer_weight=w)
    logits = torch.randn(4, A)
    assert LOSSES["soft_ce"](logits, b).item() == pytest.approx(LOSSES["hard_ce"](logits, b).item(), abs=1e-6)


def test_soft_ce_weights_may_sum_below_one_and_scale_the_loss():
    b = random_batch(4, A, k=3, seed=2)
    logits = torch.randn(4, A)
    half = b._replace(answer_weight=b.answer_weight * 0.5)
    assert LOSSES["soft_ce"](logits, half).item() == pytest.approx(
        0.5 * LOSSES["soft_ce"](logits, b).item(), rel=1e-6
    )


def test_kl_has_the_gradient_of_soft_ce_and_is_zero_at_the_target():
    b = random_batch(8, A, k=4, seed=4)
    b = b._replace(answer_weight=b.answer_weight / b.answer_weight.sum(1, keepdim=True).clamp(min=1e-9))
    x1 = torch.randn(8, A, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    LOSSES["kl"](x1, b).backward()
    LOSSES["soft_ce"](x2, b).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    # logits equal to log w (and -inf elsewhere, approximated) give KL ~ 0
    target = torch.full((8, A), -30.0).scatter(1, b.answer_idx, b.answer_weight.clamp(min=1e-13).log())
    assert LOSSES["kl"](target, b).item() == pytest.approx(0.0, abs=1e-4)


def test_sparse_soft_ce_matches_the_benchmark_dense_reference():
    b = random_batch(32, 300, k=10, seed=5)
    logits = torch.randn(32, 300)
    assert LOSSES["soft_ce"](logits, b).item() == pytest.approx(dense_soft_ce(logits, b).item(), rel=1e-6)


def test_sampled_ce_draws_answers_in_proportion_to_counts():
    b = random_batch(1, A, k=2, seed=6)
    b = b._replace(answer_weight=torch.tensor([[0.7, 0.3]]))
    logits = torch.zeros(1, A, requires_grad=True)
    torch.manual_seed(0)
    picks = []
    for _ in range(2000):
        logits.grad = None
        LOSSES["sampled_ce"](logits, b).backward()
        picks.append(int(logits.grad[0].argmin()))  # the target gets the negative gradient
    share = sum(p == int(b.answer_idx[0, 0]) for p in picks) / len(picks)
    assert share == pytest.approx(0.7, abs=0.04)


def test_losses_run_in_fp32_under_bf16_logits():
    b = random_batch(8, A, seed=7)
    logits = torch.randn(8, A).bfloat16()
    for name, fn in LOSSES.items():
        assert fn(logits, b).dtype == torch.float32, name


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 0.9])
def test_get_loss_binds_train_label_smoothing(batch, epsilon):
    """get_loss gives the loop a loss_fn(logits, batch) with train.label_smoothing as its epsilon; at 0
    it is hard_ce."""
    logits = torch.randn(16, A, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    loss_fn = get_loss("label_smoothing", epsilon)
    assert loss_fn(logits.float(), batch).item() == pytest.approx(
        _label_smoothing(logits, batch, epsilon).item(), rel=1e-6
    )
    per = loss_fn(logits.float(), batch, reduction="none")
    assert per.shape == ((batch.answer >= 0).sum(),)
    if epsilon == 0.0:
        assert per.tolist() == pytest.approx(
            LOSSES["hard_ce"](logits.float(), batch, reduction="none").tolist()
        )
    assert get_loss("soft_ce", epsilon) is LOSSES["soft_ce"]  # the others take no setting


def test_unknown_loss_names_the_valid_ones():
    with pytest.raises(UserError, match="hard_ce.*soft_ce"):
        get_loss("softce")


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_reduction_none_gives_the_per_question_losses_of_the_mean(name, batch):
    logits = torch.randn(16, A)
    torch.manual_seed(0)
    mean = LOSSES[name](logits, batch)
    torch.manual_seed(0)
    per = LOSSES[name](logits, batch, reduction="none")
    hard_target = name in ("hard_ce", "label_smoothing")  # questions without a hard target are left out
    assert per.shape == ((batch.answer >= 0).sum(),) if hard_target else per.shape == (16,)
    assert per.mean().item() == pytest.approx(mean.item(), rel=1e-6)

"""The numbers a run reports, through the code training runs, against the reference or worked by hand.

- A real VQADataset (records interned from answer strings, a real HDF5 feature file) yields batches whose
  answer / answer_idx / answer_weight / answer_score and top counts equal tests/reference_eval.py's
  targets on the same strings, for both soft-target modes, and whose closed-form accuracy equals the
  literal official loop on the decoded predictions.
- `evaluate` (vqa/training/validation.py) on a hand-made loader, one question without a hard target: every
  loss, accuracy, per-type and per-bucket figure, ECE and entropy worked out by hand.
- Each loss's reduction: which questions a mean is over, by hand.

tests/mutants.py breaks these numbers on purpose (the score table, the loss averages, ...) and checks
that these tests notice.
"""

import math
import random
from collections import Counter

import h5py
import numpy as np
import pytest
import torch
from reference_eval import build_targets, gt_keys, official_scores_reference

from vqa.data.answers import AnswerVocab
from vqa.data.dataset import Batch, VQADataset
from vqa.data.features import FeatureStore
from vqa.data.sources.records import build_records
from vqa.data.text import QuestionVocab
from vqa.losses import LOSSES
from vqa.metrics import batch_accuracy
from vqa.training.validation import evaluate

POOL = [
    "yes",
    "Yes",
    "no",
    "two",
    "2",
    "the dog",
    "dog",
    "a dog",
    "x-ray",
    "x ray",
    "5.",
    "5",
    "red/white",
    " yes\n",
    "none",
    "0",
    "dont",
    "don't",
    "cat",
    "Cat",
]


def _questions(n: int, seed: int) -> tuple[list[list[str]], list[str]]:
    """n questions of 10 answers from a few POOL strings each, and the most common raw answer of each."""
    rng = random.Random(seed)
    answers = []
    for _ in range(n):
        candidates = rng.sample(POOL, rng.randint(1, 4))
        answers.append(rng.choices(candidates, [rng.random() + 0.05 for _ in candidates], k=10))
    return answers, [Counter(a).most_common(1)[0][0] for a in answers]


def _dataset(tmp_path, answers, best, vocab, oov="drop") -> VQADataset:
    n = len(answers)
    with h5py.File(tmp_path / "features.h5", "w") as f:  # one 1 x 1 grid per image
        f["features"] = np.random.default_rng(0).standard_normal((n, 4, 1, 1)).astype(np.float16)
        f["ids"] = np.arange(n)
    records = build_records(
        source="vqa2",
        split="val",
        rules="current",
        keyed_by="question_id",
        question_id=list(range(n)),
        image_key=list(range(n)),
        group=["val"] * n,
        question=["what is it"] * n,
        answers=answers,
        best=best,
        answer_type=["other"] * n,
        question_type=["what"] * n,
    )
    store = FeatureStore(tmp_path / "features.h5", "grid")
    qvocab = QuestionVocab.build(["what is it"])
    return VQADataset(records, store, qvocab, vocab, max_question_len=4, split="val", oov=oov)


@pytest.mark.parametrize("oov", ["drop", "renormalize"])
def test_dataset_batches_equal_the_reference_targets(tmp_path, oov):
    answers, best = _questions(300, seed=1)
    vocab = AnswerVocab.from_answers(Counter(best), max_answers=8)  # some answers outside it
    ds = _dataset(tmp_path, answers, best, vocab, oov)
    assert len(ds) == len(answers)
    batch = ds.__getitems__(list(range(len(ds))))
    for i, (a, b) in enumerate(zip(answers, best)):
        ref = build_targets(a, b, vocab.stoi, oov)
        m = len(ref.answer_idx)
        assert batch.answer[i].item() == ref.answer, i
        assert batch.answer_idx[i, :m].tolist() == ref.answer_idx, i
        np.testing.assert_array_equal(batch.answer_weight[i, :m].numpy(), np.float32(ref.answer_weight))
        np.testing.assert_allclose(batch.answer_score[i, :m].numpy(), ref.answer_score, rtol=1e-7)
        assert not batch.answer_weight[i, m:].any() and not batch.answer_score[i, m:].any()
        assert ds.top_count[i] == Counter(gt_keys(a)).most_common(1)[0][1]
    has_oov = [build_targets(a, b, vocab.stoi).oov_weight > 0 for a, b in zip(answers, best)]
    assert sum(has_oov) > 50 and (batch.answer < 0).sum() > 10  # not degenerate
    assert sorted(set(batch.answer_score[batch.answer_weight > 0].tolist())) == pytest.approx(
        [0.3, 0.6, 0.9, 1]
    )


def test_closed_form_accuracy_of_a_batch_equals_the_official_loop(tmp_path):
    answers, best = _questions(400, seed=2)
    vocab = AnswerVocab.from_answers(Counter(best), max_answers=12)
    batch = _dataset(tmp_path, answers, best, vocab).__getitems__(list(range(len(answers))))
    rng = random.Random(3)
    pred = torch.tensor(
        [a if a >= 0 and rng.random() < 0.5 else rng.randrange(len(vocab)) for a in batch.answer.tolist()]
    )
    closed = batch_accuracy(pred, batch.answer_idx, batch.answer_score).tolist()
    gts = {i: a for i, a in enumerate(answers)}
    exact = official_scores_reference(gts, {i: vocab.itos[p] for i, p in enumerate(pred.tolist())})
    assert closed == pytest.approx([exact[i] for i in range(len(answers))], abs=1e-6)
    assert sum(0 < s < 1 for s in closed) >= 20 and sum(s == 1 for s in closed) >= 20


class FixedLogits(torch.nn.Module):
    """Logits chosen per question: the first token of question i is i + 1."""

    def __init__(self, logits: list[list[float]]):
        super().__init__()
        self.table = torch.nn.Embedding.from_pretrained(torch.tensor([[0.0] * len(logits[0]), *logits]))

    def forward(self, question, question_len, image, image_mask):
        return self.table(question[:, 0])  # [B, A]


def _batch(rows: list[tuple[int, list[int], list[int]]], first_id: int) -> Batch:
    """A Batch of (hard answer, answer indices, counts of 10) rows, padded to K = 10 as the Dataset pads."""
    scores = [0.0, 0.3, 0.6, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    n = len(rows)
    idx, weight, score = torch.zeros(n, 10, dtype=torch.long), torch.zeros(n, 10), torch.zeros(n, 10)
    for b, (_, ids, counts) in enumerate(rows):
        idx[b, : len(ids)] = torch.tensor(ids)
        weight[b, : len(ids)] = torch.tensor([c / 10 for c in counts])
        score[b, : len(ids)] = torch.tensor([scores[c] for c in counts])
    qid = torch.arange(first_id, first_id + n)
    return Batch(
        question=(qid + 1)[:, None],
        question_len=torch.ones(n, dtype=torch.long),
        image=torch.zeros(n, 1, 2),
        image_mask=torch.ones(n, 1, dtype=torch.bool),
        answer=torch.tensor([r[0] for r in rows]),
        answer_idx=idx,
        answer_weight=weight,
        answer_score=score,
        question_id=qid,
        question_type=torch.full((n,), -1, dtype=torch.long),
    )


LOGITS = [[2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]]
# (hard answer, answer indices, counts): q0 7 x a0 + 3 x a1; q1 most common answer outside the vocabulary,
# 2 x a2 in it; q2 10 x a3; q3 5 x a1 + 4 x a0
ROWS = [(0, [0, 1], [7, 3]), (-1, [2], [2]), (3, [3], [10]), (1, [1, 0], [5, 4])]


def _lse(x: list[float]) -> float:
    return math.log(sum(math.exp(v) for v in x))


def test_evaluate_reports_the_hand_worked_numbers():
    loader = [_batch(ROWS[:3], 0), _batch(ROWS[3:], 3)]  # two batches: sums over the split
    types = {0: "yes/no", 1: "number", 2: "other", 3: "other"}
    agreement = {0: "7_9", 1: "le3", 2: "10", 3: "4_6"}
    out = evaluate(
        FixedLogits(LOGITS), LOSSES["hard_ce"], loader, torch.device("cpu"), types, agreement=agreement
    )
    ce = [_lse(x) - x[r[0]] for x, r in zip(LOGITS, ROWS) if r[0] >= 0]  # q0, q2, q3 (q1: no hard target)
    hard = sum(ce) / 3
    soft = sum(sum(c / 10 * (_lse(x) - x[i]) for i, c in zip(r[1], r[2])) for x, r in zip(LOGITS, ROWS)) / 4
    assert out["loss"] == pytest.approx(hard, rel=1e-6) and out["hard_ce"] == pytest.approx(hard, rel=1e-6)
    assert out["soft_ce"] == pytest.approx(soft, rel=1e-6)
    # predictions a0, a2, a0, a1: scores 1 (7 of 10), .6 (2), 0 (a3 given), 1 (5)
    assert out["predictions"] == {0: 0, 1: 2, 2: 0, 3: 1}
    assert out["accuracy"] == 65.0  # 100 * 2.6 / 4
    assert (out["accuracy_yes_no"], out["accuracy_number"], out["accuracy_other"]) == (100.0, 60.0, 50.0)
    assert (out["accuracy_agree_10"], out["accuracy_agree_7_9"]) == (0.0, 100.0)
    assert (out["accuracy_agree_4_6"], out["accuracy_agree_le3"]) == (100.0, 60.0)
    p = [[math.exp(v - _lse(x)) for v in x] for x in LOGITS]
    confidence, accuracy = [max(q) for q in p], [1.0, 0.6, 0.0, 1.0]
    bins: dict[int, list[int]] = {}
    for i, c in enumerate(confidence):
        bins.setdefault(min(int(c * 15), 14), []).append(i)
    ece = sum(len(m) / 4 * abs(sum(accuracy[i] - confidence[i] for i in m) / len(m)) for m in bins.values())
    assert out["ece"] == pytest.approx(ece, rel=1e-6)
    assert out["entropy"] == pytest.approx(sum(-sum(v * math.log(v) for v in q) for q in p) / 4, rel=1e-6)


def test_evaluate_averages_each_loss_over_its_own_questions():
    """The run's loss is averaged over the questions that carry its target: soft_ce over all four,
    hard_ce over the three with a hard target, whatever the batches."""
    one = [_batch(ROWS, 0)]
    two = [_batch(ROWS[:1], 0), _batch(ROWS[1:2], 1), _batch(ROWS[2:], 2)]
    for loader in (one, two):
        out = evaluate(
            FixedLogits(LOGITS),
            LOSSES["soft_ce"],
            loader,
            torch.device("cpu"),
            dict.fromkeys(range(4), "other"),
        )
        ce = [_lse(x) - x[r[0]] for x, r in zip(LOGITS, ROWS) if r[0] >= 0]
        assert out["hard_ce"] == pytest.approx(sum(ce) / 3, rel=1e-6)
        assert out["loss"] == out["soft_ce"]


def _hand_batch() -> tuple[torch.Tensor, Batch]:
    """Four questions over A = 4 answers: q1 without a hard target, q3 without any in-vocabulary answer."""
    rows = [(0, [0, 1], [7, 3]), (-1, [2], [2]), (3, [3], [10]), (-1, [], [])]
    logits = torch.tensor(LOGITS)
    return logits, _batch(rows, 0)


def _bce(x: list[float], ids: list[int], scores: list[float]) -> float:
    softplus = sum(math.log1p(math.exp(v)) for v in x)
    return softplus - sum(s * x[i] for i, s in zip(ids, scores))


@pytest.mark.parametrize("name", ["hard_ce", "label_smoothing", "soft_ce", "kl", "bce", "sampled_ce"])
def test_each_loss_averages_over_the_right_questions(name):
    logits, batch = _hand_batch()
    x = logits.tolist()
    lse = [_lse(v) for v in x]
    weights = {0: {0: 0.7, 1: 0.3}, 1: {2: 0.2}, 2: {3: 1.0}, 3: {}}
    scores = {0: [1.0, 0.9], 1: [0.6], 2: [1.0], 3: []}
    hard = {0: 0, 2: 3}  # the questions with a hard target
    per = {
        "hard_ce": {q: lse[q] - x[q][c] for q, c in hard.items()},
        "label_smoothing": {
            q: 0.9 * (lse[q] - x[q][c]) + 0.1 * (lse[q] - sum(x[q]) / 4) for q, c in hard.items()
        },
        "soft_ce": {q: sum(w * (lse[q] - x[q][i]) for i, w in weights[q].items()) for q in range(4)},
        "kl": {q: sum(w * (math.log(w) - x[q][i] + lse[q]) for i, w in weights[q].items()) for q in range(4)},
        "bce": {q: _bce(x[q], list(weights[q]), scores[q]) for q in range(4)},
        # one answer drawn per question in proportion to the weights; q3 has none and is left out
        "sampled_ce": None,
    }[name]
    loss = LOSSES[name]
    if name == "sampled_ce":  # deterministic where a question has one answer: q1, q2
        single = batch._replace(
            answer_weight=torch.where(torch.arange(4)[:, None] == 0, 0.0, batch.answer_weight)
        )
        expected = {1: lse[1] - x[1][2], 2: lse[2] - x[2][3]}
        assert loss(logits, single).item() == pytest.approx(sum(expected.values()) / 2, rel=1e-6)
        assert loss(logits, single, reduction="none").tolist() == pytest.approx(
            list(expected.values()), rel=1e-6
        )
        return
    assert loss(logits, batch).item() == pytest.approx(sum(per.values()) / len(per), rel=1e-6)
    assert loss(logits, batch, reduction="none").tolist() == pytest.approx(list(per.values()), rel=1e-6)

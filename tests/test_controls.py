"""The controls for soft cross-entropy: shuffled soft targets (data.soft_target=shuffled) and label smoothing
(train.loss=label_smoothing, train.label_smoothing), and the per-question top count behind the agreement
buckets (vqa/agreement.py)."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from helpers import collate
from reference_eval import gt_keys

from vqa.cli import main
from vqa.config import load_config
from vqa.data.build import build_datasets
from vqa.data.shuffled import shuffle_soft_targets, type_preserving_permutation
from vqa.data.sources.vqa2 import VQA2
from vqa.errors import UserError
from vqa.losses import LOSSES

CONFIG = "configs/synthetic/avg_soft.yaml"


def test_permutation_stays_within_answer_types_and_is_fixed_for_a_seed():
    # answers 0-1 are the most common answer of yes/no questions (type code 0), 2-5 of number
    # questions (1), 6-10 of other questions (2); answer 5 tops two number questions and one other
    # question, so it is a number answer; answer 11 is no question's most common answer; the hard
    # answer -1 (outside the vocabulary) is ignored
    answer = np.array([0, 1, 1, 2, 3, 4, 5, 5, 5, 6, 7, 8, 9, 10, -1])
    answer_type = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 1])
    mapping, group = type_preserving_permutation(answer, answer_type, 12, seed=0)
    assert group.tolist() == [1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4]
    assert sorted(mapping.tolist()) == list(range(12))  # a permutation
    assert (group[mapping] == group).all()  # within answer types
    assert mapping[0] == 1 and mapping[1] == 0  # yes <-> no: every answer of a group moves
    assert (mapping[:11] != np.arange(11)).all() and mapping[11] == 11  # a group of one stays
    again, _ = type_preserving_permutation(answer, answer_type, 12, seed=0)
    assert again.tolist() == mapping.tolist()  # fixed for a seed
    others = {tuple(type_preserving_permutation(answer, answer_type, 12, seed=s)[0]) for s in range(1, 6)}
    assert len(others - {tuple(mapping)}) >= 1  # and another seed draws another


@pytest.fixture(scope="module")
def data(tiny_data):
    return build_datasets(load_config(CONFIG, [f"data.root={tiny_data}", "data.features=boxes"]))


def test_shuffled_targets_keep_each_questions_weight_profile(data, tiny_data):
    train = data.train
    before = [train[i] for i in range(len(train))]
    idx0, answer0 = train.answer_idx.copy(), train.answer.copy()
    line = shuffle_soft_targets(train, len(data.avocab), seed=0)
    assert "soft targets shuffled" in line and "yes/no 2" in line
    mapping, group = type_preserving_permutation(answer0, train.records.answer_type, len(data.avocab), 0)
    filled = train.answer_count > 0  # [Q, K]; padding keeps index 0
    assert (train.answer_idx[filled] == mapping[idx0[filled]]).all() and (
        train.answer_idx[~filled] == 0
    ).all()
    assert (group[train.answer_idx[filled]] == group[idx0[filled]]).all()  # within answer types
    assert (train.answer == answer0).all()  # the hard target stays human
    assert (train.answer_idx[filled] != idx0[filled]).mean() > 0.9  # nearly every answer moved
    yes, no = data.avocab.index("yes"), data.avocab.index("no")
    assert mapping[yes] == no and mapping[no] == yes
    # the batch: each question's (sorted) weights and scores unchanged, on other answers
    old, new = collate(before[:64]), collate([train[i] for i in range(64)])
    for field in ("answer_weight", "answer_score"):
        torch.testing.assert_close(getattr(new, field).sort(1).values, getattr(old, field).sort(1).values)
    assert (new.answer == old.answer).all() and not (new.answer_idx == old.answer_idx).all()
    # soft_ce on the shuffled batch is the dense soft cross-entropy against the shuffled targets
    logits = torch.randn(
        64, len(data.avocab), dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    dense = torch.zeros_like(logits).scatter_add_(1, new.answer_idx, new.answer_weight.double())
    reference = -(dense * torch.log_softmax(logits, 1)).sum(1).mean()
    assert LOSSES["soft_ce"](logits.float(), new).item() == pytest.approx(reference.item(), rel=1e-6)
    # the same seed on freshly built data gives the same targets
    fresh = build_datasets(load_config(CONFIG, [f"data.root={tiny_data}", "data.features=boxes"])).train
    shuffle_soft_targets(fresh, len(data.avocab), seed=0)
    assert (fresh.answer_idx == train.answer_idx).all()


def test_dataset_top_count_counts_every_answer_as_the_evaluator_keys_them(data, tiny_data):
    """The top count the training loop buckets by: the most common of all ten answers (those outside the
    vocabulary too), keyed as the evaluator keys them (the reference's gt_keys)."""
    val = data.val
    expected = {
        r.question_id: Counter(gt_keys(r.answers)).most_common(1)[0][1]
        for r in VQA2.load(tiny_data, "val2014")
    }
    assert val.top_count.tolist() == [expected[q] for q in val.question_id.tolist()]
    in_vocab_top = val.answer_count.max(1)
    assert (val.top_count >= in_vocab_top).all()


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.soft_target=random", "data.soft_target.*human, shuffled"),
        ("train.label_smoothing=1.0", "train.label_smoothing.*in \\[0, 1\\)"),
        ("train.label_smoothing=-0.1", "train.label_smoothing"),
    ],
)
def test_control_settings_are_validated(override, message):
    with pytest.raises(UserError, match=message):
        load_config(CONFIG, [override])


def test_a_shuffled_label_smoothing_run_logs_the_agreement_buckets(tiny_data, tmp_path, capsys):
    """Both controls train end to end; every epoch logs val/accuracy_agree_* (null for an empty bucket)."""
    code = main(["train", "--config", CONFIG, f"data.root={tiny_data}", f"out_dir={tmp_path}", "name=control",
                 "train.epochs=1", "train.batch_size=32", "data.features=boxes", "model.embed_dim=8",
                 "model.rnn_dim=16", "model.hidden_dim=16", "data.soft_target=shuffled",
                 "train.loss=label_smoothing", "train.label_smoothing=0.05"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "soft targets shuffled" in out
    assert all("accuracy_agree" not in line for line in out.splitlines() if line.startswith("epoch"))
    (metrics,) = [
        json.loads(line) for line in (tmp_path / "control" / "metrics.jsonl").read_text().splitlines()
    ]
    values = [metrics[f"val/accuracy_agree_{name}"] for name in ("10", "7_9", "4_6", "le3")]
    assert all(v is None or 0 <= v <= 100 for v in values) and any(v is not None for v in values)

"""The data layer on real files: official JSON, HDF5 features, vocabularies, Dataset and collate."""

import json
import shutil
from collections import Counter

import h5py
import numpy as np
import pytest
import torch
from helpers import collate

from vqa.data.answers import AnswerVocab
from vqa.data.dataset import VQADataset
from vqa.data.features import FeatureStore
from vqa.data.sources.vqa2 import VQA2
from vqa.data.text import QuestionVocab, tokenize
from vqa.errors import UserError

Q = "v2_OpenEnded_mscoco_{split}_questions.json"


def vocab_of(records, max_answers: int) -> AnswerVocab:
    """The answer vocabulary of records, as build_datasets makes it."""
    return AnswerVocab.from_answers(Counter(r.multiple_choice_answer for r in records), max_answers)


def test_tokenize_and_vocab():
    assert tokenize("What color is the man's shirt?") == ["what", "color", "is", "the", "man's", "shirt"]
    vocab = QuestionVocab.build(["is there a cube?", "is there a ball?", "how many?"], min_count=2)
    assert vocab.itos == ["<pad>", "<unk>", "a", "is", "there"]
    ids, n, truncated = vocab.encode("is there a red cube?", max_len=4)
    assert ids.tolist() == [3, 4, 2, 1] and n == 4 and truncated
    assert QuestionVocab.from_dict(vocab.to_dict()).itos == vocab.itos


def test_load_splits(tiny_data):
    train = VQA2.load(tiny_data, "train2014")
    assert all(len(r.answers) == 10 and r.answer_type in ("yes/no", "number", "other") for r in train)
    assert all(r.question_id // 1000 == r.image_id for r in train)
    assert train.groups == ("train2014",) and train.annotated
    test = VQA2.load(tiny_data, "test-dev2015")
    assert len(test) and not test.annotated and all(r.answers == [] for r in test)
    assert test.groups == ("test2015",)  # test-dev images live in test2015's feature file


def test_grid_and_boxes_stores(tiny_data):
    with h5py.File(tiny_data / "features_train2014.h5") as f:
        ids = f["ids"][()]
        grid = f["grid"][()]
        pos = f["pos_boxes"][()]
        boxes = f["image_features"][()]
    grid_store = FeatureStore(tiny_data / "features_train2014.h5", "grid")
    image_id = int(ids[3])
    x = grid_store.get(image_id)  # [S*S, D]
    S = grid.shape[2]
    assert x.shape == (S * S, grid.shape[1]) and x.dtype == np.float16  # as stored: Batch.to converts
    # cell (r, c) of the channel-first grid is row r*S + c of the flattened vectors
    np.testing.assert_array_equal(x[1 * S + 2], grid[3, :, 1, 2])
    rows = np.empty((4, S * S, grid.shape[1]), grid_store.dtype)
    grid_store.read_padded(np.array([5, 3, 5, 0]), rows, np.arange(4))  # one sorted read, in the asked order
    for r, got in zip((5, 3, 5, 0), rows):
        np.testing.assert_array_equal(got, grid_store.get_row(r))
    box_store = FeatureStore(tiny_data / "features_train2014.h5", "boxes", preload="ram")
    b = box_store.get(image_id)
    np.testing.assert_array_equal(b, boxes[pos[3, 0] : pos[3, 1]])
    assert box_store.max_regions == int((pos[:, 1] - pos[:, 0]).max())


def test_public_grid_layout_and_fixed_boxes(tmp_path):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "resnet.h5", "w") as f:
        f["features"] = rng.standard_normal((3, 8, 2, 2)).astype(np.float16)
        f["ids"] = np.array([9, 4, 7])
        f["image_features"] = rng.standard_normal((3, 5, 6)).astype(np.float16)
    store = FeatureStore(tmp_path / "resnet.h5", "grid")
    assert store.key == "features" and store.dim == 8 and store.get(4).shape == (4, 8)
    boxes = FeatureStore(tmp_path / "resnet.h5", "boxes")
    assert boxes.max_regions == 5 and boxes.get(7).shape == (5, 6)


def test_dataset_targets_and_collate(tiny_data):
    train = VQA2.load(tiny_data, "train2014")
    qv = QuestionVocab.build(r.question for r in train)
    av = vocab_of(train, max_answers=5)  # force answers outside the vocabulary
    store = FeatureStore(tiny_data / "features_train2014.h5", "boxes")
    ds = VQADataset(train, store, qv, av, max_question_len=6, split="train2014", drop_hard_oov=True)
    rep = ds.report
    assert rep.hard_answer_oov > 0 and rep.dropped_hard_oov == rep.hard_answer_oov
    assert rep.kept == rep.questions - rep.dropped_hard_oov == len(ds)
    assert 0 < rep.target_weight_lost < 1
    assert (ds.answer >= 0).all() and (ds.answer < len(av)).all()
    assert "left out of training" in rep.lines()[0]
    batch = collate([ds[i] for i in range(8)])
    assert batch.question.shape == (8, 6) and batch.question.dtype == torch.long
    assert batch.image.shape[0] == 8 and batch.image_mask.shape == batch.image.shape[:2]
    n_boxes = [ds[i][2].shape[0] for i in range(8)]
    assert batch.image_mask.sum(1).tolist() == n_boxes
    assert batch.image[~batch.image_mask].abs().sum() == 0  # padding is zero
    assert batch.answer_idx.shape == (8, 10) and (batch.answer_weight.sum(1) <= 1 + 1e-6).all()
    # padded answer slots carry no weight and no score
    assert (batch.answer_weight[batch.answer_score == 0] == 0).all()


def test_missing_features_name_the_image(tiny_data, tmp_path):
    train = VQA2.load(tiny_data, "train2014")
    with h5py.File(tiny_data / "features_train2014.h5") as src, h5py.File(tmp_path / "f.h5", "w") as dst:
        dst["ids"] = src["ids"][1:]
        dst["grid"] = src["grid"][1:]
        dropped = int(src["ids"][0])
    store = FeatureStore(tmp_path / "f.h5", "grid")
    qv, av = QuestionVocab.build([]), vocab_of(train, 10)
    with pytest.raises(UserError, match=f"image {dropped} of question .* has no features"):
        VQADataset(train, store, qv, av, 10, split="train2014")


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p: p.write_text("{not json"), r"is not valid JSON \(.* at line 1"),
        (lambda p: p.write_text(json.dumps({"questions": []})), "has no questions"),
        (lambda p: p.write_text(json.dumps({"question": []})), "no list under key 'questions'"),
        (lambda p: p.unlink(), "questions file .* not found"),
        (
            lambda p: p.write_text(
                json.dumps({"questions": [{"question_id": "1", "image_id": 1, "question": "?"}]})
            ),
            "entry 0 has no valid 'question_id'",
        ),
    ],
)
def test_bad_json_is_one_clear_error(tiny_data, tmp_path, mutate, match):
    root = tmp_path / "copy"
    shutil.copytree(tiny_data, root, ignore=shutil.ignore_patterns("*.h5"))
    path = root / Q.format(split="val2014")
    mutate(path)
    with pytest.raises(UserError, match=match) as e:
        VQA2.load(root, "val2014")
    assert "\n" not in str(e.value) and str(path) in str(e.value)

"""The input pipeline: resumable sharded sampling, image-grouped batches, workers, RAM preload."""

from collections import Counter

import numpy as np
import pytest
import torch

from vqa.data.answers import AnswerVocab
from vqa.data.dataset import EpochSampler, ShardSampler, VQADataset, build_loader
from vqa.data.features import FeatureStore
from vqa.data.sources.vqa2 import VQA2
from vqa.data.text import QuestionVocab


@pytest.fixture(scope="module")
def dataset(tiny_data):
    records = VQA2.load(tiny_data, "val2014")
    qv = QuestionVocab.build(r.question for r in records)
    av = AnswerVocab.from_answers(Counter(r.multiple_choice_answer for r in records), 100)
    store = FeatureStore(tiny_data / "features_val2014.h5", "boxes")
    return VQADataset(records, store, qv, av, 14, split="val2014")


def test_epoch_order_depends_only_on_seed_and_epoch_and_can_resume(dataset):
    s = EpochSampler(dataset, seed=3)
    s.set_epoch(2)
    order = list(s)
    assert sorted(order) == list(range(len(dataset)))
    s.set_epoch(1)
    assert list(s) != order
    s.set_epoch(2)
    s.start = 40
    assert list(s) == order[40:] and len(s) == len(dataset) - 40


def test_shards_cover_the_data(dataset):
    n = len(dataset)
    ranks = [EpochSampler(dataset, num_replicas=3, rank=r, seed=0) for r in range(3)]
    seen = [i for s in ranks for i in s]
    assert set(seen) == set(range(n)) and len(seen) == 3 * ((n + 2) // 3)  # padded like DistributedSampler
    shards = [list(ShardSampler(n, 3, r)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(n))  # evaluation: every question exactly once


def test_image_grouped_order_keeps_the_questions_of_an_image_together(dataset):
    s = EpochSampler(dataset, seed=0, group_by_image=True)
    order = list(s)
    assert sorted(order) == list(range(len(dataset)))
    images = dataset.image_id[order]
    changes = int((images[1:] != images[:-1]).sum())
    assert changes == len(set(images.tolist())) - 1  # each image appears as one run
    s.set_epoch(1)
    assert list(s) != order  # images are reshuffled every epoch


def test_a_batch_reads_each_image_once_in_one_sorted_read(dataset, monkeypatch):
    """__getitems__ asks each store for the batch's distinct rows once, sorted (one h5py call for a
    grid file), and every item gets its own image's features."""
    calls = []
    store = dataset.features.stores[0]
    real = store.get_rows
    monkeypatch.setattr(store, "get_rows", lambda rows: calls.append(rows.tolist()) or real(rows))
    order = list(EpochSampler(dataset, seed=0, group_by_image=True))[:32]
    items = dataset.__getitems__(order)
    images = sorted(set(dataset.image[order].tolist()))
    assert len(calls) == 1 and calls[0] == sorted(calls[0]) and len(calls[0]) == len(images) < 32
    for i, item in zip(order, items):
        np.testing.assert_array_equal(item[2], dataset.features.get(int(dataset.image[i])))


def test_workers_and_ram_preload_give_the_same_batches(dataset, tiny_data):
    def batches(ds, workers):
        sampler = EpochSampler(ds, seed=0, group_by_image=True)
        return list(build_loader(ds, 16, sampler, num_workers=workers))

    plain = batches(dataset, 0)
    assert dataset.features.stores[0]._ram is None  # bounded memory by default: nothing read up front
    for a, b in zip(plain, batches(dataset, 2)):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    ram = FeatureStore(tiny_data / "features_val2014.h5", "boxes", preload="ram")
    assert ram._ram is not None and ram._file is None
    image_id, image = int(dataset.image_id[5]), int(dataset.image[5])  # COCO id, row of the split's images
    np.testing.assert_array_equal(ram.get(image_id), dataset.features.get(image))

"""The input pipeline: resumable sharded sampling, image-grouped batches, workers, RAM preload."""

import itertools
import os
from collections import Counter

import numpy as np
import pytest
import torch
from helpers import collate

from vqa.data.answers import AnswerVocab
from vqa.data.dataset import VQADataset
from vqa.data.features import FeatureStore
from vqa.data.feed import build_loader
from vqa.data.loader import EpochSampler, ShardSampler
from vqa.data.sources.vqa2 import VQA2
from vqa.data.text import QuestionVocab


def _val_dataset(root, kind: str, oov: str = "drop") -> VQADataset:
    """The val2014 split of a synthetic folder over its `kind` features (grid or boxes)."""
    records = VQA2.load(root, "val2014")
    qv = QuestionVocab.build(r.question for r in records)
    av = AnswerVocab.from_answers(Counter(r.multiple_choice_answer for r in records), 100)
    store = FeatureStore(root / "features_val2014.h5", kind)
    return VQADataset(records, store, qv, av, 14, split="val2014", oov=oov)


@pytest.fixture(scope="module")
def dataset(tiny_data):
    return _val_dataset(tiny_data, "boxes")


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


@pytest.fixture(scope="module")
def grid_dataset(tiny_data):
    return _val_dataset(tiny_data, "grid")


@pytest.mark.parametrize("oov", ["drop", "renormalize"])
@pytest.mark.parametrize("kind", ["boxes", "grid"])
def test_a_batch_equals_the_collated_items(kind, oov, tiny_data):
    """__getitems__ builds the Batch by array indexing; it equals `collate` of __getitem__'s items for both
    feature kinds, and with renormalized soft-target weights."""
    ds = _val_dataset(tiny_data, kind, oov)
    order = list(EpochSampler(ds, seed=1))[:40]
    batch, single = ds.__getitems__(order), collate([ds[i] for i in order])
    for name, x, y in zip(batch._fields, batch, single):
        assert x.dtype == y.dtype and torch.equal(x, y), name
    if oov == "renormalize":  # weights of a question with an answer in the vocabulary sum to 1
        kept = batch.answer_weight[batch.answer_weight.sum(1) > 0].sum(1)
        assert torch.allclose(kept, torch.ones_like(kept)) and len(kept) > 0


@pytest.mark.parametrize("kind", ["boxes", "grid"])
def test_a_batch_is_one_gather_per_store_and_equals_the_h5py_reads(kind, dataset, grid_dataset, monkeypatch):
    """__getitems__ asks each store once for the batch's rows (one gather from the file's memory map,
    straight into the batch), and every question of the batch gets its own image's features, as
    __getitem__ gives them through h5py ([regions, D]; a grid batch arrives transposed and Batch.to makes
    it contiguous float32)."""
    ds = dataset if kind == "boxes" else grid_dataset
    calls = []
    store = ds.features.stores[0]
    name = "read_padded" if kind == "boxes" else "read_grid"
    real = getattr(store, name)
    monkeypatch.setattr(store, name, lambda rows, *a: calls.append(rows.tolist()) or real(rows, *a))
    order = list(EpochSampler(ds, seed=0, group_by_image=True))[:32]
    batch = ds.__getitems__(order)
    images = sorted(set(ds.image[order].tolist()))
    assert store._span is not None and len(images) < 32  # contiguous: the memory map; repeated images
    # one call for the batch's rows (read straight into it, repeats included)
    assert len(calls) == 1 and sorted(set(calls[0])) == sorted(ds.features.row[images].tolist())
    moved = batch.to(torch.device("cpu"))
    assert moved.image.dtype == torch.float32 and moved.image.is_contiguous()
    for b, i in enumerate(order):
        want = ds.features.get(int(ds.image[i]))  # [regions, D]
        n = want.shape[0]
        np.testing.assert_array_equal(batch.image[b, :n].numpy(), want)
        np.testing.assert_array_equal(moved.image[b, :n].numpy(), want.astype(np.float32))
        assert batch.image_mask[b, :n].all() and not batch.image_mask[b, n:].any()
    single = collate([ds[i] for i in order])  # the item path gives the same batch
    assert all(torch.equal(x, y) for x, y in zip(batch, single))


def test_grid_batches_from_chunked_compressed_files_equal_the_memory_map(grid_dataset, tmp_path):
    """A chunked, compressed grid (no file offsets) is read through h5py and gives the same batches as
    the memory map of a contiguous file; a contiguous file cut short, even after it was mapped, is one
    clear error."""
    import h5py

    from vqa.errors import UserError

    src = grid_dataset.features.stores[0]
    assert src._span is not None  # the synthetic files are contiguous: the memory-map path
    chunked = tmp_path / "chunked.h5"
    with h5py.File(src.path, "r") as f, h5py.File(chunked, "w") as g:
        for k in f:
            g.create_dataset(k, data=f[k][()], chunks=True if f[k].ndim == 4 else None,
                             compression="gzip" if f[k].ndim == 4 else None)  # fmt: skip
    other = FeatureStore(chunked, "grid")
    assert other._span is None
    rows = np.array([5, 1, 5, 3, 0])
    a = np.empty((len(rows), src.dim, src.max_regions), src.dtype)
    b = np.empty_like(a)
    src.read_grid(rows, a, np.arange(len(rows)))
    other.read_grid(rows, b, np.arange(len(rows)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[2], src.get_row(5).T)
    cut = tmp_path / "cut.h5"
    data = src.path.read_bytes()
    cut.write_bytes(data)
    truncated = FeatureStore(cut, "grid")
    last = len(truncated.index) - 1
    truncated.read_grid(np.array([0, last]), a[:2], np.arange(2))  # mapped into memory
    np.testing.assert_array_equal(a[1], src.get_row(last).T)
    with open(cut, "r+b") as f:  # the last row cut short after the file was mapped
        f.truncate(truncated._span[0] + truncated._span[1] * last + 10)
    for row in (last, 0):  # one error (a read of the map past the end would be a SIGBUS), any row
        with pytest.raises(UserError, match=f"row {last} of 'grid' is cut short"):
            truncated.read_grid(np.array([row]), a[:1], np.arange(1))


def test_grid_batches_from_workers_equal_the_main_process(grid_dataset):
    """A grid batch stacked in a worker's shared memory arrives equal to one built in the process."""
    sampler = EpochSampler(grid_dataset, seed=0)
    plain = list(build_loader(grid_dataset, 16, sampler, num_workers=0))
    workers = list(build_loader(grid_dataset, 16, sampler, num_workers=2))
    assert len(plain) == len(workers) > 1
    for a, b in zip(plain, workers):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


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
    assert ram._ram is not None and not ram._handles  # no h5py handle opened
    image_id, image = int(dataset.image_id[5]), int(dataset.image[5])  # COCO id, row of the split's images
    np.testing.assert_array_equal(ram.get(image_id), dataset.features.get(image))


def test_the_loader_hints_each_batch_once_a_batch_ahead_and_keeps_the_order(grid_dataset, monkeypatch):
    """ReadAhead tells the dataset about every batch once (the kernel starts reading its rows): the first
    before it is read, each next one before the current one is read; the batches are the sampler's."""
    events = []
    monkeypatch.setattr(grid_dataset, "will_need", lambda indices: events.append(("hint", list(indices))))
    sampler = EpochSampler(grid_dataset, seed=0)
    order = list(sampler)
    expected = [order[i : i + 16] for i in range(0, len(order), 16)]
    for b in build_loader(grid_dataset, 16, sampler):
        events.append(("batch", b.question_id.tolist()))
    batches = [grid_dataset.question_id[ix].tolist() for ix in expected]
    assert len(expected) > 2
    want = [("hint", expected[0])]
    for k in range(len(expected)):
        want += [("hint", expected[k + 1])] if k + 1 < len(expected) else []
        want.append(("batch", batches[k]))
    assert events == want


def test_paired_rates_charge_each_batch_its_own_fetch_and_step(monkeypatch):
    """The pipeline benchmark's paired design (vqa.bench.pipeline.paired_rates) on a fake clock: a disk
    fetch costs 3, a step 10 (the in-memory batch's fetch nothing), so disk runs at 1/13 of a batch's
    samples per tick and memory at 1/10; an off-by-one pairing would charge the fetch to the memory step."""
    from types import SimpleNamespace

    from vqa.bench import pipeline

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(pipeline, "time", SimpleNamespace(perf_counter=lambda: clock.now))

    class Steps:  # vqa.training.timing.Steps' run: train on `count` batches, one step each
        def run(self, batches, count):
            for _ in itertools.islice(batches, count):
                clock.now += 10.0  # one step
            return count

    batch = SimpleNamespace(question=torch.zeros(4, 3))

    def disk():
        while True:
            clock.now += 3.0  # one fetch
            yield batch

    d, m = pipeline.paired_rates(Steps(), disk(), [batch] * 5)
    assert d == pytest.approx(4 / 13) and m == pytest.approx(4 / 10)


def test_batch_buffers_and_the_ram_array_start_on_a_page(grid_dataset):
    """Rows copied between a memory map (page-aligned file offsets), shared memory and these buffers stay
    on cache lines only when the buffers start on a page (malloc's own start is 16 bytes past one)."""
    import mmap

    from vqa.data.buffers import allocate

    for n in (1, 100, 10 << 20):
        assert allocate(n).data_ptr() % mmap.PAGESIZE == 0 and allocate(n).numel() == n
    ram = FeatureStore(grid_dataset.features.stores[0].path, "grid", preload="ram")
    assert ram._ram.ctypes.data % mmap.PAGESIZE == 0
    np.testing.assert_array_equal(ram.get_row(3), grid_dataset.features.stores[0].get_row(3))


def test_a_bad_row_found_in_a_worker_is_still_one_line(tiny_data, tmp_path):
    """A UserError raised in a DataLoader worker comes back as torch re-raises it (its report and the
    worker's traceback as the message); the message is the worker's one line again. Here a grid file cut
    short while the workers read it."""
    import shutil

    from torch._utils import ExceptionWrapper

    from vqa.errors import UserError, os_error_line

    def from_a_worker(error: Exception) -> Exception:
        """`error` as the main process gets it when a DataLoader worker raised it (torch's own reraise)."""
        try:
            raise error
        except type(error):
            wrapped = ExceptionWrapper(where="in DataLoader worker process 1")
        with pytest.raises(type(error)) as caught:
            wrapped.reraise()
        return caught.value

    line = "x.h5: row 3 of 'grid' is cut short; the file is truncated"
    assert str(from_a_worker(UserError(line))) == line
    # an OSError from a worker (h5py's read errors are OSErrors) is one line too
    failed = from_a_worker(OSError("Can't read data (file read failed)"))
    assert os_error_line(failed) == "a file: Can't read data (file read failed); check the path"

    root = tmp_path / "copy"
    root.mkdir()
    for name in ("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json"):
        shutil.copy(tiny_data / name, root / name)
    shutil.copy(tiny_data / "features_val2014.h5", root / "features_val2014.h5")
    ds = _val_dataset(root, "grid")
    store = ds.features.stores[0]
    loader = build_loader(ds, 16, EpochSampler(ds, seed=0), num_workers=1)
    with open(store.path, "r+b") as f:
        f.truncate(store._span[0] + store._span[1] * 5)
    with pytest.raises(UserError) as caught:
        list(loader)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{store.path}: row 5 of 'grid' is cut short: the file is ")


def test_a_feature_file_changed_under_the_run_is_one_error_never_zeros_or_another_file(tiny_data, tmp_path):
    """Boxes go through HDF5, which reads past a file's end as zeros: a file cut short after the store
    opened it is refused instead. A file replaced at its path (by rename) keeps being read by the handles
    already open (the old file, whole); a process that opens its own handles then (a new worker) refuses
    it instead of reading another file."""
    import shutil

    from vqa.errors import UserError

    path = tmp_path / "features.h5"
    shutil.copy(tiny_data / "features_val2014.h5", path)
    boxes = FeatureStore(path, "boxes")
    rows = np.arange(4)
    n = int(boxes.regions(rows).max())
    first = np.empty((len(rows), n, boxes.dim), boxes.dtype)
    boxes.read_padded(rows, first, rows)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    again = np.empty_like(first)
    with pytest.raises(
        UserError, match=f"the file is {size - 1000:,} bytes, {size:,} when the run opened it"
    ):
        boxes.read_padded(rows, again, rows)

    shutil.copy(tiny_data / "features_val2014.h5", path)
    grid = FeatureStore(path, "grid")
    a = np.empty((2, grid.dim, grid.max_regions), grid.dtype)
    grid.read_grid(np.array([0, 1]), a, np.arange(2))
    other = tmp_path / "other.h5"
    shutil.copy(tiny_data / "features_train2014.h5", other)
    other.replace(path)  # an atomic rewrite, as vqa's writers do
    b = np.empty_like(a)
    grid.read_grid(np.array([0, 1]), b, np.arange(2))  # the open map still reads the old file
    np.testing.assert_array_equal(a, b)
    grid._handles = {}  # as a worker that opens its own handles now
    with pytest.raises(UserError, match="replaced by another file since the run opened it"):
        grid.read_grid(np.array([0, 1]), b, np.arange(2))


def test_box_batches_from_a_chunked_compressed_file_equal_the_memory_map(dataset, tmp_path, monkeypatch):
    """Boxes stored contiguously (ours) are gathered from the file's memory map; a chunked, compressed
    box file is read through h5py, row by row. Both give the same padded batch, zeros past each image's
    boxes, and the hints cover each image's own box rows."""
    import h5py

    src = dataset.features.stores[0]
    assert src._span is not None and src.pos_boxes is not None
    chunked = tmp_path / "chunked.h5"
    with h5py.File(src.path, "r") as f, h5py.File(chunked, "w") as g:
        for k in f:
            big = k == "image_features"
            g.create_dataset(
                k, data=f[k][()], chunks=True if big else None, compression="gzip" if big else None
            )
    other = FeatureStore(chunked, "boxes")
    assert other._span is None
    rows = np.array([5, 1, 5, 3, 0])
    n = int(src.regions(rows).max())
    a = np.full((len(rows), n, src.dim), np.nan, src.dtype)
    b = np.full_like(a, np.nan)
    src.read_padded(rows, a, np.arange(len(rows)))
    other.read_padded(rows, b, np.arange(len(rows)))
    np.testing.assert_array_equal(a, b)
    for i, r in enumerate(rows.tolist()):
        k = len(src.get_row(r))
        np.testing.assert_array_equal(a[i, :k], src.get_row(r))
        assert not a[i, k:].any()
    hinted = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, start, length, advice: hinted.append((start, length)))
    src.will_need(rows)
    offset, row_bytes = src._span
    want = [(offset + int(s) * row_bytes, int(e - s) * row_bytes) for s, e in src.pos_boxes[np.unique(rows)]]
    assert hinted == [w for w in want if w[1]]


def test_the_pipeline_probe_script_runs():
    """scripts/pipeline_probe.py, behind docs/performance.md's figures the benchmark does not print,
    imports and runs (its cheapest probe; the others read the `paper` preset)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "pipeline_probe.py"
    out = subprocess.run(
        [sys.executable, str(script), "dataloader"], capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("DataLoader ") and " us a batch" in line for line in lines)

"""Reused batch buffers and the device feed: the same batches as the plain path for every preload mode and
worker count, across epochs and a resume; the ring's lifetime; preload checks (non-finite values, fit)."""

import json
import os
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from vqa.cli import main
from vqa.data.answers import AnswerVocab
from vqa.data.buffers import Layout, Ring
from vqa.data.dataset import VQADataset
from vqa.data.features import FeatureStore
from vqa.data.feed import RESERVE, DeviceFeatures, build_loader
from vqa.data.loader import HOLD, PREFETCH, EpochSampler, RingLoader
from vqa.data.sources.vqa2 import VQA2
from vqa.data.text import QuestionVocab
from vqa.errors import UserError

CPU = torch.device("cpu")


def _dataset(root, kind: str, preload: str, path=None) -> VQADataset:
    records = VQA2.load(root, "val2014")
    qv = QuestionVocab.build(r.question for r in records)
    av = AnswerVocab.from_answers(Counter(r.multiple_choice_answer for r in records), 100)
    store = FeatureStore(path or root / "features_val2014.h5", kind, preload)
    return VQADataset(records, store, qv, av, 14, split="val2014")


def _assert_same(a, b, what):
    for name, x, y in zip(a._fields, a, b):
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), (what, name)
        assert x.device == y.device, (what, name)


@pytest.mark.parametrize("kind", ["grid", "boxes"])
def test_device_feed_gives_the_plain_batches_for_every_preload_and_worker_count(kind, tiny_data):
    """build_loader(device=cpu) (RingLoader + DeviceFeed, or the device gather for preload: device) gives
    exactly the plain DataLoader's batches moved by Batch.to, for 0, 1 and 2 workers, over two epochs and
    a resumed epoch, with the random and the image-grouped sampler."""
    for preload in ("none", "ram", "device"):
        ds = _dataset(tiny_data, kind, preload)
        for grouped, workers in ((False, (0, 1, 2)), (True, (0, 2))):
            sampler = EpochSampler(ds, seed=2, group_by_image=grouped)
            feeds = {w: build_loader(ds, 40, sampler, num_workers=w, device=CPU) for w in workers}
            for epoch, start in ((0, 0), (1, 0), (1, 40 * 3)):  # the last: resumed after 3 batches
                sampler.set_epoch(epoch)
                sampler.start = start
                plain = [b.to(CPU) for b in build_loader(ds, 40, sampler)]
                assert len(plain) > 3
                for w, feed in feeds.items():
                    got = list(feed)  # kept: a DeviceFeed's batches are the consumer's
                    assert len(got) == len(plain) == len(feed)
                    for a, b in zip(plain, got):
                        _assert_same(a, b, (preload, grouped, w, epoch, start))
                        assert b.image.dtype == torch.float32 and b.image.is_contiguous()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_ring_slot_stays_valid_while_the_next_batch_is_taken(workers, grid_loader_data):
    """A RingLoader's batch is still intact when HOLD more have been taken (the contract DeviceFeed relies
    on), every batch equals the fresh one, and the ring has PREFETCH + 1 + HOLD slots per worker."""
    ds = grid_loader_data
    sampler = EpochSampler(ds, seed=0)
    plain = list(build_loader(ds, 16, sampler))
    ring = RingLoader(ds, 16, sampler, num_workers=workers)
    for _ in range(2):  # a second epoch reuses the same slots
        held = []
        for i, host in enumerate(ring):
            _assert_same(plain[i], host.batch, i)
            held.append((i, host.batch))
            if len(held) > HOLD + 1:
                held.pop(0)
            for j, batch in held:  # the batches taken HOLD or fewer steps ago are untouched
                _assert_same(plain[j], batch, (i, j))
        assert i + 1 == len(plain)
    slots = ring.fill.ring.buffers
    assert len(slots) == max(1, workers)
    assert all(len(s) == (PREFETCH if workers else 0) + 1 + HOLD for s in slots)
    assert all(b.is_shared() == (workers > 0) for s in slots for b in s)


@pytest.fixture(scope="module")
def grid_loader_data(tiny_data):
    return _dataset(tiny_data, "grid", "none")


def test_preloaded_features_with_a_nan_are_refused_naming_file_row_and_image(tiny_data, tmp_path):
    """data.preload: ram / device checks every value at load: a NaN or an infinity is one line naming the
    file, the row, the image and what to do; the default (no preload) reads on demand and does not."""
    src = tiny_data / "features_val2014.h5"
    bad = tmp_path / "bad.h5"
    bad.write_bytes(src.read_bytes())
    with h5py.File(bad, "r+") as f:
        ids = f["ids"][()]
        grid = f["grid"]
        grid[7, 3, 1, 1] = np.inf
        start, end = f["pos_boxes"][4]
        boxes = f["image_features"]
        boxes[start + 1, 2] = np.nan  # a box of image row 4
    for preload in ("ram", "device"):
        with pytest.raises(UserError) as e:
            FeatureStore(bad, "grid", preload)
        msg = str(e.value)
        assert str(bad) in msg and "'grid' row 7" in msg and f"image {ids[7]}" in msg and "regenerate" in msg
        assert "\n" not in msg
    with pytest.raises(UserError, match=rf"'image_features' row {start + 1} \(image {ids[4]}\)"):
        FeatureStore(bad, "boxes", "ram")
    assert FeatureStore(bad, "grid").get_row(0).shape  # no preload: no check at open


def test_device_preload_refuses_features_that_do_not_fit_naming_the_sizes(tiny_data):
    """The fit check runs on the device's free memory (injected here; CUDA's mem_get_info by default):
    too little is one line with the sizes and the setting to use; enough puts the arrays there once."""
    ds = _dataset(tiny_data, "boxes", "device")
    store = ds.features.stores[0]
    meta = torch.device("meta")
    need = store.device_bytes(meta)
    assert need == store._ram.nbytes > 0
    with pytest.raises(UserError) as e:
        DeviceFeatures(ds.features, meta, free_bytes=lambda d: need + RESERVE - 1)
    msg = str(e.value)
    assert f"needs {need / 2**30:.2f} GiB on meta" in msg and "data.preload: ram" in msg
    assert str(store.path) in msg and "\n" not in msg
    held = DeviceFeatures(ds.features, meta, free_bytes=lambda d: need + RESERVE)
    assert held.tensors[0].device == meta and store.device_bytes(meta) == 0  # there once, shared
    # on the CPU the features are the RAM array itself: nothing copied, nothing to check
    assert store.device_bytes(CPU) == 0
    assert (
        DeviceFeatures(ds.features, CPU, free_bytes=lambda d: 0).tensors[0].data_ptr()
        == store._ram.ctypes.data
    )


@pytest.mark.slow
def test_training_with_every_preload_and_workers_gives_the_same_run(tiny_data, tmp_path):
    """`vqa train` through the device feed: preload none in the process, ram with two workers and device
    with one worker train to identical metrics."""
    runs = {}
    for name, extra in (("none", []), ("ram", ["data.preload=ram", "data.num_workers=2"]),
                        ("device", ["data.preload=device", "data.num_workers=1"])):  # fmt: skip
        args = [f"data.root={tiny_data}", f"out_dir={tmp_path}", f"name={name}", "train.epochs=1",
                "train.batch_size=64", "model.rnn_dim=32", "model.hidden_dim=32", *extra]  # fmt: skip
        assert main(["train", "--config", "configs/synthetic/avg_soft.yaml", *args]) == 0
        runs[name] = json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("train/loss", "val/loss", "val/accuracy"):
        assert runs["none"][key] == runs["ram"][key] == runs["device"][key], key


def test_gpu_check_runs_its_epoch_per_preload_step_dry_on_the_cpu(tmp_path):
    """scripts/gpu_check.sh is valid bash, and with DRY=1 its Python step 4 (one epoch per preload against
    the model-only rate) runs on the CPU and writes its summary under $OUT only."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    out = tmp_path / "out"
    env = {**os.environ, "DRY": "1", "PY": sys.executable, "OUT": str(out), "FEED_BATCHES": "4"}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = (out / "summary.txt").read_text()
    assert "DRY=1" in summary and "DRY RUN on the CPU" in summary
    for model in ("pool grid on cpu", "updn boxes on cpu"):
        assert model in summary
    assert summary.count("of the model-only rate") == 6  # two models x three preload modes


def _resident_kib() -> int:
    """This process's resident memory (pages it has mapped), KiB, from /proc/self/smaps_rollup."""
    rss = [
        line for line in Path("/proc/self/smaps_rollup").read_text().splitlines() if line.startswith("Rss:")
    ]
    return int(rss[0].split()[1])


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux's smaps_rollup")
def test_a_forked_worker_maps_its_whole_ring_when_it_faults_it_in():
    """A worker after fork maps a shared buffer's pages only on its first write to each: Ring.fault_in (the
    RingLoader's worker_init_fn) maps every slot before the first batch, so no batch pays for it."""
    layout = Layout(batch=16, length=14, answers=10, regions=196, dim=512, dtype="float16", grid=True)
    ring = Ring(layout, producers=1, slots=3, shared=True)
    need_kib = ring.nbytes // 1024
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        before = _resident_kib()
        ring.fault_in(0)
        os.write(write, f"{before} {_resident_kib()}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    before, after = map(int, os.read(read, 100).split())
    assert after - before >= 0.95 * need_kib, (before, after, need_kib)


def test_a_ring_slots_views_are_made_once_and_are_the_slots_own_memory():
    """Ring.views keeps each (producer, slot, size, regions) view set: the same tensors each time, views of
    that slot's buffer (what a batch writes there is what the views read), another size its own set."""
    layout = Layout(batch=4, length=3, answers=10, regions=5, dim=2, dtype="float16", grid=False)
    ring = Ring(layout, producers=2, slots=2, shared=False)
    first = ring.views(1, 0, 4, 5)
    assert ring.views(1, 0, 4, 5) is first
    assert ring.views(1, 0, 3, 5) is not first and ring.views(0, 0, 4, 5) is not first
    buffer = ring.buffers[1][0]
    for name, view in first.items():
        start = view.untyped_storage().data_ptr()
        assert start == buffer.untyped_storage().data_ptr(), name
    first["image"][2, 4, 1] = 7.0
    assert ring.views(1, 0, 3, 5)["image"][2, 4, 1] == 7.0  # the same bytes, a smaller batch's view
    assert [ring.take(1), ring.take(1), ring.take(1)] == [0, 1, 0]

"""Probes behind the pipeline figures of docs/performance.md that `vqa bench` does not print: where a disk
batch's host time goes inside the training loop, the cost of a misaligned gather, fusing the gather into
the float32 conversion, and the DataLoader's own bookkeeping. One-off measurements, not targets.

    .venv/bin/python scripts/pipeline_probe.py {fetch,align,fuse,dataloader}

`fetch` and `fuse` read the synthetic `paper` preset (generated on first use, as `vqa bench` does).
"""

from __future__ import annotations

import argparse
import itertools
import mmap
import time
import warnings

import numpy as np
import torch

from vqa.bench.pipeline import synthetic_config
from vqa.data.buffers import page_aligned
from vqa.data.build import build_datasets, ensure_synthetic
from vqa.data.feed import build_loader
from vqa.data.loader import EpochSampler, FillDataset
from vqa.models import build_model
from vqa.training.timing import Steps


def _ms(xs) -> str:
    x = np.asarray(xs) * 1e3
    return f"median {np.median(x):.2f} mean {x.mean():.2f} p90 {np.percentile(x, 90):.2f} ms"


def _paper():
    cfg = synthetic_config("avg", "paper", "data.sampler=random")
    ensure_synthetic(cfg)
    return cfg, build_datasets(cfg)


def fetch(rounds: int = 6, pairs: int = 30) -> None:
    """Inside a paired training stream (as `vqa bench --only pipeline`): the disk fetch's parts against
    the in-memory batch's step, AVG on `paper`, 0 workers, the CPU."""
    cfg, data = _paper()
    torch.manual_seed(0)
    model = build_model(cfg.model, len(data.qvocab), len(data.avocab), data.image_dim)
    steps = Steps(cfg, model, torch.device("cpu"))
    sampler = EpochSampler(data.train, shuffle=True, seed=0)
    feed = build_loader(data.train, cfg.train.batch_size, sampler, 0, device=torch.device("cpu"))
    plain = build_loader(data.train, cfg.train.batch_size, sampler)
    parts = {"fill the slot": [], "hints": [], "move": []}

    def timed(name, fn):
        def wrapper(*a):
            start = time.perf_counter()
            out = fn(*a)
            parts[name].append(time.perf_counter() - start)
            return out

        return wrapper

    feed.move = timed("move", feed.move)
    data.train.will_need = timed("hints", data.train.will_need)
    fill = FillDataset.__getitems__
    FillDataset.__getitems__ = lambda self, ix: timed("fill the slot", lambda: fill(self, ix))()
    disk_fetch, disk_step, memory_step = [], [], []
    for r in range(rounds):
        sampler.set_epoch(r)
        cached = list(itertools.islice(iter(plain), 2 + pairs))[2:]
        sampler.set_epoch(r)
        it = iter(feed)
        steps.run(it, 2)
        marks = []

        def alternate(it=it, cached=cached, marks=marks):
            for m in cached:
                start = time.perf_counter()
                d = next(it)
                marks.append(("disk", start, time.perf_counter()))
                yield d
                marks.append(("memory", time.perf_counter(), None))
                yield m
            marks.append(("end", time.perf_counter(), None))
            yield m

        steps.run(alternate(), 2 * len(cached) + 1)
        for (kind, start, fetched), (_, nxt, _) in itertools.pairwise(marks):
            if kind == "disk":
                disk_fetch.append(fetched - start)
                disk_step.append(nxt - fetched)
            else:
                memory_step.append(nxt - start)
    FillDataset.__getitems__ = fill
    print(f"AVG, paper, {rounds} rounds of {pairs} pairs")
    print(f"disk fetch          {_ms(disk_fetch)}")
    for name, xs in parts.items():
        print(f"  {name:17s} {_ms(xs)}")
    print(f"disk step           {_ms(disk_step)}")
    print(f"memory step         {_ms(memory_step)} (its conversion to float32 included)")
    ratio = (np.sum(memory_step) / len(memory_step)) / (
        (np.sum(disk_fetch) + np.sum(disk_step)) / len(disk_step)
    )
    print(f"memory / disk time per batch: {ratio:.3f}")


def _median_rate(fn, rows_of, n: int = 200) -> float:
    times = []
    for k in range(n):
        rows = rows_of(k)
        start = time.perf_counter()
        fn(rows)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def align(repeats: int = 15) -> None:
    """np.take of 64 real-size grid rows (802,816 bytes each) between a source and a destination that
    start on a page or 16 bytes past one (malloc's start), interleaved; samples/s, median of `repeats`."""
    row, count, page = 802_816, 600, mmap.PAGESIZE

    def array(nbytes: int, offset: int) -> np.ndarray:
        raw = np.empty(nbytes + 2 * page, np.uint8)
        start = -raw.ctypes.data % page + offset
        return raw[start : start + nbytes]

    src = {o: array(count * row, o).reshape(count, row) for o in (0, 16)}
    dst = {o: array(64 * row, o).reshape(64, row) for o in (0, 16)}
    for a in (*src.values(), *dst.values()):
        a[:] = 1
    rng, rates = np.random.default_rng(0), {}
    for _ in range(repeats):
        for s, d in itertools.product((0, 16), (0, 16)):
            rows = rng.integers(0, count, 64)
            start = time.perf_counter()
            np.take(src[s], rows, axis=0, out=dst[d], mode="clip")
            rates.setdefault((s, d), []).append(64 / (time.perf_counter() - start))
    for (s, d), v in rates.items():
        print(f"source +{s:2d}, destination +{d:2d} bytes past a page: {np.median(v):,.0f} samples/s")


def fuse() -> None:
    """One `paper` grid batch (64 rows) to float32 [B, N, D]: the gather into a reused float16 slot then
    the transposing conversion (as shipped), a per-row transposing copy_, and index_select then convert."""
    _, data = _paper()
    store = data.train.features.stores[0]
    src = store._in_memory()  # the memory map
    n, d = src.shape[0], src.shape[1]
    flat = src.reshape(n, d, -1)
    cells = flat.shape[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that the map is read-only; nothing writes to it
        t = torch.from_numpy(flat)
    slot = page_aligned(64 * d * cells * 2).view(np.float16).reshape(64, d, cells)  # as a ring slot
    rng = np.random.default_rng(0)

    def shipped(rows):
        np.take(flat, rows, axis=0, out=slot[: len(rows)], mode="clip")
        return (
            torch.from_numpy(slot[: len(rows)])
            .transpose(1, 2)
            .to(torch.float32, memory_format=torch.contiguous_format)
        )

    def per_row(rows):
        out = torch.empty((len(rows), cells, d), dtype=torch.float32)
        for b, r in enumerate(rows.tolist()):
            out[b].copy_(t[r].T)
        return out

    def select(rows):
        part = t.index_select(0, torch.from_numpy(rows)).transpose(1, 2)
        return part.to(torch.float32, memory_format=torch.contiguous_format)

    rows = np.array([3, 5, 7])
    assert torch.equal(shipped(rows)[:3], per_row(rows)) and torch.equal(per_row(rows), select(rows))
    for _ in range(3):
        cols = [f"{name} {_median_rate(fn, lambda k: rng.integers(0, n, 64)):.2f} ms" for name, fn in
                (("gather + convert (shipped)", shipped), ("per-row copy_", per_row), ("index_select + convert", select))]  # fmt: skip
        print(", ".join(cols))


def dataloader() -> None:
    """A torch DataLoader's own cost per batch at 0 workers (its dataset's __getitems__ does nothing),
    against calling __getitems__ straight from the batch sampler."""

    class Nothing(torch.utils.data.Dataset):
        def __len__(self):
            return 100_000

        def __getitems__(self, indices):
            return indices

    batches = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(range(100_000)), 64, False)
    loader = torch.utils.data.DataLoader(Nothing(), batch_sampler=batches, collate_fn=lambda x: x)
    for _ in range(3):
        through, direct = iter(loader), map(Nothing().__getitems__, batches)
        a = _median_rate(lambda _, it=through: next(it), lambda k: None, 1000)
        b = _median_rate(lambda _, it=direct: next(it), lambda k: None, 1000)
        print(f"DataLoader {a * 1e3:.1f} us a batch, batch sampler + __getitems__ {b * 1e3:.1f} us")


if __name__ == "__main__":
    probes = {"fetch": fetch, "align": align, "fuse": fuse, "dataloader": dataloader}
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("probe", choices=probes)
    probes[parser.parse_args().probe]()

"""Timers and memory probes shared by the benchmarks. Peak memory two ways:
- `peak_bytes`: the tensor storage one call creates on its device (LiveTensorBytes on the CPU, the
  allocator's counters on CUDA), exact and deterministic, to compare two functions in one process;
- `measure_steps` in a fresh process (`run_isolated`): the growth of the high-water RSS, FFT and BLAS
  buffers included, which no tensor counter sees (the models, MCB, the data pipeline).
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn: Callable[[], object], warmup: int, repeats: int, device: torch.device) -> float:
    """Median seconds of `repeats` calls after `warmup` untimed ones, each timed to the end of its kernels."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def time_it(
    fn: Callable[[], object], repeats: int, warmup: int = 2, device: torch.device | str = "cpu"
) -> float:
    """Median seconds per call over `repeats` calls, after `warmup` calls.

    `device`: where fn's tensors live; on CUDA each call is timed to the end of its kernels
    (kernels run asynchronously: without the synchronization only their launch is timed).
    """
    return _median_seconds(fn, warmup, repeats, torch.device(device))


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of live tensor storage created by the ops run inside it, on any device: every op
    (backward ops of CPU tensors included) passes through __torch_dispatch__; each new storage is counted
    once and uncounted when freed. Deterministic, unlike process RSS."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self.devices: set[str] = set()  # device types of the storages counted
        self._live: dict[int, weakref.finalize] = {}

    def _free(self, key: int, nbytes: int) -> None:
        if self._live.pop(key, None) is not None:
            self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key, nbytes = storage.data_ptr(), storage.nbytes()
                if nbytes and key not in self._live:
                    self.devices.add(t.device.type)
                    self._live[key] = weakref.finalize(storage, self._free, key, nbytes)
                    self.current += nbytes
                    self.peak = max(self.peak, self.current)
        return out


def peak_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Peak bytes of tensors allocated during one call of `fn` (above what was live before) on `device`,
    where fn's tensors live: that GPU's allocator counters on CUDA, LiveTensorBytes on the CPU. Tensors
    found elsewhere (a CUDA peak of 0, a CPU trace of other devices) raise rather than mislead."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        if peak == 0:
            raise ValueError(
                f"peak_bytes: nothing was allocated on {device}; pass the device fn's tensors live on"
            )
        return peak
    with LiveTensorBytes() as tracker:
        fn()
    if tracker.devices - {device.type}:
        raise ValueError(
            f"peak_bytes: fn made tensors on {', '.join(sorted(tracker.devices))}, measured on {device}; "
            "pass the device fn's tensors live on"
        )
    return tracker.peak


def peak_rss_mib() -> float:
    """This process's peak resident set in MiB: VmHWM on Linux, not ru_maxrss, which survives fork + exec
    (a worker spawned by a large parent would start at the parent's peak)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def measure_steps(step: Callable[[], object], steps: int, device: torch.device | str) -> tuple[float, float]:
    """(median seconds per step, peak MiB during the steps) after one warm-up step: CUDA's
    `max_memory_allocated` over the steps, or the growth of the CPU high-water RSS. Meaningful only in a
    fresh process (`run_isolated`): an earlier measurement's peak would hide this one's."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = peak_rss_mib()
    seconds = _median_seconds(step, 1, steps, device)  # the first step warms up allocator and kernels
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if cuda else peak_rss_mib() - base
    return seconds, peak


def run_isolated(fn: Callable, *args):
    """fn(*args) in a fresh spawned process, so its peak memory is its own; returns its result.

    `fn` must be a module-level function (spawn pickles it by name) and its result picklable.
    """
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def default_device() -> str:
    """The device the benchmarks measure on: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"

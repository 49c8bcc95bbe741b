"""`vqa extract`: a folder of COCO images (or VizWiz's) -> HDF5 grid features, the paper's image input.

The paper's features (Ilievski & Feng 2017, section 4, as pytorch-vqa's preprocess-images.py
computes them): ResNet-152 with ImageNet weights, the output of the last convolutional block
(layer4, before the average pool) on a 448 x 448 crop normalized with the ImageNet mean and std,
so 2048 x 14 x 14 per image (S = size / 32), stored float16. `--pooled` stores the global average
pool instead, as a 1 x 1 grid: the AVG model's "penultimate-layer" vector (its mean over the
14 x 14 grid is the same vector, so the full grid serves AVG too).

Written by vqa/features/writer.py (names and dtypes: vqa/data/features.py; data/README.md), with the
settings as file attributes; a folder of images without COCO ids (VizWiz) is keyed by file name.
Extracting train2014 takes hours and must survive a kill at any moment: the work goes to OUT.partial,
each batch committed by an fsync'd `count` (GridRowWriter), the same command continues after row
`count`, and OUT.partial is renamed to OUT once every image is done.

On a GPU the main thread only feeds the device: pinned batches go over by non-blocking copies, the
trunk runs channels-last under bf16 autocast with cuDNN autotuning, and the rows come back by a
non-blocking copy that a writer thread waits for, writes and fsyncs (RowWriterThread).
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import h5py
import numpy as np

from vqa.data.features import IDS, NAMES
from vqa.errors import UserError
from vqa.features.images import ImageFiles, build_trunk, check_arch, default_workers, list_images, normalize
from vqa.features.writer import (
    GridRowWriter,
    RowWriterThread,
    create_grid_file,
    finish_grid_file,
    human_bytes,
)

SETTINGS = ("arch", "size", "weights", "central_fraction", "pooled")


def _names_of(path: Path) -> list[str] | None:
    with h5py.File(path, "r") as f:
        return list(f[NAMES].asstr()[()]) if NAMES in f else None


def _check_settings(path: Path, attrs: dict, what: str) -> None:
    with h5py.File(path, "r") as f:
        old = {k: f.attrs.get(k) for k in SETTINGS}
    old = {k: v.item() if isinstance(v, np.generic) else v for k, v in old.items()}  # np.int64(448) -> 448
    diff = [f"{k}={old[k]!r} (now {attrs[k]!r})" for k in SETTINGS if old[k] != attrs[k]]
    if diff:
        raise UserError(
            f"{path}: {what} with other settings: {', '.join(diff)}; pass --overwrite to start over"
        )


def _check_resume(
    out: Path, partial: Path, attrs: dict, images: Path, files: list, names, overwrite: bool
) -> bool:
    """Whether there is work to do (False: `out` holds every image already); refuses an `out` or an
    OUT.partial made with other settings or from other images. --overwrite starts over."""
    if overwrite:
        partial.unlink(missing_ok=True)
        return True
    if not out.exists():
        if partial.exists():
            _check_settings(partial, attrs, "an interrupted extraction was started")
            if _names_of(partial) != names:  # the keys index the names as they were when it began
                raise UserError(
                    f"{partial}: {images} holds other images than when this extraction began; pass --overwrite to start over"
                )
        return True
    _check_settings(out, attrs, "already extracted")
    with h5py.File(out, "r") as f:
        have = set(f[IDS][()].tolist())
    stored = _names_of(out)
    if (stored is None) != (names is None):
        keyed = "by file name" if stored else "by COCO id"
        raise UserError(
            f"{out}: holds images keyed {keyed}, unlike {images}; pass --overwrite to extract again"
        )
    if stored is not None:
        have = {stored[i] for i in have}
        files = [(p.name, p) for _, p in files]
    missing = [p for i, p in files if i not in have]
    if missing:
        raise UserError(
            f"{out}: already exists without {len(missing):,} images of {images} (first: {missing[0].name}); "
            "pass --overwrite to extract again"
        )
    return False


class _Trunk:
    """The trunk on its device: channels-last, bf16 autocast on CUDA; `grid` turns a batch into rows."""

    def __init__(self, arch: str, weights: str, seed: int, device: str, size: int, pooled: bool):
        import torch

        from vqa.device import resolve_device

        self.trunk, self.dim = build_trunk(arch, weights, seed)
        self.dev, self.pooled = resolve_device(device, "--device"), pooled
        self.cuda = self.dev.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # one input size all run long: let cuDNN pick its kernels
        self.trunk.to(self.dev, memory_format=torch.channels_last)  # NHWC: what tensor-core convolutions read
        self.precision = torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else nullcontext()
        with torch.inference_mode(), self.precision:
            side = self.trunk(torch.zeros(1, 3, size, size, device=self.dev)).shape[-1]
        self.side = 1 if pooled else side

    def grid(self, x, keep):
        """(float16 rows [k, D, S, S] of the readable images `keep` of uint8 x [b, 3, size, size], the
        CUDA event of their non-blocking copy back to the host or None on the CPU)."""
        import torch

        x = x.to(self.dev, non_blocking=True)  # straight from the pinned batch: no host copy
        if len(keep) < len(x):  # rare: drop unreadable images on the device
            x = x.index_select(0, keep.to(self.dev, non_blocking=True))
        x = normalize(x.contiguous(memory_format=torch.channels_last))
        with self.precision:
            grid = self.trunk(x)  # [b, D, S, S]
        grid = grid.float().mean((2, 3), keepdim=True) if self.pooled else grid  # [b, D, 1, 1]
        grid = grid.half().contiguous()  # the stored layout, NCHW
        if not self.cuda:
            return grid, None
        grid = grid.to("cpu", non_blocking=True)  # to pinned memory without waiting: the writer waits
        copied = torch.cuda.Event()
        copied.record()
        return grid, copied


def _open_partial(partial: Path, out: Path, files: list, names, model: _Trunk, attrs: dict, images: Path):
    """(the GridRowWriter of `partial`, created at full size when missing, the (key, path) still to do)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if not partial.exists():
        need = len(files) * model.dim * model.side * model.side * 2
        free = shutil.disk_usage(out.parent).free
        if need > free:
            print(f"warning: {out} needs {human_bytes(need)}, {human_bytes(free)} free", file=sys.stderr)
        create_grid_file(partial, len(files), model.dim, model.side, attrs, names)
    writer = GridRowWriter(partial)
    todo = [(i, p) for i, p in files if i not in writer.done]
    if writer.count + len(todo) > writer.capacity:
        writer.close()
        raise UserError(
            f"{partial}: {images} holds images added after this extraction began; pass --overwrite to start over"
        )
    return writer, todo


def _write_all(
    loader, model: _Trunk, todo: list, writer: GridRowWriter, partial: Path, images: Path
) -> list[str]:
    """Every batch of `loader` through the trunk into `writer` (on its thread); the unreadable images."""
    import torch
    from tqdm import tqdm

    failed: list[str] = []
    bar = tqdm(total=len(todo), unit="img", desc=f"extract {images.name}", dynamic_ncols=True, disable=None)
    rows = RowWriterThread(writer, partial)
    try:
        with torch.inference_mode():
            for x, index, errors in loader:  # x: uint8 [b, 3, size, size], pinned on CUDA
                for i, e in zip(index.tolist(), errors):
                    if e:
                        failed.append(str(todo[i][1]))
                        tqdm.write(f"error: unreadable image {todo[i][1]} ({e}); skipped", file=sys.stderr)
                keep = torch.tensor([i for i, e in enumerate(errors) if not e], dtype=torch.long)
                if len(keep):
                    grid, copied = model.grid(x, keep)
                    rows.put(np.asarray([todo[i][0] for i in index[keep].tolist()], np.int64), grid, copied)
                bar.update(len(errors))
        rows.close()
    except KeyboardInterrupt:
        rows.stop()  # the batches computed are committed; the count below includes them
        print(
            f"extract: stopped after {writer.count:,} images; run the same command to continue",
            file=sys.stderr,
        )
        raise
    finally:
        rows.stop()
        bar.close()
        writer.close()
    return failed


def extract(
    images: Path,
    out: Path,
    arch: str = "resnet152",
    size: int = 448,
    weights: str = "imagenet",
    pooled: bool = False,
    central_fraction: float = 0.875,
    batch_size: int = 64,
    workers: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
    seed: int = 0,
) -> dict:
    """Extract features of every image in `images` into `out` (resuming OUT.partial); returns a summary.

    `workers`: decoding processes (default: every usable core, default_workers())."""
    from torch.utils.data import DataLoader

    workers = default_workers() if workers is None else workers
    if size < 32 or batch_size < 1 or workers < 0 or not 0 < central_fraction <= 1:
        raise UserError(
            "--size must be >= 32, --batch-size >= 1, --workers >= 0, --central-fraction in (0, 1]"
        )
    check_arch(arch)  # before --overwrite deletes anything
    images, out = Path(images), Path(out)
    partial = out.with_name(out.name + ".partial")
    weights_tag = weights if weights in ("imagenet", "none") else f"file:{Path(weights).name}"
    attrs = dict(arch=arch, size=size, weights=weights_tag, central_fraction=central_fraction, pooled=pooled)
    files, names = list_images(images)
    if not _check_resume(out, partial, attrs, images, files, names, overwrite):
        print(f"extract: {out} already holds all {len(files):,} images of {images}; nothing to do")
        return {"images": 0, "failed": [], "out": out}
    model = _Trunk(arch, weights, seed, device, size, pooled)
    writer, todo = _open_partial(partial, out, files, names, model, attrs, images)
    print(
        f"extract: {len(todo):,} of {len(files):,} images of {images} to do -> {partial.name}; "
        f"{arch} ({weights_tag}) at {size}x{size} -> {'pooled ' if pooled else ''}grid {model.dim}x{model.side}"
        f"x{model.side} float16; device {model.dev}, batch {batch_size}, {workers} workers"
    )
    decoded = ImageFiles([p for _, p in todo], size, central_fraction)
    # pin_memory: page-locked batches, so the copy to the GPU runs asynchronously
    loader = DataLoader(decoded, batch_size=batch_size, num_workers=workers, pin_memory=model.cuda)
    start = time.perf_counter()
    failed = _write_all(loader, model, todo, writer, partial, images)
    return _finish(partial, out, writer, len(todo), failed, time.perf_counter() - start, images)


def _finish(partial: Path, out: Path, writer, todo: int, failed: list, seconds: float, images: Path) -> dict:
    """Refuse a run with unreadable images (the rows stay in `partial`), else move `partial` to `out`."""
    if failed:
        raise UserError(
            f"{len(failed):,} unreadable images in {images} (listed above; first: {Path(failed[0]).name}); "
            f"replace or delete them, then run the same command again: the {writer.count:,} images "
            f"extracted are kept in {partial}"
        )
    finish_grid_file(partial, out, writer.count, writer.capacity)
    done = todo - len(failed)
    print(
        f"extract: {done:,} images in {seconds:.1f}s ({done / max(seconds, 1e-9):.1f} img/s); "
        f"{out} holds {writer.count:,} images, {human_bytes(out.stat().st_size)}"
    )
    return {"images": done, "failed": failed, "out": out}


def extract_command(args: argparse.Namespace) -> int:
    extract(**{name: getattr(args, name) for name in inspect.signature(extract).parameters})
    return 0

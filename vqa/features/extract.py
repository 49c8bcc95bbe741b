"""`vqa extract`: a folder of COCO images (or VizWiz's) -> HDF5 grid features, the paper's image input.

The paper's features (Ilievski & Feng 2017, section 4, as pytorch-vqa's preprocess-images.py
computes them): ResNet-152 with ImageNet weights, the output of the last convolutional block
(layer4, before the average pool) on a 448 x 448 crop normalized with the ImageNet mean and std,
so 2048 x 14 x 14 per image (S = size / 32), stored float16. `--pooled` stores the global average
pool instead, as a 1 x 1 grid: the AVG model's "penultimate-layer" vector (its mean over the
14 x 14 grid is the same vector, so the full grid serves AVG too).

Layout written (vqa/features/writer.py; vqa/data/features.py reads it, data/README.md documents it):
    ids    int64   (N,)           COCO image ids, parsed from COCO_<subtype>_<id>.jpg
    grid   float16 (N, D, S, S)   channel first
    count  int64   (1,)           rows written (= N once finished)
    attrs  format="vqa-features", version=1, arch, size, weights, central_fraction, pooled

A folder whose file names hold no COCO id (VizWiz_val_00000000.jpg) is keyed by file name: the
file also gets `names` (M,), the sorted file names, `ids` holds each row's index into it, and the
version is 2 (data/README.md). A folder mixing the two kinds of names is refused.

Resuming: extracting train2014 takes hours and must survive being killed at any moment. The
work goes to OUT.partial, created once at full size and then written only as raw rows at fixed
offsets, each batch committed by an fsync'd `count` (writer.py: create_grid_file, GridRowWriter).
A crash cannot leave a file h5py fails to open, and rows past `count` are ignored and
overwritten. Running the same command again continues after row `count`; when every image is
done OUT.partial is renamed to OUT.

On a GPU the main thread only feeds the device: the loader's pinned batch goes over with a
non-blocking copy, the trunk runs channels-last under bf16 autocast with cuDNN autotuning (one
input size for the whole run), and the rows come back by a non-blocking copy that a writer
thread waits for, then writes and fsyncs (RowWriterThread), while the next batch computes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import h5py
import numpy as np

from vqa.data.features import IDS, NAMES
from vqa.errors import UserError
from vqa.features.writer import GridRowWriter, RowWriterThread, create_grid_file, finish_grid_file
from vqa.io import human_bytes

ARCHS = (  # torchvision classifiers whose trunk is conv1 .. layer4 (children()[:-2])
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2",
)  # fmt: skip
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_COCO_NAME = re.compile(r"(?:COCO_[A-Za-z]+\d*_)?(\d+)")  # COCO_val2014_000000000042 or 000000000042
SETTINGS = ("arch", "size", "weights", "central_fraction", "pooled")


def parse_image_id(name: str) -> int | None:
    """The COCO image id of a file name (COCO_train2014_000000000009.jpg -> 9), or None."""
    m = _COCO_NAME.fullmatch(Path(name).stem)
    return int(m.group(1)) if m else None


def list_images(folder: Path) -> tuple[list[tuple[int, Path]], list[str] | None]:
    """(key, path) of every image in `folder`, sorted by key, and the file names when the images are
    keyed by file name (then a key is the index into them), else None; user errors for bad names."""
    if not folder.is_dir():
        raise UserError(
            f"{folder}: image folder not found; pass --images data/coco/<subtype> (data/README.md)"
        )
    paths, ignored = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_dir() or path.suffix.lower() not in IMAGE_SUFFIXES:
            ignored.append(entry.name)
        else:
            paths.append(path)
    if not paths:
        raise UserError(f"{folder}: no .jpg/.jpeg/.png images; pass the folder the COCO zip unpacked into")
    if ignored:
        print(f"extract: ignored {len(ignored):,} entries that are not images (first: {ignored[0]})")
    ids = [parse_image_id(p.name) for p in paths]
    if all(i is None for i in ids):  # images keyed by file name (VizWiz): the key is the row of names
        return list(enumerate(paths)), [p.name for p in paths]
    found: dict[int, Path] = {}
    for image_id, path in zip(ids, paths):
        if image_id is None:
            raise UserError(
                f"{path}: no COCO image id in the file name, while other images of the folder have one; name "
                "images COCO_<subtype>_<id>.jpg or <id>.jpg (a folder keyed by file names, as VizWiz's, holds no COCO names)"
            )
        if image_id in found:
            raise UserError(f"{path}: image id {image_id} also belongs to {found[image_id].name}; keep one")
        found[image_id] = path
    return sorted(found.items()), None


def _names_of(path: Path) -> list[str] | None:
    with h5py.File(path, "r") as f:
        return list(f[NAMES].asstr()[()]) if NAMES in f else None


def check_arch(arch: str) -> None:
    if arch not in ARCHS:  # the parser has no choices=: it stays free of torch (vqa/cli.py)
        raise UserError(f"--arch '{arch}' is not supported; choose one of {', '.join(ARCHS)}")


def build_trunk(arch: str, weights: str, seed: int = 0):
    """The convolutional trunk (conv1 .. layer4) of a torchvision ResNet, in eval mode, and its width.

    weights: "imagenet" (torchvision's IMAGENET1K_V1, the original ResNet weights; downloaded once
    into ~/.cache/torch/hub), "none" (random, seeded: for tests) or a state-dict file.
    """
    import torch
    import torchvision
    from torch import nn

    check_arch(arch)
    torch.manual_seed(seed)
    if weights == "imagenet":
        try:
            model = torchvision.models.get_model(arch, weights="IMAGENET1K_V1")
        except (OSError, RuntimeError, ValueError) as e:
            raise UserError(
                f"could not load the ImageNet weights of {arch} ({type(e).__name__}: {str(e).splitlines()[0]}); "
                "they download once into ~/.cache/torch/hub/checkpoints (needs internet), or pass --weights FILE.pth"
            ) from None
    else:
        model = torchvision.models.get_model(arch, weights=None)
        if weights != "none":
            path = Path(weights)
            if not path.is_file():
                raise UserError(
                    f"--weights {weights}: no such file; pass imagenet, none or a .pth state dict"
                )
            try:
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            except Exception as e:  # noqa: BLE001 - any failure is a wrong file for the user
                raise UserError(
                    f"{path}: not a state dict of torchvision {arch} ({type(e).__name__}); pass the matching .pth"
                ) from None
    trunk = nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc
    trunk.eval().requires_grad_(False)
    return trunk, model.fc.in_features


def image_transform(size: int, central_fraction: float):
    """pytorch-vqa's: resize the shorter side to size / central_fraction, centre crop size x size.

    Gives uint8 [3, size, size]: scaling and normalization happen batched on the device
    (normalize()), which makes a decoding worker about 8 times faster than torchvision's
    ToTensor + Normalize per image and sends 4 times fewer bytes to the main process and the GPU.
    """
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(int(size / central_fraction)),
        transforms.CenterCrop(size),
        transforms.PILToTensor(),
    ])  # fmt: skip


def normalize(x):
    """uint8 [B, 3, H, W] -> float, scaled to [0, 1] and normalized with the ImageNet mean and std."""
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std  # torchvision's ToTensor + Normalize, batched


class ImageFiles:
    """Map-style dataset of (image [3, S, S], index, error): decoding runs in DataLoader workers.

    An unreadable file gives a zero image and the error text instead of raising, so one broken
    JPEG does not stop a multi-hour extraction; the caller reports it by name.
    """

    def __init__(self, paths: list[Path], size: int, central_fraction: float):
        self.paths, self.size = paths, size
        self.transform = image_transform(size, central_fraction)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        try:
            with Image.open(self.paths[i]) as im:
                return self.transform(im.convert("RGB")), i, ""
        except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for broken or truncated files
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), i, f"{type(e).__name__}: {e}"


def default_workers() -> int:
    """Decoding processes when --workers is not given: every CPU core this process may use.

    JPEG decoding and resizing at 448 px is the bottleneck on a GPU (about 100 images/s per
    core against thousands per second for ResNet-152 in bf16), so no core is left idle.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _check_settings(path: Path, attrs: dict, what: str) -> None:
    with h5py.File(path, "r") as f:
        old = {k: f.attrs.get(k) for k in SETTINGS}
    old = {k: v.item() if isinstance(v, np.generic) else v for k, v in old.items()}  # np.int64(448) -> 448
    diff = [f"{k}={old[k]!r} (now {attrs[k]!r})" for k in SETTINGS if old[k] != attrs[k]]
    if diff:
        raise UserError(
            f"{path}: {what} with other settings: {', '.join(diff)}; pass --overwrite to start over"
        )


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
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from vqa.device import resolve_device

    workers = default_workers() if workers is None else workers
    if size < 32 or batch_size < 1 or workers < 0 or not 0 < central_fraction <= 1:
        raise UserError(
            "--size must be >= 32, --batch-size >= 1, --workers >= 0, --central-fraction in (0, 1]"
        )
    check_arch(arch)  # before --overwrite deletes anything
    images, out = Path(images), Path(out)
    partial = _partial_path(out)
    weights_tag = weights if weights in ("imagenet", "none") else f"file:{Path(weights).name}"
    attrs = dict(arch=arch, size=size, weights=weights_tag, central_fraction=central_fraction, pooled=pooled)
    files, names = list_images(images)
    if overwrite:
        partial.unlink(missing_ok=True)
    elif out.exists():
        _check_settings(out, attrs, "already extracted")
        with h5py.File(out, "r") as f:
            have = set(f[IDS][()].tolist())
        stored = _names_of(out)
        if (stored is None) != (names is None):
            raise UserError(f"{out}: holds images keyed {'by file name' if stored else 'by COCO id'}, unlike "
                            f"{images}; pass --overwrite to extract again")  # fmt: skip
        if stored is not None:
            have = {stored[i] for i in have}
            files_key = [(p.name, p) for _, p in files]
        else:
            files_key = files
        missing = [p for i, p in files_key if i not in have]
        if missing:
            raise UserError(
                f"{out}: already exists without {len(missing):,} images of {images} (first: {missing[0].name}); "
                "pass --overwrite to extract again"
            )
        print(f"extract: {out} already holds all {len(files):,} images of {images}; nothing to do")
        return {"images": 0, "failed": [], "out": out}
    elif partial.exists():
        _check_settings(partial, attrs, "an interrupted extraction was started")
        if _names_of(partial) != names:  # the keys index the names as they were when it began
            raise UserError(
                f"{partial}: {images} holds other images than when this extraction began; pass --overwrite to start over"
            )

    trunk, dim = build_trunk(arch, weights, seed)
    dev = resolve_device(device, "--device")
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # one input size all run long: let cuDNN pick its kernels
    trunk.to(dev, memory_format=torch.channels_last)  # NHWC: what tensor-core convolutions read
    precision = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()  # stored as fp16
    with torch.inference_mode(), precision:
        side = trunk(torch.zeros(1, 3, size, size, device=dev)).shape[-1]
    side = 1 if pooled else side
    out.parent.mkdir(parents=True, exist_ok=True)
    if not partial.exists():
        need = len(files) * dim * side * side * 2
        free = shutil.disk_usage(out.parent).free
        if need > free:
            print(f"warning: {out} needs {human_bytes(need)}, {human_bytes(free)} free", file=sys.stderr)
        create_grid_file(partial, len(files), dim, side, attrs, names)
    writer = GridRowWriter(partial)
    todo = [(i, p) for i, p in files if i not in writer.done]
    if writer.count + len(todo) > writer.capacity:
        writer.close()
        raise UserError(
            f"{partial}: {images} holds images added after this extraction began; pass --overwrite to start over"
        )
    print(
        f"extract: {len(todo):,} of {len(files):,} images of {images} to do -> {partial.name}; "
        f"{arch} ({weights_tag}) at {size}x{size} -> {'pooled ' if pooled else ''}grid {dim}x{side}x{side} "
        f"float16; device {dev}, batch {batch_size}, {workers} workers"
    )
    loader = DataLoader(
        ImageFiles([p for _, p in todo], size, central_fraction),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=cuda,  # page-locked batches: the copy to the GPU runs asynchronously
    )
    failed: list[str] = []
    start = time.perf_counter()
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
                    x = x.to(dev, non_blocking=True)  # straight from the pinned batch: no host copy
                    if len(keep) < len(errors):  # rare: drop unreadable images on the device
                        x = x.index_select(0, keep.to(dev, non_blocking=True))
                    x = normalize(x.contiguous(memory_format=torch.channels_last))
                    with precision:
                        grid = trunk(x)  # [b, D, S, S]
                    grid = grid.float().mean((2, 3), keepdim=True) if pooled else grid  # [b, D, 1, 1]
                    grid = grid.half().contiguous()  # the stored layout, NCHW
                    copied = None
                    if cuda:  # back to pinned memory without waiting; the writer waits for the event
                        grid = grid.to("cpu", non_blocking=True)
                        copied = torch.cuda.Event()
                        copied.record()
                    ids = np.asarray([todo[i][0] for i in index[keep].tolist()], np.int64)
                    rows.put(ids, grid, copied)
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
    seconds = time.perf_counter() - start
    done = len(todo) - len(failed)
    if failed:
        raise UserError(
            f"{len(failed):,} unreadable images in {images} (listed above; first: {Path(failed[0]).name}); "
            f"replace or delete them, then run the same command again: the {writer.count:,} images "
            f"extracted are kept in {partial}"
        )
    finish_grid_file(partial, out, writer.count, writer.capacity)
    print(
        f"extract: {done:,} images in {seconds:.1f}s ({done / max(seconds, 1e-9):.1f} img/s); "
        f"{out} holds {writer.count:,} images, {human_bytes(out.stat().st_size)}"
    )
    return {"images": done, "failed": failed, "out": out}


def extract_command(args: argparse.Namespace) -> int:
    extract(
        args.images, args.out, arch=args.arch, size=args.size, weights=args.weights, pooled=args.pooled,
        central_fraction=args.central_fraction, batch_size=args.batch_size, workers=args.workers,
        device=args.device, overwrite=args.overwrite, seed=args.seed,
    )  # fmt: skip
    return 0

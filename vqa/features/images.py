"""The image side of `vqa extract`: a folder's images (keyed by COCO id, or by file name where no name
holds one: VizWiz), their decoding in DataLoader workers, and the ResNet trunk."""

from __future__ import annotations

import os
import re
from pathlib import Path

from vqa.errors import UserError

# torchvision classifiers whose trunk is conv1 .. layer4 (children()[:-2])
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
ARCHS = (*RESNETS, "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_COCO_NAME = re.compile(r"(?:COCO_[A-Za-z]+\d*_)?(\d+)")  # COCO_val2014_000000000042 or 000000000042


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


def check_arch(arch: str) -> None:
    if arch not in ARCHS:  # the parser has no choices=: it stays free of torch (vqa/cli.py)
        raise UserError(f"--arch '{arch}' is not supported; choose one of {', '.join(ARCHS)}")


def build_trunk(arch: str, weights: str, seed: int = 0):
    """The convolutional trunk (conv1 .. layer4) of a torchvision ResNet, in eval mode, and its width;
    weights: "imagenet" (torchvision's IMAGENET1K_V1, downloaded once into ~/.cache/torch/hub), "none"
    (random, seeded: for tests) or a state-dict file."""
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
    """pytorch-vqa's: resize the shorter side to size / central_fraction, centre crop size x size, as
    uint8 [3, size, size]: `normalize` scales batches on the device, which makes a decoding worker about
    8x faster than torchvision's ToTensor + Normalize per image and sends 4x fewer bytes to the GPU."""
    from torchvision import transforms

    resize = transforms.Resize(int(size / central_fraction))
    return transforms.Compose([resize, transforms.CenterCrop(size), transforms.PILToTensor()])


def normalize(x):
    """uint8 [B, 3, H, W] -> float, scaled to [0, 1] and normalized with the ImageNet mean and std."""
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std  # torchvision's ToTensor + Normalize, batched


class ImageFiles:
    """Map-style dataset of (image [3, S, S], index, error), decoded in DataLoader workers. An unreadable
    file gives a zero image and the error text instead of raising, so one broken JPEG does not stop a
    multi-hour extraction; the caller reports it by name."""

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
    """Decoding processes when --workers is not given: every CPU core this process may use (decoding at
    448 px, about 100 images/s per core, is the bottleneck beside ResNet-152 in bf16 on a GPU)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1

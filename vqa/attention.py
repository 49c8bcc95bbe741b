"""`vqa attention`: draw where an attention model looked, one PNG per validation question.

Each figure shows the question, the model's top answers, the ten human answers (with counts) and, per
glimpse, a heatmap of the attention weights: an S x S image for grid features, the boxes filled in
proportion to their weight for box features. With the `scenes_{subtype}.json` that `vqa synth` writes,
the ground-truth objects are labelled in their cells or boxes.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import textwrap
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import torch

from vqa import io
from vqa.data.build import features_path
from vqa.data.dataset import VQADataset
from vqa.data.sources import Record
from vqa.data.sources.vqa2 import IMAGE_SUBTYPE
from vqa.device import resolve_device
from vqa.errors import UserError
from vqa.metrics import batch_accuracy
from vqa.predict import LoadedRun, load_run, split_dataset


def has_attention(model: torch.nn.Module) -> bool:
    """Attention models take `return_attention=True` and return (logits, att [B, N, G])."""
    return "return_attention" in inspect.signature(model.forward).parameters


@torch.no_grad()
def attention_maps(run: LoadedRun, dataset: VQADataset, indices: list[int], device: torch.device):
    """Softmax probabilities [n, A], attention [n, N, G] and region masks [n, N] of dataset[indices]."""
    batch = b = dataset.__getitems__(indices).to(device)  # the batch the loader reads
    logits, att = run.model(b.question, b.question_len, b.image, b.image_mask, return_attention=True)
    probs = torch.softmax(logits.float(), dim=1)
    score = batch_accuracy(probs.argmax(1), batch.answer_idx, batch.answer_score)  # [n]
    return probs.cpu(), att.float().cpu(), batch.image_mask.cpu(), score.cpu()


class Geometry:
    """Where the regions of each image are: the grid side S, or each image's boxes and size."""

    def __init__(self, path: Path, kind: str):
        self.kind = kind
        with h5py.File(path, "r") as f:
            ids = f["ids"][()].astype(np.int64)
            self.row = {int(i): r for r, i in enumerate(ids)}
            if kind == "grid":
                key = "grid" if "grid" in f else "features"
                self.grid_hw = tuple(f[key].shape[2:])  # (H, W)
                return
            if "image_bb" not in f:
                raise UserError(f"{path}: no 'image_bb' (box coordinates); vqa attention cannot draw boxes")
            self.bb = f["image_bb"][()].astype(np.float32)  # [R, 4] or [N, K, 4]
            self.pos = f["pos_boxes"][()].astype(np.int64) if "pos_boxes" in f else None
            sized = "image_w" in f and "image_h" in f
            self.wh = np.stack([f["image_w"][()], f["image_h"][()]], 1).astype(np.float32) if sized else None

    def boxes(self, image_id: int) -> tuple[np.ndarray, float, float]:
        """Boxes [n, 4] (x1, y1, x2, y2 in pixels) of one image, and its width and height."""
        r = self.row[image_id]
        bb = self.bb[self.pos[r, 0] : self.pos[r, 1]] if self.pos is not None else self.bb[r]
        if self.wh is not None:
            w, h = self.wh[r]
        else:  # no image size stored: the boxes' extent
            w, h = bb[:, 2].max(initial=1.0), bb[:, 3].max(initial=1.0)
        return bb, float(w), float(h)


def load_scenes(root: Path, split: str) -> dict[int, dict]:
    """image_id -> scene of `vqa synth` (objects with row, col, attributes, box row); {} if absent."""
    path = root / f"scenes_{IMAGE_SUBTYPE.get(split, split)}.json"
    if not path.is_file():
        return {}
    try:
        scenes = json.loads(path.read_text())["scenes"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{path}: malformed scenes file; regenerate it with `vqa synth`") from None
    return {s["image_id"]: s for s in scenes}


# an object's label drawn over the map: white on a translucent black box
_LABEL_STYLE = dict(ha="center", va="center", fontsize=6, color="white")
_LABEL_STYLE["bbox"] = dict(boxstyle="round,pad=0.1", fc="black", alpha=0.45, lw=0)


def _label(obj: dict) -> str:
    return f"{obj['color']}\n{obj['shape']}"


def _draw_grid(ax, weights: np.ndarray, hw: tuple[int, int], scene: dict | None) -> None:
    h, w = hw
    img = ax.imshow(weights.reshape(h, w), cmap="magma", vmin=0.0, interpolation="nearest")
    ax.figure.colorbar(img, ax=ax, fraction=0.046, pad=0.04)
    for obj in (scene or {}).get("objects", []):
        ax.text(obj["col"], obj["row"], _label(obj), **_LABEL_STYLE)
    ax.set_xticks(range(w))
    ax.set_yticks(range(h))
    ax.tick_params(labelsize=6, length=0)


def _draw_boxes(ax, weights: np.ndarray, boxes: np.ndarray, size: tuple[float, float], scene) -> None:
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    w, h = size
    ax.set_facecolor("#f2f2f2")
    top = max(float(weights.max(initial=0.0)), 1e-12)
    for k in np.argsort(weights):  # heaviest last, on top
        x1, y1, x2, y2 = boxes[k]
        a = float(weights[k]) / top
        colour = colormaps["magma"](0.25 + 0.7 * a)
        style = dict(fc=colour, alpha=0.05 + 0.6 * a, ec=colour, lw=0.6 + 1.4 * a)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, **style))
    best = int(np.argmax(weights)) if len(weights) else None
    if best is not None:
        x1, y1 = boxes[best, :2]
        ax.text(x1, y1, f"{weights[best]:.2f}", fontsize=7, va="bottom", color="black")
    for obj in (scene or {}).get("objects", []):
        if obj.get("box") is not None and obj["box"] < len(boxes):
            x1, y1, x2, y2 = boxes[obj["box"]]
            ax.text((x1 + x2) / 2, (y1 + y2) / 2, _label(obj), **_LABEL_STYLE)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)  # image coordinates: y grows downwards
    ax.set_aspect("equal")
    ax.tick_params(labelsize=6)


def _text_panel(ax, record: Record, top: list[tuple[str, float]], score: float | None) -> None:
    ax.axis("off")
    lines = textwrap.wrap("Q: " + record.question, 34)
    lines += ["", "model:"]
    lines += [f"  {a}  {100 * p:.1f}%" for a, p in top]
    if score is not None:
        lines.append(f"  (official accuracy {score:.2f})")
    lines += ["", "humans:"]
    if record.answers:
        lines += [f"  {a} x{n}" for a, n in Counter(record.answers).most_common()]
    else:
        lines.append("  (no annotations)")
    text = "\n".join(lines)
    ax.text(0.0, 1.0, text, va="top", ha="left", family="monospace", fontsize=8, transform=ax.transAxes)


def draw(path: Path, record: Record, top, score, att: np.ndarray, geometry: Geometry, scene) -> None:
    """One figure: the text panel and a heatmap per glimpse; att [n_regions, G]. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    glimpses = att.shape[1]
    widths = {"width_ratios": [1.0] + [1.2] * glimpses}
    fig, axes = plt.subplots(1, 1 + glimpses, figsize=(3.4 + 3.4 * glimpses, 3.8), gridspec_kw=widths)
    _text_panel(axes[0], record, top, score)
    for g in range(glimpses):
        ax = axes[1 + g]
        if geometry.kind == "grid":
            _draw_grid(ax, att[:, g], geometry.grid_hw, scene)
        else:
            boxes, w, h = geometry.boxes(record.image_id)
            _draw_boxes(ax, att[: len(boxes), g], boxes, (w, h), scene)
        ax.set_title(f"glimpse {g + 1} (max {att[:, g].max():.2f})", fontsize=9)
    fig.suptitle(f"question {record.question_id}, image {record.image_id}", fontsize=9)
    fig.tight_layout()
    try:
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def attention_command(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise UserError(f"--n is {args.n}; pass a positive number of questions")
    device = resolve_device("auto")
    run = load_run(args.run, args.checkpoint, device)
    if not has_attention(run.model):
        raise UserError(
            f"{args.run}: model '{run.cfg.model.name}' has no attention to draw; use a run of pool, mcb or updn"
        )
    io.output_folder(args.out, "--out")
    dataset = split_dataset(run, args.split, args.data_root)
    n = min(args.n, len(dataset))
    indices = list(range(n))
    if args.seed is not None:
        indices = sorted(random.Random(args.seed).sample(range(len(dataset)), n))
    geometry = Geometry(features_path(run.cfg, args.split), run.cfg.data.features)
    scenes = load_scenes(Path(run.cfg.data.root), args.split)
    probs, att, mask, score = attention_maps(run, dataset, indices, device)
    annotated = dataset.annotated
    args.out.mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(indices):
        record = dataset.records[i]
        p, idx = probs[k].topk(min(3, probs.shape[1]))
        top = [(run.avocab.itos[j], v) for j, v in zip(idx.tolist(), p.tolist())]
        regions = int(mask[k].sum())
        path = args.out / f"{k:02d}_q{record.question_id}.png"
        scored = float(score[k]) if annotated else None
        draw(path, record, top, scored, att[k, :regions].numpy(), geometry, scenes.get(record.image_id))
        print(f"{path}: {record.question!r} -> {top[0][0]} ({100 * top[0][1]:.0f}%)")
    print(
        f"attention: {n} figures of {run.cfg.model.name} ({args.run}, epoch {run.epoch}) for {args.split} -> {args.out}"
    )
    return 0

"""Image features of the synthetic scenes, written in the project's HDF5 layout.

Each grid cell and each box goes through a fixed random non-linear encoder (a 2-layer MLP of
its attribute one-hots and a position code) plus noise, so a model has to learn to read the
features; the encoder is the same for every data seed, so every split and run sees the same
"camera". Boxes are laid out like a detector's: one per object, sometimes a part box, and a
few background boxes. Layout of the file: data/README.md, "Synthetic data".
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from vqa.data import features as L  # the HDF5 layout names the store reads
from vqa.io import atomic_path
from vqa.synth.scenes import ATTR_ORDER, ATTRIBUTES, STUFF, Obj, Scene, pick, shuffle

ENCODER_SEED, HIDDEN, NOISE = 20170823, 256, 0.3
IN_DIM = 16 + 1 + len(STUFF) + 12  # attribute one-hots, object flag, stuff one-hot, position
CHUNK = 512  # images per grid block (bounds memory at the large presets)


def _encoder(out_dim: int, tag: int) -> Callable[[np.ndarray], np.ndarray]:
    """Fixed random 2-layer MLP, the same for every data seed and split."""
    rng = np.random.default_rng([ENCODER_SEED, tag, out_dim])
    w1 = rng.standard_normal((IN_DIM, HIDDEN)).astype(np.float32) * (2.0 / math.sqrt(IN_DIM))
    b1 = rng.standard_normal(HIDDEN).astype(np.float32) * 0.5
    w2 = rng.standard_normal((HIDDEN, out_dim)).astype(np.float32) / math.sqrt(HIDDEN)
    b2 = rng.standard_normal(out_dim).astype(np.float32) * 0.2
    return lambda x: np.tanh(x @ w1 + b1) @ w2 + b2  # [R, IN_DIM] -> [R, out_dim], pre-noise


def _position(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[R] centres in 0..1 -> [R, 12] sinusoids."""
    k = np.pi * np.arange(1, 4, dtype=np.float32)
    xs, ys = x.astype(np.float32)[:, None] * k, y.astype(np.float32)[:, None] * k
    return 0.5 * np.concatenate([np.sin(xs), np.cos(xs), np.sin(ys), np.cos(ys)], axis=1)


def _cell_position(cells: np.ndarray, grid: int) -> np.ndarray:
    """[C] cell indices (row * S + col) -> [C, 12] position code of the cell centres."""
    return _position((cells % grid + 0.5) / grid, (cells // grid + 0.5) / grid)


def _content(o: Obj | None, stuff: str = "floor") -> np.ndarray:
    """Encoder input without position: attribute one-hots and object flag, or a stuff one-hot."""
    vec = np.zeros(IN_DIM - 12, np.float32)
    if o is None:
        vec[17 + STUFF.index(stuff)] = 1.0
        return vec
    base = 0
    for a in ATTR_ORDER:
        vec[base + ATTRIBUTES[a].index(getattr(o, a))] = 1.0
        base += len(ATTRIBUTES[a])
    vec[16] = 1.0
    return vec


def layout_boxes(scenes: list[Scene], grid: int, rnd: random.Random):
    """Boxes of every image: one per object, sometimes a part box, 2-4 background boxes.

    Returns boxes [R, 4] (pixels), encoder inputs [R, IN_DIM], pos_boxes [N, 2] and, per
    image, the row (within the image) of each object's box.
    """
    boxes, inputs, pos, obj_rows = [], [], [], []
    for s in scenes:
        cw, ch = s.width / grid, s.height / grid
        items = []  # (box, input without position, object index or -1)
        for j, o in enumerate(s.objects):
            half = (0.3 if o.size == "small" else 0.48) * (1 + 0.1 * (rnd.random() - 0.5))
            cx = (o.col + 0.5 + 0.2 * (rnd.random() - 0.5)) * cw
            cy = (o.row + 0.5 + 0.2 * (rnd.random() - 0.5)) * ch
            box = (cx - half * cw, cy - half * ch, cx + half * cw, cy + half * ch)
            items.append((box, _content(o), j))
            if rnd.random() < 0.25:  # a part of the object, like overlapping detector boxes
                f = 0.5 + 0.3 * rnd.random()
                part = (box[0], box[1], box[0] + f * (box[2] - box[0]), box[1] + f * (box[3] - box[1]))
                items.append((part, 0.6 * _content(o) + 0.4 * _content(None, "table"), -1))
        for _ in range(2 + int(rnd.random() * 3)):
            w, h = (0.3 + 0.6 * rnd.random()) * s.width, (0.2 + 0.5 * rnd.random()) * s.height
            x, y = rnd.random() * (s.width - w), rnd.random() * (s.height - h)
            items.append(((x, y, x + w, y + h), _content(None, pick(rnd, STUFF)), -1))
        shuffle(rnd, items)
        rows = [0] * len(s.objects)
        for k, (_, _, j) in enumerate(items):
            if j >= 0:
                rows[j] = k
        start = len(boxes)
        boxes += [
            tuple(min(max(v, 0.0), lim) for v, lim in zip(b, (s.width, s.height) * 2)) for b, _, _ in items
        ]
        inputs += [v for _, v, _ in items]
        pos.append((start, len(boxes)))
        obj_rows.append(rows)
    bb = np.array(boxes, np.float32).reshape(-1, 4)
    wh = np.repeat([(s.width, s.height) for s in scenes], [b - a for a, b in pos], axis=0).reshape(-1, 2)
    centre = (bb[:, :2] + bb[:, 2:]) / 2 / np.maximum(wh, 1)
    x = np.concatenate(
        [np.array(inputs, np.float32).reshape(-1, IN_DIM - 12), _position(centre[:, 0], centre[:, 1])], axis=1
    )
    return bb, x, np.array(pos, np.int64).reshape(-1, 2), obj_rows


def _grid_block(scenes: list[Scene], grid: int, enc, base: np.ndarray, rng) -> np.ndarray:
    """Grid features of a block of images: [n, D, S, S] float16."""
    n = len(scenes)
    pre = np.repeat(base[None], n, axis=0)  # [n, S*S, D] background cells (depend on position only)
    objs = [(i, o) for i, s in enumerate(scenes) for o in s.objects]
    if objs:
        img = np.array([i for i, _ in objs])
        cell = np.array([o.row * grid + o.col for _, o in objs])
        x = np.concatenate([np.stack([_content(o) for _, o in objs]), _cell_position(cell, grid)], axis=1)
        pre[img, cell] = enc(x)  # [objects, D]
    pre += rng.standard_normal(pre.shape, dtype=np.float32) * NOISE
    np.maximum(pre, 0, out=pre)
    return pre.astype(np.float16).transpose(0, 2, 1).reshape(n, -1, grid, grid)


def _box_datasets(scenes: list[Scene], boxes, box_dim: int, rng: np.random.Generator) -> dict:
    """The box datasets of one split (`boxes`: layout_boxes' result), in the file's order; draws the
    box features' noise from `rng`."""
    bb, x, pos, _ = boxes
    wh = np.array([(s.width, s.height) for s in scenes], np.int32).reshape(-1, 2)
    feats = _encoder(box_dim, 1)(x) + rng.standard_normal((len(x), box_dim), dtype=np.float32) * NOISE
    size = np.repeat(wh, pos[:, 1] - pos[:, 0], axis=0).astype(np.float32)
    spatial = np.concatenate([bb / np.tile(size, 2), (bb[:, 2:] - bb[:, :2]) / size], axis=1)
    return {
        L.IMAGE_FEATURES: np.maximum(feats, 0).astype(np.float16),
        L.IMAGE_BB: bb,
        L.SPATIAL_FEATURES: spatial.astype(np.float32),
        L.POS_BOXES: pos,
        L.IMAGE_W: wh[:, 0],
        L.IMAGE_H: wh[:, 1],
    }


def write_features(
    path: Path,
    ids,
    scenes: list[Scene],
    boxes,
    grid: int,
    grid_dim: int,
    box_dim: int,
    seed: int,
    rng: np.random.Generator,
    names: list[str] | None = None,
) -> None:
    """Write one split's grid and box features (`boxes`: layout_boxes' result) atomically to `path`.

    `names`: the images' file names (VizWiz keys its questions by them), written as the UTF-8
    string dataset `names` of layout version 2, where `ids` holds each row's index into `names`
    (here the same as the number in the name). No timestamps (track_times=False) and
    a fixed attribute order, so the same inputs give the same bytes.
    """
    genc, cells = _encoder(grid_dim, 0), np.arange(grid * grid)
    empty = np.concatenate([np.tile(_content(None), (len(cells), 1)), _cell_position(cells, grid)], axis=1)
    base = genc(empty)
    box_data = _box_datasets(scenes, boxes, box_dim, rng)  # its noise is drawn before the grid's
    version = L.VERSION if names is None else L.NAMES_VERSION
    attrs = {
        "format": L.FORMAT,
        "version": version,
        "grid_size": grid,
        "generator": "vqa synth",
        "seed": seed,
    }
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        for k, v in attrs.items():
            f.attrs[k] = v
        f.create_dataset(L.IDS, data=np.asarray(ids, np.int64), track_times=False)
        if names is not None:
            text = h5py.string_dtype("utf-8")
            f.create_dataset(L.NAMES, data=np.array(names, dtype=object), dtype=text, track_times=False)
        g = f.create_dataset(L.GRID, (len(scenes), grid_dim, grid, grid), np.float16, track_times=False)
        for a in range(0, len(scenes), CHUNK):
            g[a : a + CHUNK] = _grid_block(scenes[a : a + CHUNK], grid, genc, base, rng)
        for name, data in box_data.items():
            f.create_dataset(name, data=data, track_times=False)

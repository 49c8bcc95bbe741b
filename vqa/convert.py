"""`vqa convert`: precomputed image features -> our HDF5 layout.

Bottom-up attention features (Anderson et al. 2018; docs/vqa-reference.md section 5) come as
TSV files, one image per line, columns image_id, image_w, image_h, num_boxes, boxes, features;
boxes and features are base64 of float32 arrays [num_boxes, 4] (x1, y1, x2, y2 in pixels) and
[num_boxes, D]. Both public variants convert the same way: 36 boxes per image, or 10 to 100.

Layout written (flat boxes, so both variants share it; vqa/data/features.py reads it):
    ids               int64   (N,)       COCO image ids
    image_w, image_h  int32   (N,)       image size in pixels
    pos_boxes         int64   (N, 2)     [start, end) rows of image n in the arrays below
    image_features    float16 (R, D)     (--dtype float32 keeps the TSV's precision)
    image_bb          float32 (R, 4)     x1, y1, x2, y2 in pixels, as in the TSV
    spatial_features  float32 (R, 6)     x1/W, y1/H, x2/W, y2/H, w/W, h/H (spatial_features())
    attrs             format="vqa-features", version=1, source="bottomup-tsv", boxes_min, boxes_max

Lines are streamed and written in blocks of about BLOCK_BOXES boxes, so memory stays bounded
whatever the file size. The file is built as OUT.tmp and renamed at the end: an interrupted or
failed conversion leaves nothing at OUT.

The public grid layout (pytorch-vqa's preprocess-images.py: `features` (N, 2048, 14, 14) and
`ids`) needs no conversion: vqa/data/features.py reads it as it is (data/README.md).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from vqa.errors import UserError

FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
BLOCK_BOXES = 4096  # boxes buffered between writes: 4096 x 2048 float32 = 32 MiB


class Row(NamedTuple):
    image_id: int
    image_w: int
    image_h: int
    boxes: np.ndarray  # float32 [n, 4]
    features: np.ndarray  # float32 [n, D]


def spatial_features(boxes: np.ndarray, image_w: float, image_h: float) -> np.ndarray:
    """[n, 4] pixel boxes (x1, y1, x2, y2) -> [n, 6] (x1/W, y1/H, x2/W, y2/H, w/W, h/H)."""
    scale = np.asarray([image_w, image_h, image_w, image_h], np.float32)
    rel = boxes.astype(np.float32) / scale  # [n, 4]
    wh = rel[:, 2:4] - rel[:, 0:2]  # [n, 2]
    return np.concatenate([rel, wh], axis=1)


def _decode(text: bytes, where: str, name: str, rows: int, cols: int | None) -> np.ndarray:
    try:
        flat = np.frombuffer(base64.b64decode(text, validate=True), np.float32)
    except (binascii.Error, ValueError):
        raise UserError(f"{where}: column '{name}' is not base64 of float32; the file is damaged") from None
    if flat.size % rows or (cols is not None and flat.size != rows * cols):
        expected = f"{rows} x {cols}" if cols is not None else f"a multiple of {rows}"
        raise UserError(
            f"{where}: '{name}' holds {flat.size} floats, expected {expected} (num_boxes = {rows})"
        )
    return flat.reshape(rows, -1)


def read_bottomup_tsv(path: Path) -> Iterator[tuple[int, int, Row]]:
    """(line number, bytes read, Row) for each line of one bottom-up attention TSV file, streamed."""
    with open(path, "rb") as fh:
        for line_no, line in enumerate(fh, 1):
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            where = f"{path}:{line_no}"
            parts = line.split(b"\t")
            if len(parts) != len(FIELDS):
                raise UserError(
                    f"{where}: {len(parts)} tab-separated columns, expected {len(FIELDS)} "
                    f"({', '.join(FIELDS)}); pass bottom-up attention TSV files"
                )
            try:
                image_id, w, h, n = (int(float(p)) for p in parts[:4])
            except ValueError:
                raise UserError(f"{where}: image_id, image_w, image_h, num_boxes must be numbers") from None
            if w <= 0 or h <= 0 or n < 1:
                raise UserError(
                    f"{where}: image {image_id} has size {w}x{h} and {n} boxes; the file is damaged"
                )
            boxes = _decode(parts[4], where, "boxes", n, 4)
            features = _decode(parts[5], where, "features", n, None)
            yield line_no, len(line), Row(image_id, w, h, boxes, features)


class _Writer:
    """Resizable flat-box datasets, appended in blocks."""

    def __init__(self, f: h5py.File, dim: int, dtype: str):
        self.f, self.dim, self.dtype = f, dim, dtype
        self.images = self.boxes = 0
        for name, shape, tp, chunk in (
            ("ids", (), "<i8", 4096),
            ("image_w", (), "<i4", 4096),
            ("image_h", (), "<i4", 4096),
            ("pos_boxes", (2,), "<i8", 4096),
            ("image_features", (dim,), dtype, 16),  # 64 KiB chunks: an image's boxes span few of them
            ("image_bb", (4,), "<f4", 4096),
            ("spatial_features", (6,), "<f4", 4096),
        ):
            f.create_dataset(name, (0, *shape), tp, maxshape=(None, *shape), chunks=(chunk, *shape))
        self.buf: list[Row] = []

    def add(self, row: Row) -> None:
        self.buf.append(row)
        if sum(len(r.boxes) for r in self.buf) >= BLOCK_BOXES:
            self.flush()

    def _append(self, name: str, data: np.ndarray) -> None:
        ds = self.f[name]
        start = ds.shape[0]
        ds.resize(start + len(data), axis=0)
        ds[start:] = data

    def flush(self) -> None:
        if not self.buf:
            return
        counts = np.asarray([len(r.boxes) for r in self.buf], np.int64)
        ends = self.boxes + np.cumsum(counts)
        self._append("ids", np.asarray([r.image_id for r in self.buf], np.int64))
        self._append("image_w", np.asarray([r.image_w for r in self.buf], np.int32))
        self._append("image_h", np.asarray([r.image_h for r in self.buf], np.int32))
        self._append("pos_boxes", np.stack([ends - counts, ends], axis=1))  # [b, 2]
        self._append("image_features", np.concatenate([r.features for r in self.buf]).astype(self.dtype))
        self._append("image_bb", np.concatenate([r.boxes for r in self.buf]))
        self._append(
            "spatial_features",
            np.concatenate([spatial_features(r.boxes, r.image_w, r.image_h) for r in self.buf]),
        )
        self.images += len(self.buf)
        self.boxes = int(ends[-1])
        self.buf = []


def _human(nbytes: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 2**10:.0f} KiB"


def question_image_ids(paths: list[Path]) -> set[int]:
    """Image ids asked about in official questions files."""
    from vqa.data.vqa2 import read_json

    return {int(q["image_id"]) for p in paths for q in read_json(p, "questions")}


def convert_bottomup_tsv(
    inputs: list[Path],
    out: Path,
    questions: list[Path] = (),
    dtype: str = "float16",
    overwrite: bool = False,
) -> dict:
    """Bottom-up attention TSV files -> `out` (flat boxes); `questions` keeps only their images."""
    from tqdm import tqdm

    inputs, out = [Path(p) for p in inputs], Path(out)
    for path in inputs:
        if not path.is_file():
            raise UserError(f"{path}: TSV file not found; pass the unpacked bottom-up attention .tsv files")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists; pass --overwrite to replace it")
    wanted = question_image_ids([Path(q) for q in questions]) if questions else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    seen: set[int] = set()
    skipped = 0
    lo, hi = None, 0
    start = time.perf_counter()
    bar = tqdm(
        total=sum(p.stat().st_size for p in inputs), unit="B", unit_scale=True, desc="convert", disable=None
    )
    try:
        with h5py.File(tmp, "w") as f:
            writer = None
            for path in inputs:
                for line_no, nbytes, row in read_bottomup_tsv(path):
                    bar.update(nbytes)
                    if wanted is not None and row.image_id not in wanted:
                        skipped += 1
                        continue
                    if row.image_id in seen:
                        raise UserError(f"{path}:{line_no}: image {row.image_id} appears a second time")
                    if writer is None:
                        writer = _Writer(f, row.features.shape[1], dtype)
                    if row.features.shape[1] != writer.dim:
                        raise UserError(
                            f"{path}:{line_no}: image {row.image_id} has {row.features.shape[1]}-d features, "
                            f"earlier images {writer.dim}-d; convert files of one extractor together"
                        )
                    seen.add(row.image_id)
                    n = len(row.boxes)
                    lo, hi = n if lo is None else min(lo, n), max(hi, n)
                    writer.add(row)
            if writer is None:
                raise UserError(
                    f"{', '.join(map(str, inputs))}: no image to convert; check the files and --questions"
                )
            writer.flush()
            if wanted is not None and wanted - seen:
                missing = sorted(wanted - seen)
                raise UserError(
                    f"{len(missing):,} images of {', '.join(map(str, questions))} are in no TSV file "
                    f"(first: image {missing[0]}); pass every TSV file of the split"
                )
            f.attrs.update(
                format="vqa-features",
                version=1,
                source="bottomup-tsv",
                boxes_min=lo,
                boxes_max=hi,
                files=json.dumps([p.name for p in inputs]),
            )
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    print(
        f"convert: {writer.images:,} images, {writer.boxes:,} boxes ({lo if lo == hi else f'{lo}-{hi}'} per image), "
        f"{writer.dim}-d {dtype} features -> {out} ({_human(out.stat().st_size)}) in {seconds:.1f}s"
        + (f"; {skipped:,} images of other splits skipped" if skipped else "")
    )
    return {"images": writer.images, "boxes": writer.boxes, "skipped": skipped, "out": out}


def add_convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from", dest="source", required=True, choices=("bottomup-tsv",),
        help="input format: bottomup-tsv (Anderson et al. 2018; 36 or 10-100 boxes). The public grid "
        "HDF5 (`features` + `ids`) needs no conversion: point data.features_file at it",
    )  # fmt: skip
    p.add_argument("inputs", nargs="+", type=Path, help="input files, e.g. trainval_36/*.tsv")
    p.add_argument("--out", required=True, type=Path, help="HDF5 to write, e.g. data/vqa2/boxes_train2014.h5")
    p.add_argument(
        "--questions", nargs="+", type=Path, default=[],
        help="official questions JSON: keep only the images it asks about (split a trainval TSV)",
    )  # fmt: skip
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="region features")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def convert_command(args: argparse.Namespace) -> int:
    convert_bottomup_tsv(args.inputs, args.out, args.questions, args.dtype, args.overwrite)
    return 0

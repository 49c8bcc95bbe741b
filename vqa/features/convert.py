"""`vqa convert`: precomputed image features -> our HDF5 layout.

Bottom-up attention features (Anderson et al. 2018; github.com/peteanderson80/bottom-up-attention)
come as TSV files, one image per line, columns image_id, image_w, image_h, num_boxes, boxes, features;
boxes and features are base64 of float32 arrays [num_boxes, 4] (x1, y1, x2, y2 in pixels) and
[num_boxes, D]. Both public variants (36 boxes per image, or 10 to 100) are written as flat boxes in
one layout (vqa/features/writer.py), streamed in blocks (memory stays bounded) to a temporary renamed
at the end (vqa.io.atomic_path: a failed conversion leaves nothing at OUT). The public grid layout
(pytorch-vqa's) needs no conversion: vqa/data/features.py reads it as it is.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from vqa.data.features import POS_BOXES
from vqa.errors import UserError
from vqa.features.writer import BoxWriter, ImageBoxes, human_bytes, layout_attrs
from vqa.io import atomic_path, read_json, refuse_inputs_as_outputs

FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")


INT64 = (-(2**63), 2**63 - 1)


def integral(value, where: str, what: str = "id") -> int:
    """`value` (an int, or a float or text holding an integer: '42', 42.0, '640.0') as an int in int64;
    one UserError line naming `where` for anything else (1.7, inf, nan, 1e30, True, 'abc')."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    else:
        try:
            f = float(value.decode() if isinstance(value, bytes) else value)
        except (TypeError, ValueError):
            f = math.nan
        number = int(f) if math.isfinite(f) and f == int(f) else None
    if number is None or not INT64[0] <= number <= INT64[1]:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
        raise UserError(f"{where}: {what} {text[:60]} is not an integer in int64; fix or regenerate the file")
    return number


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


def read_bottomup_tsv(path: Path) -> Iterator[tuple[int, int, ImageBoxes]]:
    """(line number, bytes read, ImageBoxes) for each line of one bottom-up attention TSV file, streamed."""
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
            image_id, w, h, n = (integral(p, where, name) for p, name in zip(parts[:4], FIELDS))
            if w <= 0 or h <= 0 or n < 1:
                raise UserError(
                    f"{where}: image {image_id} has size {w}x{h} and {n} boxes; the file is damaged"
                )
            boxes = _decode(parts[4], where, "boxes", n, 4)
            features = _decode(parts[5], where, "features", n, None)
            yield line_no, len(line), ImageBoxes(image_id, w, h, boxes, features)


def question_image_ids(paths: list[Path]) -> set[int]:
    """Image ids asked about in official questions files."""
    ids = set()
    for p in paths:
        for q in read_json(p, "questions", key="questions"):
            if not isinstance(q, dict) or "image_id" not in q:
                raise UserError(
                    f"questions file {p}: an entry has no 'image_id'; use an official questions file"
                )
            ids.add(integral(q["image_id"], f"questions file {p}", "image_id"))
    return ids


def _write_boxes(f: h5py.File, inputs: list[Path], wanted: set[int] | None, dtype: str, bar) -> tuple:
    """(BoxWriter or None, ids written, images skipped): every line of `inputs` whose image is `wanted`
    (None: every image) appended to `f`."""
    writer, seen, skipped = None, set(), 0
    for path in inputs:
        for line_no, nbytes, row in read_bottomup_tsv(path):
            bar.update(nbytes)
            if wanted is not None and row.image_id not in wanted:
                skipped += 1
                continue
            if row.image_id in seen:
                raise UserError(f"{path}:{line_no}: image {row.image_id} appears a second time")
            if writer is None:
                writer = BoxWriter(f, row.features.shape[1], dtype)
            if row.features.shape[1] != writer.dim:
                raise UserError(
                    f"{path}:{line_no}: image {row.image_id} has {row.features.shape[1]}-d features, "
                    f"earlier images {writer.dim}-d; convert files of one extractor together"
                )
            seen.add(row.image_id)
            writer.add(row)
    if writer is not None:
        writer.flush()
    return writer, seen, skipped


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
    read = [*(("input TSV file", p) for p in inputs), *(("--questions file", q) for q in questions)]
    refuse_inputs_as_outputs([("--out", out)], read)
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists; pass --overwrite to replace it")
    wanted = question_image_ids([Path(q) for q in questions]) if questions else None
    start = time.perf_counter()
    bar = tqdm(
        total=sum(p.stat().st_size for p in inputs), unit="B", unit_scale=True, desc="convert", disable=None
    )
    try:
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
            writer, seen, skipped = _write_boxes(f, inputs, wanted, dtype, bar)
            if writer is None:
                raise UserError(
                    f"{', '.join(map(str, inputs))}: no image to convert; check the files and --questions"
                )
            if wanted is not None and wanted - seen:
                missing = sorted(wanted - seen)
                raise UserError(
                    f"{len(missing):,} images of {', '.join(map(str, questions))} are in no TSV file "
                    f"(first: image {missing[0]}); pass every TSV file of the split"
                )
            boxes = np.diff(f[POS_BOXES][()], axis=1)  # [N, 1]: boxes per image
            lo, hi = int(boxes.min()), int(boxes.max())
            files = json.dumps([p.name for p in inputs])
            f.attrs.update(layout_attrs(source="bottomup-tsv", boxes_min=lo, boxes_max=hi, files=files))
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    print(
        f"convert: {writer.images:,} images, {writer.boxes:,} boxes ({lo if lo == hi else f'{lo}-{hi}'} per image), "
        f"{writer.dim}-d {dtype} features -> {out} ({human_bytes(out.stat().st_size)}) in {seconds:.1f}s"
        + (f"; {skipped:,} images of other splits skipped" if skipped else "")
    )
    return {"images": writer.images, "boxes": writer.boxes, "skipped": skipped, "out": out}


def convert_command(args: argparse.Namespace) -> int:
    convert_bottomup_tsv(args.inputs, args.out, args.questions, args.dtype, args.overwrite)
    return 0

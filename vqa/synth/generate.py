"""generate() and `vqa synth`: scenes -> questions -> annotators -> files, one split at a time, in
the files of the chosen format (vqa.synth.formats; each format's writer holds its splits, its
question style and its file layout).

Every split draws from its own seeded streams (the split's name and number are in the seed), so
a split's files do not depend on the sizes of the others, and the same arguments give
byte-identical files. The command line's options are defined in vqa/cli.py; synth_command reads them.

The dataset is written as a whole: into a hidden sibling folder `.<out>.tmp`, which replaces `out`
only when complete (rename the old folder aside to `.<out>.old`, rename the new one in, remove the
old). A kill at any moment leaves `out` entirely old or entirely new, never a mix; the next run
removes a stale `.tmp` (and puts back an `.old` a kill left without `out`). So that nothing of the
user's is replaced with it, `out` must be new, empty or a dataset `vqa synth` wrote.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

from vqa.errors import UserError
from vqa.io import write_json_atomic
from vqa.synth.annotators import MODELS, annotate, answerer
from vqa.synth.ask import ask
from vqa.synth.features import layout_boxes, write_features
from vqa.synth.formats import FORMATS, Item, Style, split_sizes
from vqa.synth.presets import ANNOTATORS, PRESETS
from vqa.synth.scenes import make_scene
from vqa.synth.stats import format_stats, prior_accuracy, split_stats

ID_RANGE = 999_999  # image ids of a split lie in [first, first + ID_RANGE)
# What a dataset folder written by generate() holds, in any format (and the temporary files of an
# interrupted write)
DATASET_NAMES = ("v2_OpenEnded_mscoco_*_questions.json", "v2_mscoco_*_annotations.json",
                 "OpenEnded_mscoco_*_questions.json", "mscoco_*_annotations.json", "vqacp_v2_*.json",
                 "train.json", "val.json", "test.json", "scenes_*.json", "features_*.h5", "stats.json",
                 "images", ".*.tmp")  # fmt: skip


def _writer(fmt: str):
    """The object that writes format `fmt`'s files: .splits, .style, .write_split(), .finish()."""
    if fmt in ("vqa2", "vqa1"):
        from vqa.synth.vqa_files import WRITERS
    elif fmt == "okvqa":
        from vqa.synth.okvqa import WRITERS
    elif fmt == "vizwiz":
        from vqa.synth.vizwiz import WRITERS
    else:
        from vqa.synth.vqacp import WRITERS
    return WRITERS[fmt]


def _check(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(
            f"{name} (--{name.replace('_', '-')}) = {value!r}: must be an integer from {low} to {high}"
        )


def _make_split(split_no: int, split: str, first: int | None, n: int, seed: int, per_image: int, grid: int,
                style: Style):  # fmt: skip
    """Image keys, scenes, questions (Items) and boxes of one split; rows in ascending image key.

    `first` is the first image id of the split's range; None names the images VizWiz's way,
    VizWiz_<split>_<8-digit number>.jpg, numbered from 0.
    """
    rnd = random.Random(f"vqa-synth/{seed}/{split}")
    if first is None:
        ids = np.arange(n, dtype=np.int64)
        keys = [f"VizWiz_{split}_{i:08d}.jpg" for i in range(n)]
    else:
        ids = first + np.sort(np.random.default_rng([seed, split_no]).choice(ID_RANGE, n, replace=False))
        keys = ids.tolist()
    scenes = [make_scene(rnd, grid) for _ in range(n)]
    items = []
    asked_all = ask(scenes, per_image, grid, rnd, style.pair_p, style.balanced, style.family_p)
    for key, asked in zip(keys, asked_all):
        for k, (text, (q, truth)) in enumerate(asked.items()):
            qid = key * style.qid_factor + k if style.qid_factor else len(items)  # the official numbering
            text = style.reword(text, rnd) if style.reword else text
            items.append(Item(qid, key, text, q[0], truth, style.annotate(truth, rnd)))
    return ids, keys, scenes, items, layout_boxes(scenes, grid, rnd)


def _staging(out: Path) -> tuple[Path, Path, Path]:
    """(the real folder, the temporary folder the dataset is written into, where the old one is put
    aside during the swap), after checking `out` and cleaning what an earlier kill left."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output folder {out}: exists and is not a folder; pass another path to --out")
    try:
        real = out.resolve()  # a symlinked folder is replaced where it lives; the link stays
    except RuntimeError:  # a symlink loop
        raise UserError(
            f"output folder {out}: a symlink loop; remove the link or pass another folder"
        ) from None
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise UserError(
            f"output folder {out}: holds the current folder, and vqa synth replaces the output folder as a "
            "whole; pass a new folder to --out (e.g. data/synthetic/small)"
        )
    tmp, old = real.with_name(f".{real.name}.tmp"), real.with_name(f".{real.name}.old")
    try:
        if old.exists():  # a kill during the swap: put the old dataset back, or drop it if the new is in
            if real.exists():
                shutil.rmtree(old)
            else:
                os.replace(old, real)
        shutil.rmtree(tmp, ignore_errors=True)  # a stale copy of a killed run
        if real.is_dir():
            foreign = sorted(
                p.name for p in real.iterdir() if not any(fnmatch(p.name, n) for n in DATASET_NAMES)
            )
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise UserError(
                    f"output folder {out}: holds {len(foreign)} files or folders that are not part of a synthetic dataset "
                    f"({shown}), and vqa synth replaces the folder as a whole; pass a new or empty folder to "
                    "--out, or move those files out"
                )
        real.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise UserError(
            f"output folder {out}: cannot write {e.filename or real.parent} ({e.strerror}); pass another "
            "path to --out (the dataset is written beside it first, then swapped in)"
        ) from None
    return real, tmp, old


def _swap_in(tmp: Path, real: Path, old: Path) -> None:
    """Replace `real` by the complete `tmp`: two renames (the old folder aside, the new one in), then
    the old one is removed."""
    if real.exists():
        os.replace(real, old)
        os.replace(tmp, real)
        shutil.rmtree(old)
    else:
        os.replace(tmp, real)


def _write(folder: Path, shown: Path, say, seed: int, fmt: str, counts: tuple[int, int, int], options: dict,
           features: bool, render: bool, annotators: str) -> dict:  # fmt: skip
    """Write the whole dataset into `folder` (`shown`: the folder it will become, for messages)."""
    questions_per_image, grid_size = options["questions_per_image"], options["grid_size"]
    grid_dim, box_dim = options["grid_dim"], options["box_dim"]
    start = time.perf_counter()
    writer = _writer(fmt)
    vqa_annotators = writer.style.annotate is annotate  # vqa2, vqa1, vqacp2; OK-VQA and VizWiz have their own
    tagged = {} if fmt == "vqa2" else {"format": fmt}
    if vqa_annotators:
        tagged["annotators"] = annotators
    stats = {"generator": "vqa synth", "seed": seed, **tagged, "options": options, "splits": {}}
    annotated, drawn = {}, {}
    for split_no, ((split, subtype, first), n) in enumerate(zip(writer.splits, counts)):
        n, per_image = split_sizes(fmt, n, questions_per_image)
        style = writer.style
        if vqa_annotators:  # the model's answers; every other draw as under v1 (annotators.answerer)
            own = random.Random(f"vqa-synth/{seed}/{split}/answers")
            style = style._replace(annotate=answerer(annotators, own))
        ids, keys, scenes, items, boxes = _make_split(split_no, split, first, n, seed, per_image, grid_size,
                                                      style)  # fmt: skip
        rows = writer.write_split(folder, split, items, seed)
        if rows is not None:
            annotated[split] = rows
        key = "image_id" if first is not None else "image"
        scene_rows = [
            {
                key: i,
                "width": s.width,
                "height": s.height,
                "objects": [dict(o._asdict(), box=r) for o, r in zip(s.objects, rows)],
            }
            for i, s, rows in zip(keys, scenes, boxes[3])
        ]
        write_json_atomic(
            folder / f"scenes_{subtype}.json",
            {
                "info": writer.info(seed),
                "data_subtype": subtype,
                "grid_size": grid_size,
                "scenes": scene_rows,
            },
        )
        if render:
            drawn[subtype] = scene_rows
        if features:
            write_features(
                folder / f"features_{subtype}.h5",
                ids,
                scenes,
                boxes,
                grid_size,
                grid_dim,
                box_dim,
                seed,
                np.random.default_rng([seed, split_no, 1]),
                names=None if first is not None else keys,
            )
        stats["splits"][split] = {"images": n, "questions": len(items)}
        say(f"wrote {split}: {n} images, {len(items)} questions ({time.perf_counter() - start:.1f} s)")
    splits, extra = writer.finish(folder, annotated, seed)
    if splits.keys() != annotated.keys():  # re-split (VQA-CP): the statistics follow the new splits
        stats["splits"] = {
            s: {"images": len({r["image_id"] for r in rows}), "questions": len(rows)}
            for s, rows in splits.items()
        }
    for split, rows in splits.items():
        stats["splits"][split].update(split_stats(rows))
    train, val = list(splits.values())[:2]
    stats["prior_accuracy_val"] = prior_accuracy(train, val)
    stats.update(extra)
    write_json_atomic(folder / "stats.json", stats)
    if render:
        from vqa.synth.render import render_split  # PIL only when drawing

        for subtype, scene_rows in drawn.items():
            drawn_to = render_split(folder, subtype, scene_rows, grid_size)
            say(
                f"rendered {len(scene_rows)} images into {shown / drawn_to.relative_to(folder)} ({time.perf_counter() - start:.1f} s)"
            )
    return stats


def generate(
    out_dir: str | Path,
    *,
    seed: int = 0,
    train_images: int,
    val_images: int,
    test_images: int,
    questions_per_image: int,
    grid_size: int = 7,
    grid_dim: int = 128,
    box_dim: int = 128,
    features: bool = True,
    render: bool = False,
    quiet: bool = False,
    format: str = "vqa2",
    annotators: str = ANNOTATORS[0],
) -> dict:
    """Write a synthetic dataset into `out_dir`; return (and save as stats.json) its statistics.

    `format` (vqa.synth.formats.FORMATS) picks the dataset whose files and annotators are
    imitated: VQA v2 by default. `annotators` (vqa.synth.annotators.MODELS) picks the model of the
    VQA formats' annotators (vqa2, vqa1, vqacp2; OK-VQA and VizWiz keep their own): "v2", calibrated
    to VQA v2, by default; "v1" writes the files of before. The same arguments give byte-identical files. The dataset replaces
    `out_dir` as a whole, once complete (see the module's docstring). `render` also draws every
    image as out_dir/images/<subtype>/<the image's file name>.png (vqa.synth.render).
    """
    if format not in FORMATS:
        raise UserError(f"format (--format) = {format!r}: choose one of {', '.join(FORMATS)}")
    if annotators not in MODELS:
        raise UserError(f"annotators (--annotators) = {annotators!r}: choose one of {', '.join(MODELS)}")
    _check("seed", seed, 0, 2**63 - 1)
    counts = (train_images, val_images, test_images)
    for name, value, low in zip(("train_images", "val_images", "test_images"), counts, (1, 1, 0)):
        _check(name, value, low, ID_RANGE)
        if split_sizes(format, value, questions_per_image)[0] > ID_RANGE:
            raise UserError(
                f"{name} (--{name.replace('_', '-')}) = {value}: format {format} has "
                f"{FORMATS[format].per_image} question(s) per image, so {value} x {questions_per_image} questions "
                f"need more than {ID_RANGE} images; give fewer images or questions per image"
            )
    _check("questions_per_image", questions_per_image, 1, 20)
    _check("grid_size", grid_size, 3, 64)
    _check("grid_dim", grid_dim, 1, 8192)
    _check("box_dim", box_dim, 1, 8192)
    out = Path(out_dir)
    options = dict(train_images=train_images, val_images=val_images, test_images=test_images,
                   questions_per_image=questions_per_image, grid_size=grid_size, grid_dim=grid_dim,
                   box_dim=box_dim)  # fmt: skip
    real, tmp, old = _staging(out)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    try:
        stats = _write(tmp, out, say, seed, format, counts, options, features, render, annotators)
        _swap_in(tmp, real, old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(format_stats(stats))
    return stats


def synth_command(args) -> int:
    """`vqa synth`: generate the dataset and print its statistics (options: vqa/cli.py)."""
    options = dict(PRESETS[args.preset])
    for key in options:  # a size given on the command line overrides the preset's
        if getattr(args, key, None) is not None:
            options[key] = getattr(args, key)
    fmt = getattr(args, "format", None) or "vqa2"
    annotators = getattr(args, "annotators", None) or ANNOTATORS[0]
    generate(args.out, seed=args.seed, render=args.render, quiet=args.quiet, format=fmt, annotators=annotators,
             **options)  # fmt: skip
    return 0

"""generate() and `vqa synth`: scenes -> questions -> annotators -> files, one split at a time, in
the files of the chosen format (vqa.synth.formats; each format's writer holds its splits, its
question style and its file layout).

Every split draws from its own seeded streams (the split's name and number are in the seed), so
a split's files do not depend on the sizes of the others, and the same arguments give
byte-identical files. The command line's options are defined in vqa/cli.py; synth_command reads them.

The dataset replaces the output folder as a whole, once complete (vqa.synth.staging).
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import numpy as np

from vqa.errors import UserError
from vqa.io import write_json_atomic
from vqa.synth.annotators import CALIBRATED_NAME, annotate, calibrated
from vqa.synth.ask import ask
from vqa.synth.features import layout_boxes, write_features
from vqa.synth.formats import FORMATS, Item, Style, split_sizes
from vqa.synth.presets import PRESETS
from vqa.synth.scenes import make_scene
from vqa.synth.staging import stage, swap_in
from vqa.synth.stats import format_stats, prior_accuracy, split_stats

ID_RANGE = 999_999  # image ids of a split lie in [first, first + ID_RANGE)


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


def _make_split(
    split_no: int, split: str, first: int | None, n: int, seed: int, per_image: int, style: Style, grid: int
):
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


def _scene_rows(keys: list, scenes: list, boxes, vizwiz: bool) -> list[dict]:
    """scenes_<subtype>.json's rows: each image's key, size and objects with their boxes."""
    key = "image" if vizwiz else "image_id"
    rows = []
    for i, s, boxes_of in zip(keys, scenes, boxes[3]):
        objects = [dict(o._asdict(), box=r) for o, r in zip(s.objects, boxes_of)]
        rows.append({key: i, "width": s.width, "height": s.height, "objects": objects})
    return rows


def _write_split(folder: Path, fmt: str, split_no: int, n: int, seed: int, options: dict, features: bool):
    """One split's questions, answers, scenes and features: (its annotated rows or None, its scene
    rows, its number of images, its number of questions)."""
    writer, grid = _writer(fmt), options["grid_size"]
    name, subtype, first = writer.splits[split_no]
    n, per_image = split_sizes(fmt, n, options["questions_per_image"])
    style = writer.style
    if style.annotate is annotate:  # the VQA formats: the calibrated people (annotators.calibrated)
        style = style._replace(annotate=calibrated(random.Random(f"vqa-synth/{seed}/{name}/answers")))
    ids, keys, scenes, items, boxes = _make_split(split_no, name, first, n, seed, per_image, style, grid)
    rows = writer.write_split(folder, name, items, seed)
    scene_rows = _scene_rows(keys, scenes, boxes, first is None)
    head = {"info": writer.info(seed), "data_subtype": subtype, "grid_size": grid}
    write_json_atomic(folder / f"scenes_{subtype}.json", {**head, "scenes": scene_rows})
    if features:
        rng = np.random.default_rng([seed, split_no, 1])
        sizes = (grid, options["grid_dim"], options["box_dim"])
        names = None if first is not None else keys
        write_features(folder / f"features_{subtype}.h5", ids, scenes, boxes, *sizes, seed, rng, names=names)
    return rows, scene_rows, n, len(items)


def _write(
    folder: Path, shown: Path, say, seed: int, fmt: str, options: dict, features: bool, render: bool
) -> dict:
    """Write the whole dataset into `folder` (`shown`: the folder it will become, for messages)."""
    start = time.perf_counter()
    counts = (options["train_images"], options["val_images"], options["test_images"])
    writer = _writer(fmt)
    tagged = {} if fmt == "vqa2" else {"format": fmt}
    if writer.style.annotate is annotate:  # vqa2, vqa1, vqacp2; OK-VQA and VizWiz have their own
        tagged["annotators"] = CALIBRATED_NAME
    stats = {"generator": "vqa synth", "seed": seed, **tagged, "options": options, "splits": {}}
    annotated, drawn = {}, {}
    for split_no, ((split, subtype, _), n) in enumerate(zip(writer.splits, counts)):
        rows, scene_rows, n, questions = _write_split(folder, fmt, split_no, n, seed, options, features)
        if rows is not None:
            annotated[split] = rows
        if render:
            drawn[subtype] = scene_rows
        stats["splits"][split] = {"images": n, "questions": questions}
        say(f"wrote {split}: {n} images, {questions} questions ({time.perf_counter() - start:.1f} s)")
    _add_statistics(stats, annotated, *writer.finish(folder, annotated, seed))
    write_json_atomic(folder / "stats.json", stats)
    if render:
        from vqa.synth.render import render_split  # PIL only when drawing

        for subtype, scene_rows in drawn.items():
            drawn_to = render_split(folder, subtype, scene_rows, options["grid_size"]).relative_to(folder)
            took = time.perf_counter() - start
            say(f"rendered {len(scene_rows)} images into {shown / drawn_to} ({took:.1f} s)")
    return stats


def _add_statistics(stats: dict, annotated: dict, splits: dict, extra: dict) -> None:
    """The statistics of the splits as written (`splits`: the format's, a re-split's for VQA-CP, of
    the `annotated` rows) into `stats`."""
    if splits.keys() != annotated.keys():  # re-split (VQA-CP): the counts follow the new splits
        stats["splits"] = {
            s: {"images": len({r["image_id"] for r in rows}), "questions": len(rows)}
            for s, rows in splits.items()
        }
    for split, rows in splits.items():
        stats["splits"][split].update(split_stats(rows))
    train, val = list(splits.values())[:2]
    stats["prior_accuracy_val"] = prior_accuracy(train, val)
    stats.update(extra)


def _validate(format: str, seed: int, counts: tuple[int, int, int], sizes: dict) -> None:
    """Refuse bad arguments in one line each, before anything is written."""
    if format not in FORMATS:
        raise UserError(f"format (--format) = {format!r}: choose one of {', '.join(FORMATS)}")
    _check("seed", seed, 0, 2**63 - 1)
    per_image = sizes["questions_per_image"]
    for name, value, low in zip(("train_images", "val_images", "test_images"), counts, (1, 1, 0)):
        _check(name, value, low, ID_RANGE)
        if split_sizes(format, value, per_image)[0] > ID_RANGE:
            raise UserError(
                f"{name} (--{name.replace('_', '-')}) = {value}: format {format} has "
                f"{FORMATS[format].per_image} question(s) per image, so {value} x {per_image} questions "
                f"need more than {ID_RANGE} images; give fewer images or questions per image"
            )
    _check("questions_per_image", per_image, 1, 20)
    _check("grid_size", sizes["grid_size"], 3, 64)
    _check("grid_dim", sizes["grid_dim"], 1, 8192)
    _check("box_dim", sizes["box_dim"], 1, 8192)


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
) -> dict:
    """Write a synthetic dataset into `out_dir`; return (and save as stats.json) its statistics.

    `format` (vqa.synth.formats.FORMATS) picks the dataset whose files and annotators are
    imitated: VQA v2 by default. The same arguments give byte-identical files. The dataset replaces
    `out_dir` as a whole, once complete (see the module's docstring). `render` also draws every
    image as out_dir/images/<subtype>/<the image's file name>.png (vqa.synth.render).
    """
    counts = (train_images, val_images, test_images)
    sizes = dict(
        questions_per_image=questions_per_image, grid_size=grid_size, grid_dim=grid_dim, box_dim=box_dim
    )
    _validate(format, seed, counts, sizes)
    options = dict(train_images=train_images, val_images=val_images, test_images=test_images, **sizes)
    real, tmp, old = stage(Path(out_dir))
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    try:
        stats = _write(tmp, Path(out_dir), say, seed, format, options, features, render)
        swap_in(tmp, real, old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(format_stats(stats))
    return stats


def stale_reason(stats: dict, fmt: str) -> str | None:
    """What a folder's stats.json says it holds when generate() would write other files for format
    `fmt` (another format, other annotators, another VQA-CP re-split); None when it is current."""
    have = stats.get("format", "vqa2")
    if have != fmt:
        return f"{have} data"
    if _writer(fmt).style.annotate is annotate and stats.get("annotators") != CALIBRATED_NAME:
        return f"{fmt} data from the {stats.get('annotators', 'v1')} annotators"
    own_check = getattr(_writer(fmt), "stale_reason", None)  # a format's own settings (VQA-CP: the re-split)
    return own_check(stats) if own_check else None


def synth_command(args) -> int:
    """`vqa synth`: generate the dataset and print its statistics (options: vqa/cli.py)."""
    options = dict(PRESETS[args.preset])
    for key in options:  # a size given on the command line overrides the preset's
        if getattr(args, key, None) is not None:
            options[key] = getattr(args, key)
    fmt = getattr(args, "format", None) or "vqa2"
    generate(args.out, seed=args.seed, render=args.render, quiet=args.quiet, format=fmt, **options)
    return 0

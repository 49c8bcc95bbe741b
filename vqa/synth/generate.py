"""generate() and `vqa synth`: scenes -> questions -> annotators -> files, one split at a time.

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
from vqa.synth.annotators import annotate, most_common_answer
from vqa.synth.ask import ask
from vqa.synth.features import layout_boxes, write_features
from vqa.synth.presets import PRESETS
from vqa.synth.questions import ANSWER_TYPE, question_type
from vqa.synth.scenes import make_scene
from vqa.synth.stats import format_stats, prior_accuracy, split_stats

# (split, image subtype naming the feature file, first image id of the range)
SPLITS = (("train2014", "train2014", 1), ("val2014", "val2014", 1_000_000),
          ("test-dev2015", "test2015", 2_000_000))  # fmt: skip
ID_RANGE = 999_999  # image ids of a split lie in [first, first + ID_RANGE)
# What a dataset folder written by generate() holds (and the temporary files of an interrupted write)
DATASET_NAMES = ("v2_OpenEnded_mscoco_*_questions.json", "v2_mscoco_*_annotations.json", "scenes_*.json",
                 "features_*.h5", "stats.json", "images", ".*.tmp")  # fmt: skip


def _check(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(
            f"{name} (--{name.replace('_', '-')}) = {value!r}: must be an integer from {low} to {high}"
        )


def _make_split(split_no: int, n: int, seed: int, per_image: int, grid: int):
    """Image ids, scenes, questions, annotations, true answers and boxes of one split.

    Rows are in ascending image id.
    """
    split, _, first = SPLITS[split_no]
    rnd = random.Random(f"vqa-synth/{seed}/{split}")
    ids = first + np.sort(np.random.default_rng([seed, split_no]).choice(ID_RANGE, n, replace=False))
    scenes = [make_scene(rnd, grid) for _ in range(n)]
    questions, anns, truths = [], [], []
    for image_id, asked in zip(ids.tolist(), ask(scenes, per_image, grid, rnd)):
        for k, (text, (q, truth)) in enumerate(asked.items()):
            qid = image_id * 1000 + k  # the official numbering
            answers = annotate(truth, rnd)
            questions.append({"question_id": qid, "image_id": image_id, "question": text})
            anns.append(
                {
                    "question_id": qid,
                    "image_id": image_id,
                    "question_type": question_type(text),
                    "answer_type": ANSWER_TYPE[q[0]],
                    "multiple_choice_answer": most_common_answer(answers),
                    "answers": answers,
                }
            )
            truths.append(truth.answer)
    return ids, scenes, questions, anns, truths, layout_boxes(scenes, grid, rnd)


def _staging(out: Path) -> tuple[Path, Path, Path]:
    """(the real folder, the temporary folder the dataset is written into, where the old one is put
    aside during the swap), after checking `out` and cleaning what an earlier kill left."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output folder {out}: exists and is not a folder; pass another path to --out")
    real = out.resolve()  # a symlinked folder is replaced where it lives; the link stays
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


def _write(folder: Path, shown: Path, say, seed: int, counts: tuple[int, int, int], options: dict,
           features: bool, render: bool) -> dict:  # fmt: skip
    """Write the whole dataset into `folder` (`shown`: the folder it will become, for messages)."""
    questions_per_image, grid_size = options["questions_per_image"], options["grid_size"]
    grid_dim, box_dim = options["grid_dim"], options["box_dim"]
    start = time.perf_counter()
    info = {
        "description": "Synthetic VQA v2-format data written by `vqa synth`",
        "version": "2.0",
        "contributor": "vqa synth",
        "seed": seed,
    }
    licence = {"name": "generated data, no restrictions", "url": ""}
    stats = {"generator": "vqa synth", "seed": seed, "options": options, "splits": {}}
    annotated, drawn = {}, {}
    for split_no, ((split, subtype, _), n) in enumerate(zip(SPLITS, counts)):
        ids, scenes, questions, anns, truths, boxes = _make_split(
            split_no, n, seed, questions_per_image, grid_size
        )
        # Compact JSON (no indent, no trailing newline), as the official files are.
        write_json_atomic(
            folder / f"v2_OpenEnded_mscoco_{split}_questions.json",
            {
                "info": info,
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "data_subtype": split,
                "questions": questions,
                "license": licence,
            },
        )
        if split != "test-dev2015":  # test-dev has questions only, as in VQA v2
            write_json_atomic(
                folder / f"v2_mscoco_{split}_annotations.json",
                {
                    "info": info,
                    "data_type": "mscoco",
                    "data_subtype": split,
                    "annotations": anns,
                    "license": licence,
                },
            )
            annotated[split] = [
                dict(a, question=q["question"], truth=t) for a, q, t in zip(anns, questions, truths)
            ]
        scene_rows = [
            {
                "image_id": i,
                "width": s.width,
                "height": s.height,
                "objects": [dict(o._asdict(), box=r) for o, r in zip(s.objects, rows)],
            }
            for i, s, rows in zip(ids.tolist(), scenes, boxes[3])
        ]
        write_json_atomic(
            folder / f"scenes_{subtype}.json",
            {"info": info, "data_subtype": subtype, "grid_size": grid_size, "scenes": scene_rows},
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
            )
        stats["splits"][split] = {"images": n, "questions": len(questions)}
        if split in annotated:
            stats["splits"][split].update(split_stats(annotated[split]))
        say(f"wrote {split}: {n} images, {len(questions)} questions ({time.perf_counter() - start:.1f} s)")
    stats["prior_accuracy_val"] = prior_accuracy(annotated["train2014"], annotated["val2014"])
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
) -> dict:
    """Write a synthetic VQA v2 dataset into `out_dir`; return (and save as stats.json) its statistics.

    The same arguments give byte-identical files. The dataset replaces `out_dir` as a whole, once
    complete (see the module's docstring). `render` also draws every image as
    out_dir/images/<subtype>/COCO_<subtype>_<12-digit id>.png (vqa.synth.render).
    """
    _check("seed", seed, 0, 2**63 - 1)
    counts = (train_images, val_images, test_images)
    for name, value, low in zip(("train_images", "val_images", "test_images"), counts, (1, 1, 0)):
        _check(name, value, low, ID_RANGE)
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
        stats = _write(tmp, out, say, seed, counts, options, features, render)
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
    generate(args.out, seed=args.seed, render=args.render, quiet=args.quiet, **options)
    return 0

"""generate() and `vqa synth`: scenes -> questions -> annotators -> files, one split at a time.

Every split draws from its own seeded streams (the split's name and number are in the seed), so
a split's files do not depend on the sizes of the others, and the same arguments give
byte-identical files. Every file is written atomically (vqa.io). The command line's options are
defined in vqa/cli.py; synth_command reads them.
"""

from __future__ import annotations

import random
import time
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


def _make_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output folder {out}: exists and is not a folder; pass another path to --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"output folder {out}: cannot create it ({e.strerror}); pass another path to --out"
        ) from e


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

    The same arguments give byte-identical files. Every file is written atomically. `render` also
    draws every image as out_dir/images/<subtype>/COCO_<subtype>_<12-digit id>.png (vqa.synth.render).
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
    _make_out(out)
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    start = time.perf_counter()
    options = dict(
        train_images=train_images,
        val_images=val_images,
        test_images=test_images,
        questions_per_image=questions_per_image,
        grid_size=grid_size,
        grid_dim=grid_dim,
        box_dim=box_dim,
    )
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
            out / f"v2_OpenEnded_mscoco_{split}_questions.json",
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
                out / f"v2_mscoco_{split}_annotations.json",
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
            out / f"scenes_{subtype}.json",
            {"info": info, "data_subtype": subtype, "grid_size": grid_size, "scenes": scene_rows},
        )
        if render:
            drawn[subtype] = scene_rows
        if features:
            write_features(
                out / f"features_{subtype}.h5",
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
    write_json_atomic(out / "stats.json", stats)
    if render:
        from vqa.synth.render import render_split  # PIL only when drawing

        for subtype, scene_rows in drawn.items():
            folder = render_split(out, subtype, scene_rows, grid_size)
            say(f"rendered {len(scene_rows)} images into {folder} ({time.perf_counter() - start:.1f} s)")
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

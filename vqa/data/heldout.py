"""The held-out validation split: a part of the training split's images, for sources without a
validation split (VQA-CP), so model selection never looks at the test split.

`data.val_split: heldout` holds out `data.heldout_fraction` of the training split's images (every
question of an image goes to one side: no image is in both) with a generator seeded by
`data.heldout_seed`. The images are ordered by their key (COCO id or file name, then feature file)
before the seeded shuffle, so the same seed holds out the same images whatever the order of the
files. Vocabularies, answer targets and debiasing priors come from the remaining training part
only. `data.test_split` is then scored once, at the epoch chosen on the held-out part
(vqa/training/selection.py).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vqa.data.sources import Records
from vqa.errors import UserError

HELDOUT = "heldout"  # the data.val_split value that selects this split


def heldout_images(records: Records, fraction: float, seed: int) -> np.ndarray:
    """bool [I] over the image table of `records`: True for the images held out. Only images that
    have a question count; at least one image stays on each side."""
    used = np.unique(records.image)  # rows of the image table that have questions
    if len(used) < 2:
        raise UserError(
            f"split '{records.split}': {len(used)} image(s); data.val_split {HELDOUT} needs two or more "
            "images to hold some out (use a validation split of the source instead)"
        )
    keys = records.image_keys[used]
    order = used[np.lexsort((records.image_group[used], keys.astype(str) if keys.dtype == object else keys))]
    n_out = min(max(1, round(fraction * len(used))), len(used) - 1)
    out = np.zeros(len(records.image_keys), bool)
    out[np.random.default_rng(seed).permutation(order)[:n_out]] = True
    return out


def hold_out(records: Records, fraction: float, seed: int) -> tuple[Records, Records, str]:
    """(training part, held-out part, the line for the run's log) of a training split's records."""
    out = heldout_images(records, fraction, seed)
    mask = out[records.image]  # bool [Q]
    train, held = records.select(~mask), replace(records.select(mask), split=HELDOUT)
    n_images = len(np.unique(records.image))
    line = (
        f"{HELDOUT}: {len(held):,} questions on {int(out.sum()):,} of the {n_images:,} images of "
        f"'{records.split}' ({fraction:g} of them, data.heldout_seed {seed}), held out by image for model "
        f"selection; training keeps {len(train):,} questions"
    )
    return train, held, line

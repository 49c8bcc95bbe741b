"""Which image features are not finite: the check behind every "the features hold NaN / inf" line.

Nothing on the training path pays for it: a NaN or inf in a feature file shows up as a non-finite loss
or model output at the loop's existing sync point, and only then are the features of the questions
involved read again and checked here, so the error names the file, the image and the row instead of
blaming the learning rate.
"""

from __future__ import annotations

import numpy as np


def describe(values: np.ndarray) -> str:
    """'3 NaN, 1 inf of 100,352 values' for a feature array."""
    nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    parts = [f"{nan:,} NaN" if nan else "", f"{inf:,} inf" if inf else ""]
    return f"{', '.join(p for p in parts if p)} of {values.size:,} values"


def nonfinite_features(dataset, question_ids) -> str | None:
    """'FILE: the features of image K (row R) hold ...' for the first image, in file order, of these
    questions of `dataset` (a VQADataset) whose features are not finite; None when all are finite."""
    rows = np.flatnonzero(np.isin(dataset.question_id, np.asarray(list(question_ids), np.int64)))
    features = dataset.features
    for image in np.unique(dataset.image[rows]).tolist():
        values = np.asarray(features.get(image))
        if np.isfinite(values).all():
            continue
        store = features.stores[features.store[image]]
        key = dataset.records.image_keys[image]
        return (
            f"{store.path}: the features of image {key} (row {int(features.row[image])}) are not finite "
            f"({describe(values)})"
        )
    return None

"""Shared fixtures: small synthetic datasets made once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The `tiny` synthetic preset (official JSON + HDF5 features), generated once."""
    from vqa.data.synthetic import PRESETS, generate

    root = tmp_path_factory.mktemp("tiny")
    generate(root, seed=0, quiet=True, **PRESETS["tiny"])
    return root

"""Shared fixtures: small synthetic datasets made once per test session, and the official-format fixture."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture_builder(name: str = "vqa2_tiny"):
    """tests/fixtures/<name>/build.py as a module (it writes the fixture's images, zips and TSVs)."""
    spec = importlib.util.spec_from_file_location(f"{name}_build", FIXTURES / name / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def eval_cache(tmp_path_factory):
    """`vqa eval`'s annotation cache in a folder of the session, not the user's ~/.cache (subprocesses
    inherit it); a test that needs another sets VQA_CACHE_DIR itself."""
    folder = tmp_path_factory.mktemp("vqa-cache")
    old = os.environ.get("VQA_CACHE_DIR")
    os.environ["VQA_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("VQA_CACHE_DIR", None)
    else:
        os.environ["VQA_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def fixture_builder():
    """The builder of tests/fixtures/vqa2_tiny (official-format JSON; images, zips and TSVs on demand)."""
    return load_fixture_builder("vqa2_tiny")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The `tiny` synthetic preset (official JSON + HDF5 features), generated once."""
    from vqa.synth.generate import generate
    from vqa.synth.presets import PRESETS

    root = tmp_path_factory.mktemp("tiny")
    generate(root, seed=0, quiet=True, **PRESETS["tiny"])
    return root

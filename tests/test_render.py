"""`vqa synth --render`: one PNG per image, deterministic, faithful to the scenes, and extractable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from PIL import Image

from vqa.synth.generate import generate
from vqa.synth.render import COLORS, cell_centre, image_size, png_name

SMALL = dict(train_images=40, val_images=20, test_images=4, questions_per_image=4, grid_dim=16, box_dim=16)
SUBTYPES = ("train2014", "val2014", "test2015")
ROOT = Path(__file__).resolve().parents[1]


def scenes(root: Path, subtype: str) -> list[dict]:
    return json.loads((root / f"scenes_{subtype}.json").read_text())["scenes"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("render") / "synth"
    generate(root, seed=5, render=True, quiet=True, **SMALL)
    return root


def test_every_image_has_one_png_of_the_scene_size(rendered):
    assert sorted(p.name for p in (rendered / "images").iterdir()) == sorted(SUBTYPES)  # no temp folders
    for subtype in SUBTYPES:
        rows = scenes(rendered, subtype)
        folder = rendered / "images" / subtype
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            png_name(subtype, s["image_id"]) for s in rows
        )
        for s in rows:
            with Image.open(folder / png_name(subtype, s["image_id"])) as img:
                assert img.mode == "RGB" and img.size == image_size(s["width"], s["height"])
                assert max(img.size) == 224


def test_same_seed_gives_byte_identical_pngs_and_render_off_writes_none(rendered, tmp_path):
    generate(tmp_path / "again", seed=5, render=True, quiet=True, **SMALL)
    for subtype in SUBTYPES:
        for p in (rendered / "images" / subtype).iterdir():
            assert (tmp_path / "again" / "images" / subtype / p.name).read_bytes() == p.read_bytes()
    generate(tmp_path / "plain", seed=5, quiet=True, **SMALL)
    assert not (tmp_path / "plain" / "images").exists()
    for name in (
        "scenes_train2014.json",
        "features_train2014.h5",
        "stats.json",
    ):  # render changes nothing else
        assert (tmp_path / "plain" / name).read_bytes() == (rendered / name).read_bytes()


def test_each_object_is_drawn_in_its_colour_at_its_cell_centre(rendered):
    checked = 0
    for subtype in SUBTYPES:
        for s in scenes(rendered, subtype):
            with Image.open(rendered / "images" / subtype / png_name(subtype, s["image_id"])) as img:
                w, h = img.size
                for o in s["objects"]:
                    cx, cy = cell_centre(o, w, h, 7)
                    assert img.getpixel((int(cx), int(cy))) == COLORS[o["color"]], (subtype, s["image_id"], o)
                    checked += 1
    assert checked > 100


def test_rendering_again_replaces_the_folder(rendered, tmp_path):
    root = tmp_path / "d"
    generate(root, seed=1, render=True, quiet=True, **SMALL)
    generate(root, seed=2, render=True, quiet=True, **SMALL)
    names = {p.name for p in (root / "images" / "train2014").iterdir()}
    assert names == {png_name("train2014", s["image_id"]) for s in scenes(root, "train2014")}
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(SUBTYPES)


@pytest.mark.slow
def test_rendered_images_extract_and_train(rendered, tmp_path):
    """image -> features -> training: `vqa extract` on the PNGs, then one epoch on those features."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def vqa(*args):
        r = subprocess.run(
            [sys.executable, "-m", "vqa", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stdout + r.stderr

    for subtype in ("train2014", "val2014"):
        out = rendered / f"rendered_{subtype}.h5"
        vqa("extract", "--images", str(rendered / "images" / subtype), "--out", str(out), "--arch", "resnet18",
            "--size", "64", "--weights", "none", "--workers", "0", "--device", "cpu")  # fmt: skip
        with h5py.File(out, "r") as f:
            assert sorted(f["ids"][()].tolist()) == sorted(s["image_id"] for s in scenes(rendered, subtype))
            assert f["grid"].shape[:2] == (len(f["ids"]), 512)
    run = tmp_path / "run"
    vqa("train", "--config", "configs/synthetic/avg_soft.yaml", f"data.root={rendered}",
        "data.features_file=rendered_{split}.h5", f"out_dir={run}", "train.epochs=1", "model.rnn_dim=32",
        "model.hidden_dim=64", "data.synth_preset=")  # fmt: skip
    lines = [
        json.loads(x) for x in (run / "avg_soft" / "metrics.jsonl").read_text().splitlines() if x.strip()
    ]
    assert lines and lines[-1]["epoch"] == 1

"""scripts/download.sh for VQA v1, VQA-CP v2, OK-VQA and VizWiz-VQA, against file:// mirrors.

Each mirror holds the publisher's archives, named and laid out as the servers serve them, made
here from a small synthetic dataset of that format (`vqa synth --format`): the VQA v1 zips,
VQA-CP's bare JSON files, OK-VQA's one zip per JSON file, VizWiz's Annotations.zip and image zips.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from vqa.synth.generate import generate

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "download.sh"
SIZES = dict(train_images=12, val_images=6, test_images=3, questions_per_image=2, grid_size=3, grid_dim=4,
             box_dim=4)  # fmt: skip
# What each dataset's files are, as the download script leaves them in DEST/<dataset>
FILES = {
    "vqa1": ["OpenEnded_mscoco_train2014_questions.json", "OpenEnded_mscoco_val2014_questions.json",
             "OpenEnded_mscoco_test-dev2015_questions.json", "OpenEnded_mscoco_test2015_questions.json",
             "MultipleChoice_mscoco_val2014_questions.json", "mscoco_train2014_annotations.json",
             "mscoco_val2014_annotations.json"],
    "vqacp2": [f"vqacp_v2_{s}_{k}.json" for s in ("train", "test") for k in ("questions", "annotations")],
    "okvqa": ["OpenEnded_mscoco_train2014_questions.json", "OpenEnded_mscoco_val2014_questions.json",
              "mscoco_train2014_annotations.json", "mscoco_val2014_annotations.json"],
    "vizwiz": ["train.json", "val.json", "test.json"],
}  # fmt: skip
VARIABLE = {
    "vqa1": "VQA_BASE_URL",
    "vqacp2": "VQACP_BASE_URL",
    "okvqa": "OKVQA_BASE_URL",
    "vizwiz": "VIZWIZ_BASE_URL",
}


def _zip(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (seed * 40 % 256, 90, 160)).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """{dataset: (the files the mirror's archives hold, by name)}, and MIRROR with the archives."""
    root = tmp_path_factory.mktemp("mirror")
    files: dict[str, dict[str, bytes]] = {}
    for fmt in FILES:
        data = tmp_path_factory.mktemp(f"synth-{fmt}")
        generate(data, seed=0, quiet=True, format=fmt, features=False, **SIZES)
        files[fmt] = {p.name: p.read_bytes() for p in data.glob("*.json") if p.name in FILES[fmt]}
    v1 = files["vqa1"]
    test = json.loads(v1["OpenEnded_mscoco_test-dev2015_questions.json"])
    v1["OpenEnded_mscoco_test2015_questions.json"] = json.dumps(dict(test, data_subtype="test2015")).encode()
    v1["MultipleChoice_mscoco_val2014_questions.json"] = b'{"questions": [], "task_type": "Multiple-Choice"}'
    o, m = "OpenEnded_mscoco", "MultipleChoice_mscoco"
    for name, members in {
        "Questions_Train_mscoco.zip": [f"{o}_train2014_questions.json"],
        "Questions_Val_mscoco.zip": [f"{o}_val2014_questions.json", f"{m}_val2014_questions.json"],
        "Questions_Test_mscoco.zip": [f"{o}_test2015_questions.json", f"{o}_test-dev2015_questions.json"],
        "Annotations_Train_mscoco.zip": ["mscoco_train2014_annotations.json"],
        "Annotations_Val_mscoco.zip": ["mscoco_val2014_annotations.json"],
    }.items():
        _zip(root / "vqa" / name, {n: v1[n] for n in members})
    for name, data in files["vqacp2"].items():  # served as plain JSON
        (root / "vqacp").mkdir(exist_ok=True)
        (root / "vqacp" / name).write_bytes(data)
    for name, data in files["okvqa"].items():  # one zip per file, named after it
        _zip(root / "okvqa" / f"{name}.zip", {name: data})
    # VizWiz: the annotations in a folder; train.zip with a top folder, val.zip and test.zip flat
    _zip(
        root / "vizwiz" / "vqa_data" / "Annotations.zip",
        {f"Annotations/{n}": d for n, d in files["vizwiz"].items()},
    )
    for split in ("train", "val", "test"):
        names = [e["image"] for e in json.loads(files["vizwiz"][f"{split}.json"])]
        prefix = f"{split}/" if split == "train" else ""
        _zip(root / "vizwiz" / "images" / f"{split}.zip", {prefix + n: _jpeg(i) for i, n in enumerate(names)})
    lines = [
        f"vizwiz/{p.name} {p.stat().st_size} {hashlib.sha256(p.read_bytes()).hexdigest()}"
        for p in sorted((root / "vizwiz").rglob("*.zip"))
    ]
    (root / "MANIFEST").write_text("\n".join(lines) + "\n")
    return root, files


def download(root: Path, dataset: str, dest: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"vqa1": "vqa", "vqacp2": "vqacp", "okvqa": "okvqa", "vizwiz": "vizwiz"}
    env = {
        **os.environ,
        **{VARIABLE[d]: f"file://{root}/{base[d]}" for d in VARIABLE},
        "VQA_MANIFEST": str(root / "MANIFEST"),
        "VQA_CMD": f"{sys.executable} -m vqa",
        **env,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), dataset, *args, str(dest)], capture_output=True, text=True, env=env
    )


def tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("dataset", ["vqa1", "vqacp2", "okvqa", "vizwiz"])
def test_each_dataset_lands_in_its_layout_and_a_rerun_skips_it(mirror, tmp_path, dataset):
    root, files = mirror
    dest = tmp_path / "data"
    proc = download(root, dataset, dest, "--no-images")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (dest / dataset).iterdir()) == sorted(FILES[dataset])
    for name in FILES[dataset]:
        assert (dest / dataset / name).read_bytes() == files[dataset][name], name  # as the publisher has it
    assert sorted(p.name for p in dest.iterdir()) == [dataset]  # no archives or temporary folders left
    assert f"done: {dest}/{dataset}" in proc.stdout and "images skipped" in proc.stdout

    before = tree(dest)
    again = download(root, dataset, dest, "--no-images")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert (
        sum(x.startswith("skip ") for x in lines)
        == {"vqa1": 5, "vqacp2": 4, "okvqa": 4, "vizwiz": 1}[dataset]
    )
    assert not any(x.startswith(("download ", "resume ", "unpack ")) for x in lines)
    assert tree(dest) == before

    # the dataset's source reads the downloaded files
    from vqa.data.sources import get_source

    split = {"vqa1": "val2014", "vqacp2": "test", "okvqa": "val2014", "vizwiz": "val"}[dataset]
    assert len(get_source(dataset).load(dest / dataset, split)) > 0


def test_vizwiz_images_unpack_with_or_without_a_top_folder_and_resume(mirror, tmp_path):
    root, files = mirror
    dest = tmp_path / "data"
    part = dest / "downloads" / "vizwiz" / "val.zip.part"  # an interrupted earlier run
    data = (root / "vizwiz" / "images" / "val.zip").read_bytes()
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:100])
    proc = download(root, "vizwiz", dest)
    assert proc.returncode == 0, proc.stderr
    assert f"resume file://{root}/vizwiz/images/val.zip (100 bytes already" in proc.stdout
    for split in ("train", "val", "test"):
        names = sorted(e["image"] for e in json.loads(files["vizwiz"][f"{split}.json"]))
        assert sorted(p.name for p in (dest / "vizwiz" / "images" / split).iterdir()) == names, split
        assert any(
            x.startswith("verified vizwiz/") and f"/{split}.zip" in x for x in proc.stdout.splitlines()
        )
    assert sorted(p.name for p in (dest / "vizwiz").iterdir()) == sorted([*FILES["vizwiz"], "images"])
    assert "vqa extract --images" in proc.stdout
    again = download(root, "vizwiz", dest)
    assert sum(x.startswith("skip ") for x in again.stdout.splitlines()) == 4


def test_vizwiz_train_images_are_checked_against_the_publishers_size(mirror, tmp_path):
    """Without a manifest, images/train.zip must have the server's size: a mirror's other build is refused."""
    root, _ = mirror
    dest = tmp_path / "data"
    proc = download(root, "vizwiz", dest, VQA_MANIFEST="")
    size = (root / "vizwiz" / "images" / "train.zip").stat().st_size
    assert proc.returncode == 1
    assert (
        f"vizwiz/train.zip is {size} bytes, not 11298421598 (the publisher's size); deleted it" in proc.stderr
    )
    assert not (dest / "vizwiz" / "images" / "train").exists()
    assert not list((dest / "downloads" / "vizwiz").glob("train.zip*"))


def test_wrong_arguments_stop_before_anything_downloads(mirror, tmp_path):
    root, _ = mirror
    dest = tmp_path / "data"
    for dataset, args, message in (
        ("gqa", [], "unknown dataset 'gqa'; choose one of vqa2, vqa1, vqacp2, okvqa, vizwiz"),
        ("vizwiz", ["--features", "bottomup36"], "VizWiz has no published region features"),
        ("okvqa", ["--features", "resnet"], "--features is 'resnet'"),
    ):
        proc = download(root, dataset, dest, *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    unnamed = subprocess.run(
        ["bash", str(SCRIPT), "--no-images"], capture_output=True, text=True, cwd=tmp_path
    )
    assert unnamed.returncode == 2
    assert "name the dataset: scripts/download.sh {vqa2|vqa1|vqacp2|okvqa|vizwiz}" in unnamed.stderr
    assert not dest.exists() and not (tmp_path / "data").exists()
    helped = subprocess.run(["bash", str(REPO / "scripts" / "download_vqa2.sh"), "--help"], capture_output=True,
                            text=True)  # fmt: skip
    assert helped.returncode == 0 and "vqacp2" in helped.stdout and "VIZWIZ_BASE_URL" in helped.stdout


def test_vqacp2_features_are_the_coco_boxes_shared_with_vqa2(mirror, tmp_path, fixture_builder):
    """--features for a COCO dataset converts the COCO boxes into DEST/vqa2 (VQA v2's questions name
    each folder's images), without test2015 for VQA-CP; configs/vqacp2/updn_*.yaml read them there."""
    root, _ = mirror
    coco = fixture_builder.build_mirror(tmp_path / "vqa2-mirror")
    dest = tmp_path / "data"
    proc = download(root, "vqacp2", dest, "--no-images", "--features", "bottomup36",
                    VQA_BASE_URL=f"file://{coco}/vqa", FEATURES_BASE_URL=f"file://{coco}/bottomup",
                    VQA_MANIFEST=str(coco / "MANIFEST"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (dest / "vqa2").glob("boxes_*")) == [
        "boxes_train2014.h5",
        "boxes_val2014.h5",
    ]
    assert "test2015_36.zip" not in proc.stdout
    assert f"for `vqa train --config configs/vqacp2/updn_soft.yaml data.root={dest}/vqacp2`" in proc.stdout
    from vqa.config import load_config

    cfg = load_config(REPO / "configs" / "vqacp2" / "updn_soft.yaml", [f"data.root={dest}/vqacp2"])
    assert (Path(cfg.data.root) / cfg.data.features_file.format(split="train2014")).resolve() == (
        dest / "vqa2" / "boxes_train2014.h5"
    ).resolve()

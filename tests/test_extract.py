"""`vqa extract`: HDF5 layout, ids, pooled vectors, unreadable images, kill and resume."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from vqa.cli import main
from vqa.data.features import FeatureStore
from vqa.errors import UserError
from vqa.features.extract import extract
from vqa.features.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_trunk,
    default_workers,
    image_transform,
    parse_image_id,
)

IDS = [9, 25, 30, 34, 36, 49, 61, 64]  # the train2014 images of the fixture
SMALL = dict(arch="resnet18", size=64, weights="none", workers=0, batch_size=3, device="cpu")


@pytest.fixture(scope="module")
def shared(tmp_path_factory, fixture_builder):
    """The fixture's 8 train2014 JPEGs and their features, extracted once (batches of 2)."""
    root = tmp_path_factory.mktemp("extract")
    fixture_builder.write_images(root / "train2014", "train2014")
    extract(root / "train2014", root / "reference.h5", **{**SMALL, "batch_size": 2})
    return root


@pytest.fixture
def images(shared, tmp_path):
    """A copy of the JPEGs that a test may change."""
    return Path(shutil.copytree(shared / "train2014", tmp_path / "train2014"))


@pytest.fixture
def reference(shared) -> dict:
    with h5py.File(shared / "reference.h5") as f:
        return {"ids": f["ids"][()], "grid": f["grid"][()], "path": shared / "reference.h5"}


def reference_grid(folder: Path, image_id: int) -> np.ndarray:
    """One image through the same trunk and transform, outside the extraction loop: [D, S, S]."""
    from PIL import Image

    trunk, _ = build_trunk("resnet18", "none", seed=0)
    with Image.open(folder / f"COCO_train2014_{image_id:012d}.jpg") as im:
        x = image_transform(64, 0.875)(im.convert("RGB"))  # uint8 [3, 64, 64]
    x = TF.normalize(
        TF.to_dtype(x, torch.float32, scale=True), IMAGENET_MEAN, IMAGENET_STD
    )  # torchvision's way
    with torch.inference_mode():
        return trunk(x[None])[0].half().numpy()


def test_parse_image_id():
    assert parse_image_id("COCO_train2014_000000000009.jpg") == 9
    assert parse_image_id("COCO_test2015_000000581929.jpg") == 581929
    assert parse_image_id("000000000139.jpg") == 139  # COCO 2017 names
    assert parse_image_id("photo.jpg") is None
    assert parse_image_id("COCO_val2014_12ab.jpg") is None


def test_layout_ids_and_values(shared):
    images, out = shared / "train2014", shared / "reference.h5"
    assert not out.with_name(out.name + ".partial").exists()
    with h5py.File(out, "r") as f:
        assert f["ids"].dtype == np.int64 and f["ids"][()].tolist() == IDS
        assert f["grid"].shape == (8, 512, 2, 2) and f["grid"].dtype == np.float16  # (N, D, S, S), S = 64/32
        assert f["count"][0] == 8
        assert dict(f.attrs) | {} == {
            "format": "vqa-features", "version": 1, "arch": "resnet18", "size": 64, "weights": "none",
            "central_fraction": 0.875, "pooled": False,
        }  # fmt: skip
        row = f["ids"][()].tolist().index(49)
        np.testing.assert_allclose(f["grid"][row], reference_grid(images, 49), atol=2e-3)
    store = FeatureStore(out, "grid")  # the training reader takes the file as it is
    assert store.dim == 512 and store.max_regions == 4 and store.get(61).shape == (4, 512)


def test_pooled_is_the_mean_of_the_grid(shared, reference, tmp_path):
    # decoding in 2 worker processes this time
    assert (
        extract(shared / "train2014", tmp_path / "pooled.h5", pooled=True, **{**SMALL, "workers": 2})[
            "images"
        ]
        == 8
    )
    with h5py.File(tmp_path / "pooled.h5") as p:
        assert p["grid"].shape == (8, 512, 1, 1) and bool(p.attrs["pooled"])
        mean = reference["grid"].astype(np.float32).mean((2, 3), keepdims=True)
        np.testing.assert_allclose(p["grid"][()].astype(np.float32), mean, rtol=2e-3, atol=2e-3)
    assert FeatureStore(tmp_path / "pooled.h5", "grid").get(9).shape == (1, 512)


def test_rerun_is_a_no_op_and_settings_are_checked(images, reference, tmp_path, capsys, fixture_builder):
    out = tmp_path / "f.h5"
    shutil.copy(reference["path"], out)
    mtime = out.stat().st_mtime_ns
    assert extract(images, out, **SMALL)["images"] == 0
    assert "nothing to do" in capsys.readouterr().out and out.stat().st_mtime_ns == mtime
    with pytest.raises(UserError, match=r"f\.h5: already extracted with other settings: size=64 \(now 96\)"):
        extract(images, out, **{**SMALL, "size": 96})
    fixture_builder.write_images(images, "train2014", [70])  # an image the file lacks
    with pytest.raises(UserError, match="without 1 images .*COCO_train2014_000000000070.jpg.*--overwrite"):
        extract(images, out, **SMALL)
    assert extract(images, out, overwrite=True, **SMALL)["images"] == 9


def test_unreadable_images_are_named_and_retried(images, tmp_path, capsys, fixture_builder):
    (images / "COCO_train2014_000000000099.jpg").write_bytes(b"not a jpeg")
    good = (images / "COCO_train2014_000000000030.jpg").read_bytes()
    (images / "COCO_train2014_000000000100.jpg").write_bytes(good[: len(good) // 2])  # truncated
    out = tmp_path / "f.h5"
    with pytest.raises(
        UserError, match=r"2 unreadable images .*first: COCO_train2014_000000000099\.jpg.*kept"
    ):
        extract(images, out, **SMALL)
    err = capsys.readouterr().err
    assert "unreadable image" in err and "000000000099.jpg" in err and "000000000100.jpg" in err
    assert not out.exists()
    with h5py.File(out.with_name("f.h5.partial")) as f:
        assert f["count"][0] == 8 and sorted(f["ids"][:8].tolist()) == IDS  # the good ones are kept
    # the user replaces one broken file and deletes the other: only that one is extracted
    fixture_builder.write_images(images, "train2014", [99])
    (images / "COCO_train2014_000000000100.jpg").unlink()
    assert extract(images, out, **SMALL)["images"] == 1
    assert "1 of 9 images" in capsys.readouterr().out
    with h5py.File(out) as f:  # capacity was 10: the written rows are copied into a 9-row file
        assert sorted(f["ids"][()].tolist()) == sorted([*IDS, 99]) and f["grid"].shape[0] == 9
        assert f["count"][0] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5", "train2014"]  # no partial or temporary file


def test_bad_inputs_are_one_line_errors(images, tmp_path, capsys):
    def error(*argv):
        assert main(["extract", *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    small = ["--arch", "resnet18", "--size", "64", "--weights", "none", "--workers", "0"]
    out = str(tmp_path / "f.h5")
    assert "nowhere: image folder not found" in error(
        "--images", str(tmp_path / "nowhere"), "--out", out, *small
    )
    (tmp_path / "empty").mkdir()
    assert "no .jpg/.jpeg/.png images" in error("--images", str(tmp_path / "empty"), "--out", out, *small)
    (images / "holiday.jpg").write_bytes(b"")
    assert "holiday.jpg: no COCO image id" in error("--images", str(images), "--out", out, *small)
    (images / "holiday.jpg").unlink()
    (images / "000000000009.png").write_bytes(b"")
    assert "image id 9 also belongs to" in error("--images", str(images), "--out", out, *small)
    (images / "000000000009.png").unlink()
    assert "--arch 'vgg16' is not supported; choose one of resnet18" in error(
        "--images", str(images), "--out", out, "--arch", "vgg16", "--overwrite"
    )  # checked by extract, not the parser: vqa/cli.py imports no torch
    args = ["--images", str(images), "--out", out, "--arch", "resnet18", "--weights", str(tmp_path / "w.pth")]
    assert "w.pth: no such file" in error(*args)
    torch.save({"nonsense": torch.zeros(1)}, tmp_path / "w.pth")
    assert "w.pth: not a state dict of torchvision resnet18" in error(*args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "train2014", "w.pth"]  # nothing written


@pytest.mark.slow  # a subprocess: about 10 s on a busy 2-core machine
def test_killed_extraction_resumes_to_the_same_file(images, reference, tmp_path):
    """SIGKILL a real `vqa extract` mid-way, resume it, compare with an uninterrupted run."""
    jpeg = images / "COCO_train2014_000000000036.jpg"  # the 5th image: the 3rd batch of 2
    data = jpeg.read_bytes()
    jpeg.unlink()
    os.mkfifo(jpeg)  # reading it blocks: the process stops after two committed batches
    out = tmp_path / "features.h5"
    partial = tmp_path / "features.h5.partial"
    cmd = [sys.executable, "-m", "vqa", "extract", "--images", str(images), "--out", str(out)]
    cmd += ["--arch", "resnet18", "--size", "64", "--weights", "none", "--workers", "0", "--batch-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    count, deadline = 0, time.monotonic() + 60
    while count < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        if partial.exists():
            with h5py.File(partial, "r") as f:
                count = int(f["count"][0])
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert count == 4, proc.stderr
    assert not out.exists()
    with h5py.File(partial, "r") as f:  # a killed extraction leaves a readable file
        assert f["count"][0] == 4 and f["ids"][:4].tolist() == IDS[:4]
    with pytest.raises(UserError, match="interrupted extraction was started with other settings: size=64"):
        extract(images, out, **{**SMALL, "size": 96})

    jpeg.unlink()
    jpeg.write_bytes(data)
    assert extract(images, out, **{**SMALL, "batch_size": 2})["images"] == 4  # only the rest
    assert not partial.exists()
    with h5py.File(out) as f:  # the same file as an uninterrupted run
        assert f["ids"][()].tolist() == reference["ids"].tolist() == IDS
        np.testing.assert_allclose(f["grid"][()], reference["grid"], atol=1e-3)


def test_garbage_past_the_count_is_overwritten(images, reference, tmp_path):
    """Rows a crash left half-written (past `count`) are ignored and written again."""
    from vqa.features.writer import GridRowWriter, create_grid_file

    ids, grid = reference["ids"], reference["grid"]
    out = tmp_path / "f.h5"
    partial = tmp_path / "f.h5.partial"  # as a crash mid-batch leaves it: 3 rows committed, 2 more written
    attrs = dict(arch="resnet18", size=64, weights="none", central_fraction=0.875, pooled=False)
    create_grid_file(partial, 8, 512, 2, attrs)
    writer = GridRowWriter(partial)
    writer.write(ids[:3], grid[:3])
    writer.file.seek(writer.offsets["grid"] + 3 * writer.row_bytes)
    writer.file.write(np.full((2, 512, 2, 2), 7, "<f2").tobytes())
    writer.file.seek(writer.offsets["ids"] + 3 * 8)
    writer.file.write(np.asarray([64, 61], "<i8").tobytes())
    writer.close()

    assert extract(images, out, **SMALL)["images"] == 5
    with h5py.File(out) as f:
        assert f["ids"][()].tolist() == IDS
        np.testing.assert_allclose(f["grid"][()], grid, atol=1e-3)


def test_paper_grid_is_14_by_14_at_448(images, tmp_path):
    """ResNets divide the input side by 32: 448 -> 14 (resnet18 here for speed; resnet152 is 2048 wide)."""
    for path in sorted(images.iterdir())[1:]:
        path.unlink()
    out = tmp_path / "f.h5"
    extract(images, out, **{**SMALL, "size": 448})
    with h5py.File(out) as f:
        assert f["grid"].shape == (1, 512, 14, 14) and f["grid"].dtype == np.float16
        assert f["ids"][()].tolist() == [9]
    trunk, dim = build_trunk("resnet152", "none")
    assert dim == 2048 and trunk[-1][-1].conv3.out_channels == 2048  # layer4's last block


def test_rows_are_written_on_one_background_thread_in_order(images, reference, tmp_path, monkeypatch):
    import threading

    from vqa.features.writer import GridRowWriter

    calls = []
    write = GridRowWriter.write

    def spy(self, ids, grid):
        calls.append((threading.current_thread().name, self.count, ids.tolist()))
        write(self, ids, grid)

    monkeypatch.setattr(GridRowWriter, "write", spy)
    assert extract(images, tmp_path / "f.h5", **SMALL)["images"] == 8
    assert [c[0] for c in calls] == ["extract-writer"] * 3  # batches of 3, 3, 2: not the main thread
    assert [c[1] for c in calls] == [0, 3, 6] and sum((c[2] for c in calls), []) == IDS
    with h5py.File(tmp_path / "f.h5") as f:
        np.testing.assert_allclose(f["grid"][()], reference["grid"], atol=1e-3)


def test_a_failed_write_in_the_thread_is_a_user_error_and_resumes(images, reference, tmp_path, monkeypatch):
    """An error in the writer thread stops the extraction in the main thread; committed rows stay."""
    import errno

    from vqa.features.writer import GridRowWriter

    write = GridRowWriter.write

    def full_disk(self, ids, grid):
        if self.count >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, ids, grid)

    monkeypatch.setattr(GridRowWriter, "write", full_disk)
    out = tmp_path / "f.h5"
    with pytest.raises(
        UserError, match=r"f\.h5\.partial: write failed \(No space left on device\).*after image 3"
    ):
        extract(images, out, **SMALL)
    with h5py.File(tmp_path / "f.h5.partial") as f:
        assert f["count"][0] == 3 and f["ids"][:3].tolist() == IDS[:3]
    monkeypatch.setattr(GridRowWriter, "write", write)
    assert extract(images, out, **SMALL)["images"] == 5  # the same command continues
    with h5py.File(out) as f:
        assert f["ids"][()].tolist() == IDS
        np.testing.assert_allclose(f["grid"][()], reference["grid"], atol=1e-3)


def test_workers_default_to_the_usable_cores(images, tmp_path, capsys):
    assert default_workers() >= 1
    args = ["--arch", "resnet18", "--size", "64", "--weights", "none", "--device", "cpu"]
    assert main(["extract", "--images", str(images), "--out", str(tmp_path / "f.h5"), *args]) == 0
    assert f", {default_workers()} workers" in capsys.readouterr().out

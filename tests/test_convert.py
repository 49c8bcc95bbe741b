"""`vqa convert --from bottomup-tsv` on TSV files in the exact public format, and the public grid HDF5."""

import json
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import load_fixture_builder

import vqa.features.writer
from vqa.cli import main
from vqa.data.features import FeatureStore
from vqa.errors import UserError
from vqa.features.convert import convert_bottomup_tsv
from vqa.features.writer import spatial_features

BUILD = load_fixture_builder("vqa2_tiny")  # module level: the helpers below use it


def temporary_files(folder: Path) -> list[str]:
    """Names an atomic write (vqa.io.atomic_path) left behind: none, after success or failure."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def make_images(seed: int, ids: list[int], boxes: tuple[int, int], dim: int = 2048) -> list[dict]:
    return BUILD.bottomup_rows(ids, boxes, dim, seed)


def write_tsv(path: Path, images: list[dict]) -> Path:
    return BUILD.write_bottomup_tsv(path, images)


def check_store(out: Path, images: list[dict], atol: float = 1e-2) -> None:
    store = FeatureStore(out, "boxes")
    assert store.dim == images[0]["features"].shape[1]
    assert store.max_regions == max(len(im["boxes"]) for im in images)
    with h5py.File(out) as f:
        for im in images:
            row = store.index[im["image_id"]]
            start, end = f["pos_boxes"][row]
            np.testing.assert_array_equal(f["image_bb"][start:end], im["boxes"])
            assert (f["image_w"][row], f["image_h"][row]) == (im["image_w"], im["image_h"])
            np.testing.assert_allclose(
                f["spatial_features"][start:end], spatial_features(im["boxes"], im["image_w"], im["image_h"])
            )
            np.testing.assert_allclose(store.get(im["image_id"]), im["features"], rtol=1e-3, atol=atol)


def test_spatial_features_formula():
    boxes = np.asarray([[10, 20, 110, 70]], np.float32)
    np.testing.assert_allclose(
        spatial_features(boxes, 200, 100), [[0.05, 0.2, 0.55, 0.7, 0.5, 0.5]], rtol=1e-6
    )


def test_36_boxes(tmp_path):
    images = make_images(0, [42, 73, 74], (36, 36))
    out = tmp_path / "boxes_val2014.h5"
    assert (
        main(
            [
                "convert",
                "--from",
                "bottomup-tsv",
                str(write_tsv(tmp_path / "val.tsv", images)),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with h5py.File(out) as f:
        assert f["ids"][()].tolist() == [42, 73, 74]
        assert f["pos_boxes"][()].tolist() == [[0, 36], [36, 72], [72, 108]]
        assert f["image_features"].shape == (108, 2048) and f["image_features"].dtype == np.float16
        assert f["image_bb"].shape == (108, 4) and f["spatial_features"].shape == (108, 6)
        assert (f.attrs["boxes_min"], f.attrs["boxes_max"], f.attrs["source"]) == (36, 36, "bottomup-tsv")
    check_store(out, images)
    assert temporary_files(tmp_path) == []


def test_adaptive_boxes_from_several_files_in_bounded_memory(tmp_path, monkeypatch):
    images = make_images(1, list(range(1, 161)), (10, 100), dim=256)
    files = [write_tsv(tmp_path / f"trainval.tsv.{k}", images[k::2]) for k in range(2)]
    monkeypatch.setattr(vqa.features.writer, "BLOCK_BOXES", 150)  # many blocks of about 150 boxes
    out = tmp_path / "adaptive.h5"
    tracemalloc.start()
    convert_bottomup_tsv(files, out, dtype="float32")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    total = sum(im["features"].nbytes for im in images)
    assert peak < total / 4, (peak, total)  # streamed: never the whole file in memory
    with h5py.File(out) as f:
        lo, hi = f.attrs["boxes_min"], f.attrs["boxes_max"]
        assert 10 <= lo < hi <= 100 and f["image_features"].dtype == np.float32
        assert f["pos_boxes"][-1, 1] == f["image_features"].shape[0] == sum(len(im["boxes"]) for im in images)
    check_store(out, images, atol=0)


def test_questions_keep_one_split(tmp_path, capsys):
    images = make_images(2, [9, 25, 42, 73], (36, 36), dim=64)
    tsv = write_tsv(tmp_path / "trainval_36.tsv", images)
    questions = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    qs = [{"image_id": i, "question": "What is it?", "question_id": i * 1000} for i in (42, 73)]
    questions.write_text(json.dumps({"questions": qs}))
    out = tmp_path / "boxes_val2014.h5"
    convert_bottomup_tsv([tsv], out, questions=[questions])
    assert "2 images of other splits skipped" in capsys.readouterr().out
    assert sorted(FeatureStore(out, "boxes").index) == [42, 73]
    # an image the questions ask about but no TSV holds: refused, nothing written
    questions.write_text(
        json.dumps({"questions": [*qs, {"image_id": 139, "question": "Why?", "question_id": 1}]})
    )
    with pytest.raises(
        UserError, match="1 images of .*val2014_questions.json are in no TSV file .*image 139"
    ):
        convert_bottomup_tsv([tsv], tmp_path / "other.h5", questions=[questions])
    assert not (tmp_path / "other.h5").exists() and temporary_files(tmp_path) == []


def test_damaged_files_are_one_line_errors(tmp_path, capsys):
    images = make_images(3, [1, 2, 3], (10, 12), dim=32)
    good = write_tsv(tmp_path / "good.tsv", images).read_text().splitlines()
    out = tmp_path / "out.h5"

    def error(lines: list[str]) -> str:
        path = tmp_path / "bad.tsv"
        path.write_text("\n".join(lines) + "\n")
        assert main(["convert", "--from", "bottomup-tsv", str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "bad.tsv" in err[0], err
        assert not out.exists() and temporary_files(tmp_path) == []
        return err[0]

    cols = good[1].split("\t")
    assert "bad.tsv:2: 5 tab-separated columns, expected 6" in error([good[0], "\t".join(cols[:5])])
    assert "bad.tsv:2: column 'features' is not base64" in error([good[0], "\t".join([*cols[:5], "@@@"])])
    wrong_n = "\t".join([cols[0], cols[1], cols[2], str(int(cols[3]) + 1), *cols[4:]])
    assert "bad.tsv:1: 'boxes' holds" in error([wrong_n])
    assert "bad.tsv:3: image 1 appears a second time" in error([good[0], good[1], good[0]])
    other_dim = write_tsv(tmp_path / "d.tsv", make_images(4, [7], (10, 10), dim=16)).read_text().strip()
    assert "bad.tsv:2: image 7 has 16-d features, earlier images 32-d" in error([good[0], other_dim])
    assert "bad.tsv:1: image_id x is not an integer in int64" in error(["\t".join(["x", *cols[1:]])])
    assert "bad.tsv:1: image_w 1.5 is not an integer" in error(["\t".join([cols[0], "1.5", *cols[2:]])])


def test_existing_output_needs_overwrite(tmp_path, capsys):
    tsv = write_tsv(tmp_path / "a.tsv", make_images(5, [1], (10, 10), dim=8))
    out = tmp_path / "out.h5"
    out.write_text("keep me")
    assert main(["convert", "--from", "bottomup-tsv", str(tsv), "--out", str(out)]) == 2
    assert "out.h5: already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main(["convert", "--from", "bottomup-tsv", str(tsv), "--out", str(out), "--overwrite"]) == 0
    assert FeatureStore(out, "boxes").get(1).shape == (10, 8)


def test_public_grid_layout_is_read_without_conversion(tmp_path):
    """pytorch-vqa's preprocess-images.py layout: `features` (N, 2048, 14, 14) float16, `ids` int32."""
    rng = np.random.default_rng(6)
    grid = rng.standard_normal((3, 2048, 14, 14)).astype(np.float16)
    path = tmp_path / "resnet-14x14.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=grid, chunks=(1, 2048, 14, 14))
        f.create_dataset("ids", data=np.asarray([9, 42, 139], np.int32))
    store = FeatureStore(path, "grid")
    assert (store.key, store.dim, store.max_regions) == ("features", 2048, 196)
    x = store.get(42)  # [196, 2048]: cell (i, j) is row i * 14 + j
    assert x.shape == (196, 2048) and x.dtype == grid.dtype  # as stored; Batch.to makes float32 on the device
    np.testing.assert_array_equal(x[3 * 14 + 5], grid[1, :, 3, 5])

"""The real-data path on the tiny VQA v2 fixture: fixture format, vqa2 configs, download script, end to end."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import pytest

from vqa.config import load_config
from vqa.data.vqa2 import load_split
from vqa.synth.questions import OFFICIAL_QUESTION_TYPES

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "vqa2_tiny"
SCRIPT = REPO / "scripts" / "download_vqa2.sh"
QUESTIONS, ANNOTATIONS = "v2_OpenEnded_mscoco_{split}_questions.json", "v2_mscoco_{split}_annotations.json"
VQA_FILES = [
    *(QUESTIONS.format(split=s) for s in ("train2014", "val2014", "test-dev2015", "test2015")),
    *(ANNOTATIONS.format(split=s) for s in ("train2014", "val2014")),
]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, fixture_builder):
    """The fixture served as the official servers serve VQA v2 and COCO (zips), over file://."""
    return fixture_builder.build_mirror(tmp_path_factory.mktemp("mirror"))


def download(mirror: Path, dest: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VQA_BASE_URL": f"file://{mirror}/vqa", "COCO_BASE_URL": f"file://{mirror}/coco"}
    return subprocess.run(["bash", str(SCRIPT), *args, str(dest)], capture_output=True, text=True, env=env)


def test_fixture_is_in_the_official_format():
    for split in ("train2014", "val2014"):
        records = load_split(FIXTURE, split, QUESTIONS, ANNOTATIONS)
        assert len(records) == 24 and len({r.image_id for r in records}) == 8
        assert {r.answer_type for r in records} == {"yes/no", "number", "other"}
        for r in records:
            ann = r.annotation
            assert r.question_id // 1000 == r.image_id and r.question.endswith("?")
            assert [a["answer_id"] for a in ann["answers"]] == list(range(1, 11))
            assert {a["answer_confidence"] for a in ann["answers"]} <= {"yes", "maybe", "no"}
            counts = Counter(a.strip() for a in r.answers)
            assert counts[r.multiple_choice_answer] == max(counts.values())
            assert r.question_type in OFFICIAL_QUESTION_TYPES and r.question.lower().startswith(
                r.question_type
            )
        meta = json.loads((FIXTURE / QUESTIONS.format(split=split)).read_text())
        assert (meta["task_type"], meta["data_type"], meta["data_subtype"]) == ("Open-Ended", "mscoco", split)
    dev = load_split(FIXTURE, "test-dev2015", QUESTIONS, ANNOTATIONS)
    test = load_split(FIXTURE, "test2015", QUESTIONS, ANNOTATIONS)
    assert all(r.annotation is None for r in test)
    assert {r.question_id for r in dev} < {r.question_id for r in test}  # test-dev is part of test


def test_vqa2_configs_are_valid_and_paired():
    paths = sorted((REPO / "configs" / "vqa2").glob("*.yaml"))
    assert {p.stem for p in paths} >= {
        f"{m}_{loss}" for m in ("avg", "pool", "mcb", "updn") for loss in ("hard", "soft")
    }
    for path in paths:
        cfg = load_config(path)  # validity only: models are built by the training tests
        assert cfg.data.root == "data/vqa2" and cfg.data.max_answers == 3000
        assert (cfg.train.optimizer, cfg.train.lr, cfg.train.batch_size) == ("adam", 1e-4, 64)
        assert (cfg.train.lr_decay_epochs, cfg.train.lr_decay_factor) == ([30, 60], 0.1)
        assert (cfg.data.max_question_len, cfg.model.dropout, cfg.model.embed_dim) == (10, 0.5, 300)
        if path.stem != "base":
            hard, soft = (
                load_config(path.with_name(path.stem.rsplit("_", 1)[0] + f"_{x}.yaml"))
                for x in ("hard", "soft")
            )
            assert (hard.train.loss, soft.train.loss) == ("hard_ce", "soft_ce")
            hard.train.loss, hard.name = soft.train.loss, soft.name
            assert hard == soft  # a pair differs in the loss alone
    for name in ("avg", "pool"):  # the paper's own models: its RNN size and glimpses
        cfg = load_config(REPO / "configs" / "vqa2" / f"{name}_soft.yaml")
        assert (cfg.model.name, cfg.model.rnn_dim, cfg.model.glimpses, cfg.data.features) == (
            name,
            2400,
            2,
            "grid",
        )
    assert load_config(REPO / "configs" / "vqa2" / "updn_soft.yaml").data.features == "boxes"


def test_download_resumes_and_skips(mirror, tmp_path):
    dest = tmp_path / "data"
    # an interrupted earlier run: part of one archive, marked so that resuming is visible
    name = "v2_Annotations_Train_mscoco.zip"
    source = (mirror / "vqa" / name).read_bytes()
    (dest / "downloads").mkdir(parents=True)
    (dest / "downloads" / f"{name}.part").write_bytes(source[:600])
    proc = download(mirror, dest, "--no-images", "--keep-zips")
    assert proc.returncode == 0, proc.stderr
    assert f"resume file://{mirror}/vqa/{name} (600 bytes already" in proc.stdout
    assert (dest / "downloads" / name).read_bytes() == source  # the rest appended, not fetched again
    for file in VQA_FILES:
        assert (dest / "vqa2" / file).read_bytes() == (FIXTURE / file).read_bytes()
    assert "images skipped" in proc.stdout and not (dest / "coco").exists()
    assert sorted(p.name for p in (dest / "vqa2").iterdir()) == sorted(VQA_FILES)  # no temporary folders left

    mtimes = {p: p.stat().st_mtime_ns for p in (dest / "vqa2").iterdir()}
    proc = download(mirror, dest, "--no-images")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(x.startswith("skip ") for x in lines) == 5 and not any(
        x.startswith("download ") for x in lines
    )
    assert {p: p.stat().st_mtime_ns for p in (dest / "vqa2").iterdir()} == mtimes


def test_download_failures_leave_nothing_half_done(mirror, tmp_path):
    dest = tmp_path / "data"
    proc = download(tmp_path / "nowhere", dest, "--no-images")
    assert proc.returncode == 1
    assert (
        "error: could not download file://" in proc.stderr and "v2_Questions_Train_mscoco.zip" in proc.stderr
    )
    assert not list((dest / "vqa2").iterdir()) and not list((dest / "downloads").iterdir())
    # a damaged archive: refused with its name, nothing unpacked
    (dest / "downloads" / "v2_Questions_Train_mscoco.zip").write_bytes(b"PK\x03\x04 damaged")
    proc = download(mirror, dest, "--no-images")
    assert proc.returncode == 1 and "v2_Questions_Train_mscoco.zip is not a valid zip archive" in proc.stderr
    assert not list((dest / "vqa2").iterdir())
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option '--bogus'" in bad.stderr


def vqa(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "vqa", *args], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, f"vqa {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_download_extract_train_predict(mirror, tmp_path):
    """The README's real-data commands in order, on the fixture: download, extract, train, predict."""
    data = tmp_path / "data"
    proc = download(mirror, data)
    assert proc.returncode == 0, proc.stderr
    for subtype, n in (("train2014", 8), ("val2014", 8), ("test2015", 6)):
        assert len(list((data / "coco" / subtype).glob(f"COCO_{subtype}_*.jpg"))) == n

    for subtype in ("train2014", "val2014", "test2015"):
        vqa(
            "extract", "--images", str(data / "coco" / subtype), "--out", str(data / "vqa2" / f"features_{subtype}.h5"),
            "--arch", "resnet18", "--size", "64", "--weights", "none", "--batch-size", "4", "--workers", "0",
        )  # fmt: skip
        with h5py.File(data / "vqa2" / f"features_{subtype}.h5") as f:
            assert f["grid"].shape[1:] == (512, 2, 2) and len(f["ids"]) == (6 if subtype == "test2015" else 8)

    runs = tmp_path / "runs"
    train = vqa(
        "train", "--config", "configs/vqa2/avg_soft.yaml", f"data.root={data / 'vqa2'}", f"out_dir={runs}",
        "name=tiny", "data.feature_dim=512", "data.num_workers=0", "train.epochs=1", "train.batch_size=8",
        "train.device=cpu", "model.embed_dim=16", "model.rnn_dim=32", "model.hidden_dim=32",
    )  # fmt: skip
    assert "epoch 1/1" in train.stdout and "best: epoch" in train.stdout
    assert (runs / "tiny" / "checkpoints" / "best.pt").is_file()
    assert len((runs / "tiny" / "metrics.jsonl").read_text().splitlines()) == 1

    val = vqa(
        "predict", "--run", str(runs / "tiny"), "--split", "val2014", "--out", str(tmp_path / "val.json")
    )
    assert "24 answers for val2014" in val.stdout
    dev = tmp_path / "vqa_test-dev2015_results.json"
    vqa("predict", "--run", str(runs / "tiny"), "--split", "test-dev2015", "--out", str(dev))
    results = json.loads(dev.read_text())
    expected = {
        q["question_id"]
        for q in json.loads((FIXTURE / QUESTIONS.format(split="test-dev2015")).read_text())["questions"]
    }
    assert {r["question_id"] for r in results} == expected and all(
        isinstance(r["answer"], str) for r in results
    )

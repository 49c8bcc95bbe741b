"""The real-data path on the tiny VQA v2 fixture: fixture format, vqa2 configs, download script, end to end."""

import json
import os
import re
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from vqa.config import load_config
from vqa.data.features import FeatureStore
from vqa.data.sources.vqa2 import VQA2
from vqa.data.text import PAD, UNK
from vqa.data.word_vectors import load_word_vectors
from vqa.features.convert import read_bottomup_tsv
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


def download(mirror: Path, dest: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The download script on `mirror` (VQA, COCO, bottom-up features, word vectors); `env` adds variables."""
    env = {
        **os.environ,
        "VQA_BASE_URL": f"file://{mirror}/vqa",
        "COCO_BASE_URL": f"file://{mirror}/coco",
        "FEATURES_BASE_URL": f"file://{mirror}/bottomup",
        "VECTORS_BASE_URL": f"file://{mirror}/wordvec",
        "VQA_CMD": f"{sys.executable} -m vqa",  # this interpreter's vqa, whatever PATH holds
        **env,
    }
    return subprocess.run(["bash", str(SCRIPT), *args, str(dest)], capture_output=True, text=True, env=env)


def test_fixture_is_in_the_official_format():
    for split in ("train2014", "val2014"):
        records = VQA2.load(FIXTURE, split)
        assert len(records) == 24 and len({r.image_id for r in records}) == 8
        assert {r.answer_type for r in records} == {"yes/no", "number", "other"}
        annotations = json.loads((FIXTURE / ANNOTATIONS.format(split=split)).read_text())["annotations"]
        for r, ann in zip(records, annotations):
            assert ann["question_id"] == r.question_id
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
    dev = VQA2.load(FIXTURE, "test-dev2015")
    test = VQA2.load(FIXTURE, "test2015")
    assert not test.annotated
    assert {r.question_id for r in dev} < {r.question_id for r in test}  # test-dev is part of test


def test_vqa2_configs_are_valid_and_paired():
    paths = sorted((REPO / "configs" / "vqa2").glob("*.yaml"))
    assert {p.stem for p in paths} >= {
        f"{m}_{loss}" for m in ("avg", "pool", "mcb", "updn") for loss in ("hard", "soft")
    }
    for path in paths:
        cfg = load_config(path)  # validity only: models are built by the training tests
        assert cfg.data.root == "data/vqa2"
        if cfg.model.name not in ("mcan", "ban"):  # those train by their authors' protocol (test_config.py)
            assert cfg.data.max_answers == 3000
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


# --features -> (the boxes files it writes, the public archives and their TSV members).
FEATURES = {
    "bottomup36": (
        "boxes_{}.h5",
        {
            "trainval_36.zip": ["trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv"],
            "test2015_36.zip": ["test2015_36/test2015_resnet101_faster_rcnn_genome_36.tsv"],
        },
    ),
    "bottomup-adaptive": (
        "boxes_adaptive_{}.h5",
        {
            "trainval.zip": [
                f"trainval/karpathy_{part}_resnet101_faster_rcnn_genome.tsv{suffix}"
                for part, suffix in (("train", ".0"), ("train", ".1"), ("val", ""), ("test", ""))
            ],
            "test2015.zip": ["test2015/test2015_resnet101_faster_rcnn_genome.tsv"],
        },
    ),
}
VECTORS = {
    "glove": ("glove.6B.zip", "glove.6B.300d.txt"),
    "fasttext": ("crawl-300d-2M.vec.zip", "crawl-300d-2M.vec"),
}
SPLIT_QUESTIONS = {
    "train2014": ["train2014"],
    "val2014": ["val2014"],
    "test2015": ["test2015", "test-dev2015"],
}


def mirror_features(mirror: Path, features: str, tmp_path: Path) -> dict[int, np.ndarray]:
    """Image id -> region features of every TSV row of the mirror's archives for `features`."""
    rows = {}
    for archive, members in FEATURES[features][1].items():
        with zipfile.ZipFile(mirror / "bottomup" / archive) as z:
            for member in members:
                for _, _, row in read_bottomup_tsv(Path(z.extract(member, tmp_path / "tsv"))):
                    rows[row.image_id] = row.features
    return rows


def files_and_mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("features,vectors", [("bottomup36", "glove"), ("bottomup-adaptive", "fasttext")])
def test_download_features_and_word_vectors(mirror, tmp_path, features, vectors):
    dest = tmp_path / "data"
    proc = download(
        mirror, dest, "--no-images", "--features", features, "--word-vectors", vectors,
        VQA_MANIFEST=str(mirror / "MANIFEST"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(x.startswith("vqa convert --from bottomup-tsv ") for x in lines) == 3
    pattern, members = FEATURES[features]
    archives = [*members, VECTORS[vectors][0]]
    for name in archives:  # each checked against the mirror's MANIFEST (size and SHA256)
        assert any(x.startswith("verified ") and f"/{name}: " in x and "SHA256" in x for x in lines), name

    # the boxes files, where the configs look for them (adaptive: under the name the script prints)
    if features == "bottomup36":
        cfg = load_config(REPO / "configs" / "vqa2" / "updn_soft.yaml")
        assert cfg.data.features_file.format(split="{}") == pattern
    else:
        assert f"data.features_file='{pattern.format('{split}')}'" in proc.stdout
    source = mirror_features(mirror, features, tmp_path)
    for split, question_splits in SPLIT_QUESTIONS.items():
        store = FeatureStore(dest / "vqa2" / pattern.format(split), kind="boxes")
        asked = {r.image_id for s in question_splits for r in VQA2.load(FIXTURE, s)}
        assert set(store.index) == asked  # every image the split asks about, and no other
        assert store.dim == 2048
        for image_id in asked:  # the TSV's values, stored float16
            expected = source[image_id].astype(np.float16).astype(np.float32)
            np.testing.assert_array_equal(store.get(image_id), expected)
        with h5py.File(store.path) as f:
            boxes = (int(f.attrs["boxes_min"]), int(f.attrs["boxes_max"]))
        assert boxes == (36, 36) if features == "bottomup36" else 10 <= boxes[0] <= boxes[1] <= 100

    # the word vectors, as the publisher's archive holds them, where the configs' line points
    name, member = VECTORS[vectors]
    with zipfile.ZipFile(mirror / "wordvec" / name) as z:
        assert (dest / "wordvec" / member).read_bytes() == z.read(member)
    if vectors == "fasttext":
        line = re.search(r"word_vectors: (\S+)", (REPO / "configs" / "vqa2" / "base.yaml").read_text())
        assert (
            line
            and line.group(1) == "data/wordvec/crawl-300d-2M.vec"
            and (tmp_path / line.group(1)).is_file()
        )
    assert f"model.word_vectors={dest}/wordvec/{member}" in proc.stdout
    _, found, share = load_word_vectors(dest / "wordvec" / member, [PAD, UNK, "what", "color", "is"], 300)
    assert share == 1.0 and found.tolist() == [False, False, True, True, True]

    # nothing else is left: no archives, TSVs, temporary folders or files
    assert sorted(p.name for p in dest.iterdir()) == ["vqa2", "wordvec"]
    assert sorted(p.name for p in (dest / "vqa2").iterdir()) == sorted(
        [*VQA_FILES, *(pattern.format(s) for s in SPLIT_QUESTIONS)]
    )
    assert [p.name for p in (dest / "wordvec").iterdir()] == [member]

    before = files_and_mtimes(dest)
    again = download(mirror, dest, "--no-images", "--features", features, "--word-vectors", vectors)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert sum(x.startswith("skip ") for x in lines) == 5 + 2 + 1
    assert not any(
        x.startswith(("download ", "resume ", "unpack ", "verified ", "vqa convert")) for x in lines
    )
    assert files_and_mtimes(dest) == before


def test_download_refuses_a_mismatch_and_leaves_nothing(mirror, tmp_path):
    dest, bad = tmp_path / "data", tmp_path / "bad"
    bad.mkdir()
    manifest = {"VQA_MANIFEST": str(mirror / "MANIFEST")}
    # one bit flipped, same size: the mirror's SHA256 catches it
    data = bytearray((mirror / "bottomup" / "trainval_36.zip").read_bytes())
    data[len(data) // 2] ^= 1
    (bad / "trainval_36.zip").write_bytes(data)
    proc = download(
        mirror, dest, "--no-images", "--features", "bottomup36", FEATURES_BASE_URL=f"file://{bad}", **manifest
    )
    errors = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: bottomup/trainval_36.zip has SHA256 ") and "deleted it" in errors[0]
    assert sorted(p.name for p in dest.iterdir()) == ["downloads", "vqa2"]
    assert not list((dest / "downloads").iterdir())  # no archive, no .part
    assert sorted(p.name for p in (dest / "vqa2").iterdir()) == sorted(VQA_FILES)  # no boxes file

    # cut short: the size catches it (the MANIFEST's, or the publisher's where no manifest is given)
    (bad / "trainval_36.zip").write_bytes(data[:1000])
    proc = download(
        mirror, dest, "--no-images", "--features", "bottomup36", FEATURES_BASE_URL=f"file://{bad}", **manifest
    )
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "error: bottomup/trainval_36.zip is 1000 bytes, not "
        f"{len(data)} (VQA_MANIFEST); deleted it: check FEATURES_BASE_URL, or list the file in VQA_MANIFEST "
        "if your mirror holds another build"
    ]
    # the fixture's tiny glove.6B.zip without a manifest: the publisher's size refuses it
    proc = download(mirror, dest, "--no-images", "--word-vectors", "glove")
    size = (mirror / "wordvec" / "glove.6B.zip").stat().st_size
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"error: wordvec/glove.6B.zip is {size} bytes, not 862182613 (the publisher's size); deleted it: "
        "check VECTORS_BASE_URL, or list the file in VQA_MANIFEST if your mirror holds another build"
    ]
    assert sorted(p.name for p in dest.iterdir()) == ["downloads", "vqa2"]
    assert not list((dest / "downloads").iterdir())

    # the right file: it goes through (and the earlier failures left nothing in the way)
    proc = download(mirror, dest, "--no-images", "--word-vectors", "glove", **manifest)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["vqa2", "wordvec"]


def test_download_conversion_failure_is_named_and_resumable(mirror, tmp_path, fixture_builder):
    """A TSV without half the val2014 images: `vqa convert` stops, the script names it, nothing half-written."""
    dest, bad = tmp_path / "data", tmp_path / "bad"
    ids = fixture_builder.image_ids("train2014") + fixture_builder.image_ids("val2014")
    rows = fixture_builder.bottomup_rows(ids[:-4], seed=1)
    member = "trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv"
    bad.mkdir()
    with zipfile.ZipFile(bad / "trainval_36.zip", "w") as z:
        z.writestr(member, fixture_builder.bottomup_tsv_text(rows))
    size = (bad / "trainval_36.zip").stat().st_size
    (bad / "MANIFEST").write_text(f"bottomup/trainval_36.zip {size} -\n")  # a size alone also works
    proc = download(
        mirror, dest, "--no-images", "--features", "bottomup36",
        FEATURES_BASE_URL=f"file://{bad}", VQA_MANIFEST=str(bad / "MANIFEST"),
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"verified bottomup/trainval_36.zip: {size} bytes (VQA_MANIFEST)" in proc.stdout
    assert "4 images of " in proc.stderr and "val2014_questions.json are in no TSV file" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: `vqa convert --from bottomup-tsv ") and "boxes_val2014.h5` failed" in last
    assert last.endswith(
        f"wrote nothing; the TSVs stay in {dest}/bottomup: fix the cause and run the script again"
    )
    assert sorted(p.name for p in (dest / "vqa2").iterdir()) == sorted([*VQA_FILES, "boxes_train2014.h5"])
    assert (dest / "bottomup" / member).is_file()  # kept for the next run

    # the next run converts what is missing from the TSVs in place, without downloading again
    (dest / "bottomup" / member).write_text(
        fixture_builder.bottomup_tsv_text(fixture_builder.bottomup_rows(ids)),
        newline="",
    )
    proc = download(
        mirror, dest, "--no-images", "--features", "bottomup36", VQA_MANIFEST=str(mirror / "MANIFEST")
    )
    assert proc.returncode == 0, proc.stderr
    converted = [x for x in proc.stdout.splitlines() if x.startswith("vqa convert")]
    assert len(converted) == 2 and converted[0].endswith("boxes_val2014.h5")
    assert f"skip trainval_36.zip: {member} already in {dest}/bottomup" in proc.stdout
    assert sorted(p.name for p in dest.iterdir()) == ["vqa2"]


def test_download_options_are_checked_before_anything_downloads(mirror, tmp_path):
    for args, message in (
        (["--features", "resnet"], "--features is 'resnet'; choose bottomup36, bottomup-adaptive or none"),
        (["--word-vectors=word2vec"], "--word-vectors is 'word2vec'; choose glove, fasttext or none"),
    ):
        proc = download(mirror, tmp_path / "data", *args)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    proc = download(mirror, tmp_path / "data", "--features", "bottomup36", VQA_CMD=str(tmp_path / "no-vqa"))
    assert proc.returncode == 2 and "convert --help` failed: the vqa command does not run" in proc.stderr
    assert not (tmp_path / "data").exists()


def vqa(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "vqa", *args], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, f"vqa {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
def test_download_extract_train_predict(mirror, tmp_path):
    """The real-data commands of docs/real-data.md in order, on the fixture: download, extract, train, predict."""
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

"""`vqa synth`: official file formats, HDF5 layout, determinism, annotators and statistics."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict

import h5py
import numpy as np
import pytest

from vqa.cli import build_parser
from vqa.errors import UserError
from vqa.synth import features
from vqa.synth.annotators import most_common_answer, normalize
from vqa.synth.generate import ID_RANGE, generate, synth_command
from vqa.synth.presets import PRESETS, SIZE_KEYS
from vqa.synth.questions import OFFICIAL_QUESTION_TYPES, question_type
from vqa.synth.stats import PUBLISHED, format_stats

TINY = PRESETS["tiny"]
SPLITS = (
    ("train2014", "train2014", TINY["train_images"]),
    ("val2014", "val2014", TINY["val_images"]),
    ("test-dev2015", "test2015", TINY["test_images"]),
)
FIRST_ID = {"train2014": 1, "val2014": 1_000_000, "test-dev2015": 2_000_000}
# sha256 of "\n".join(lines of shared/docs/vqa-question-types.txt): the 65 official types, in order.
OFFICIAL_TYPES_SHA256 = "12f91d1a05002353e9881e25bb9e64687d8350e9053f57c5a1877ddf45a24686"
# sha256 of the tiny preset's files (seed 0, vqa2 format; the HDF5 file by content: `content_digest`):
# a change that moves them changes every synthetic number in the docs; update them only on purpose,
# and say so. The encoder's float16 outputs (`grid`, `image_features`) go through a float32 matrix
# product, whose last bits depend on the BLAS kernel the CPU picks (OpenBLAS's SkylakeX kernels on an
# AVX-512 machine round differently from its Haswell and Zen ones: `OPENBLAS_CORETYPE` shows it), so
# those two are pinned by their sums (ENCODED), to a tolerance 50 times the spread between kernels.
TINY_SHA256 = {
    "v2_mscoco_train2014_annotations.json": "4c649219c874db2e5808431b3f196df30e8d0e2bcc34aef82946c5a833a39dc0",
    "v2_OpenEnded_mscoco_train2014_questions.json": "2a8d84df81bdc9716168202384fb4ffdef438b5ef3e14f7b1e2008769f072ecd",
    "features_train2014.h5": "07690f99700693cb03aca55fee52cde9862b17328efb4865e83e7bff1e5af787",
}
# (sum, sum of squares, count > 0) in float64 of the encoder's outputs in features_train2014.h5; the
# sums under OpenBLAS's Haswell, SkylakeX and Sandybridge kernels differ by at most 3e-8 of their value.
ENCODED = {
    "grid": (359963.6922060251, 310035.2118972201, 638950),
    "image_features": (52402.27998369932, 46222.82694788178, 94379),
}
ENCODED_RTOL = 1e-6
FEATURE_KEYS = [
    "ids",
    "grid",
    "image_features",
    "image_bb",
    "spatial_features",
    "pos_boxes",
    "image_w",
    "image_h",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    stats = generate(root, seed=0, quiet=True, **PRESETS["tiny"])
    return root, stats


def load(root, split):
    """(questions by id, annotations list or None) of one split."""
    q = json.loads((root / f"v2_OpenEnded_mscoco_{split}_questions.json").read_text())
    path = root / f"v2_mscoco_{split}_annotations.json"
    return {x["question_id"]: x for x in q["questions"]}, (
        json.loads(path.read_text()) if path.exists() else None
    )


def digests(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def content_digest(path, skip=()) -> str:
    """sha256 of an HDF5 file's content: every attribute and every dataset's name, dtype, shape and
    bytes (of those not in `skip`, only name, dtype and shape), in name order; not the file's bytes,
    whose layout depends on the HDF5 library's version."""
    h = hashlib.sha256()

    def add(name, obj):
        h.update(name.encode())
        for key in sorted(obj.attrs):
            h.update(f"{key}={np.asarray(obj.attrs[key]).tolist()!r}".encode())
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            raw = (
                b""
                if name in skip
                else repr(data.tolist()).encode()
                if data.dtype.kind == "O"
                else np.ascontiguousarray(data).tobytes()
            )
            h.update(f"{data.dtype.str}{data.shape}".encode() + raw)

    with h5py.File(path, "r") as f:
        add("/", f)
        f.visititems(add)
    return h.hexdigest()


def encoded_sums(path) -> dict:
    """ENCODED's (sum, sum of squares, count > 0) of the encoder's outputs in one features file."""
    with h5py.File(path, "r") as f:
        x = {name: f[name][()].astype(np.float64) for name in ENCODED}
    return {name: (float(v.sum()), float((v * v).sum()), int((v > 0).sum())) for name, v in x.items()}


def test_same_seed_gives_identical_files_and_another_seed_differs(tiny, tmp_path):
    root, _ = tiny
    generate(tmp_path / "again", seed=0, quiet=True, **PRESETS["tiny"])
    generate(tmp_path / "other", seed=1, quiet=True, **PRESETS["tiny"])
    first = digests(root)
    assert len(first) == 12 and not [n for n in first if n.startswith(".")]  # no temp files left
    assert digests(tmp_path / "again") == first
    other = digests(tmp_path / "other")
    assert other.keys() == first.keys()
    assert all(other[name] != digest for name, digest in first.items())


def test_question_files_follow_the_official_format(tiny):
    root, _ = tiny
    for split, _, n_images in SPLITS:
        raw = json.loads((root / f"v2_OpenEnded_mscoco_{split}_questions.json").read_text())
        assert list(raw) == ["info", "task_type", "data_type", "data_subtype", "questions", "license"]
        assert (raw["task_type"], raw["data_type"], raw["data_subtype"]) == ("Open-Ended", "mscoco", split)
        questions = raw["questions"]
        assert len(questions) == PRESETS["tiny"]["questions_per_image"] * n_images and len(
            {x["question_id"] for x in questions}
        ) == len(questions)
        assert len({x["image_id"] for x in questions}) == n_images
        for x in questions:
            assert list(x) == ["question_id", "image_id", "question"]
            assert isinstance(x["question_id"], int) and isinstance(x["image_id"], int)
            assert (
                x["question_id"] // 1000 == x["image_id"]
                and x["question_id"] % 1000 < TINY["questions_per_image"]
            )
            assert FIRST_ID[split] <= x["image_id"] < FIRST_ID[split] + ID_RANGE
            assert x["question"] == x["question"].lower() and x["question"].endswith("?")
    assert not (root / "v2_mscoco_test-dev2015_annotations.json").exists()  # test-dev: questions only


def test_annotation_files_follow_the_official_format(tiny):
    root, _ = tiny
    for split, _, _ in SPLITS[:2]:
        questions, raw = load(root, split)
        assert list(raw) == ["info", "data_type", "data_subtype", "annotations", "license"]
        assert (raw["data_type"], raw["data_subtype"]) == ("mscoco", split)
        anns = raw["annotations"]
        assert [a["question_id"] for a in anns] == list(questions)
        for a in anns:
            assert list(a) == [
                "question_id",
                "image_id",
                "question_type",
                "answer_type",
                "multiple_choice_answer",
                "answers",
            ]
            assert a["image_id"] == questions[a["question_id"]]["image_id"]
            assert a["answer_type"] in ("yes/no", "number", "other")
            assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
            for x in a["answers"]:
                assert list(x) == ["answer_id", "answer", "answer_confidence"]
                assert (
                    isinstance(x["answer"], str)
                    and x["answer"]
                    and x["answer_confidence"] in ("yes", "maybe", "no")
                )
            if a["answer_type"] == "yes/no":
                assert a["multiple_choice_answer"] in ("yes", "no")
            if a["answer_type"] == "number":
                assert a["multiple_choice_answer"].isdigit()
        assert {a["answer_type"] for a in anns} == {"yes/no", "number", "other"}
        confidence = Counter(x["answer_confidence"] for a in anns for x in a["answers"])
        assert confidence["yes"] > confidence["maybe"] > confidence["no"] > 0


def test_question_type_is_the_longest_official_type_that_begins_the_question(tiny):
    assert hashlib.sha256("\n".join(OFFICIAL_QUESTION_TYPES).encode()).hexdigest() == OFFICIAL_TYPES_SHA256
    assert question_type("is there an orange cube?") == "is there"
    assert question_type("is there a red cube?") == "is there a"
    assert question_type("what size is the cube?") == "what"
    assert question_type("what is the color of the cube?") == "what is the color of the"
    root, _ = tiny
    seen = Counter()
    for split, _, _ in SPLITS[:2]:
        questions, raw = load(root, split)
        for a in raw["annotations"]:
            words = questions[a["question_id"]]["question"][:-1].split()
            matches = [t for t in OFFICIAL_QUESTION_TYPES if words[: len(t.split())] == t.split()]
            assert a["question_type"] == max(matches, key=len)
            seen[a["question_type"]] += 1
    assert len(seen) >= 10


def test_multiple_choice_answer_is_the_most_frequent_normalized_answer(tiny):
    assert [normalize(a) for a in ("Two", "a ball", "grey", "none", "i don't know")] == [
        "2",
        "ball",
        "grey",
        "0",
        "i don't know",
    ]
    answers = [{"answer": a} for a in ["two"] * 3 + ["2"] * 2 + ["3"] * 4 + ["4"]]
    assert most_common_answer(answers) == "2"  # "two" and "2" are one answer
    assert most_common_answer([{"answer": a} for a in ["red"] * 5 + ["blue"] * 5]) == "blue"  # tie
    root, _ = tiny
    _, raw = load(root, "train2014")
    for a in raw["annotations"]:
        counts = Counter(normalize(x["answer"]) for x in a["answers"])
        assert counts[a["multiple_choice_answer"]] == max(counts.values())


def test_complementary_pairs_and_balanced_answers(tiny):
    root, _ = tiny
    for split, _, _ in SPLITS[:2]:
        questions, raw = load(root, split)
        answers_of = defaultdict(set)
        for a in raw["annotations"]:
            answers_of[questions[a["question_id"]]["question"]].add(a["multiple_choice_answer"])
        paired = [
            a for a in raw["annotations"] if len(answers_of[questions[a["question_id"]]["question"]]) > 1
        ]
        assert len(paired) / len(raw["annotations"]) > 0.6  # same words, other image, other answer
        yes_no = Counter(
            a["multiple_choice_answer"] for a in raw["annotations"] if a["answer_type"] == "yes/no"
        )
        assert 0.4 < yes_no["yes"] / sum(yes_no.values()) < 0.6
        numbers = Counter(
            a["multiple_choice_answer"] for a in raw["annotations"] if a["answer_type"] == "number"
        )
        assert len(numbers) >= 5 and max(numbers.values()) / sum(numbers.values()) < 0.4


def test_feature_files_have_the_documented_layout(tiny):
    root, _ = tiny
    for split, subtype, n in SPLITS:
        questions, _ = load(root, split)
        with h5py.File(root / f"features_{subtype}.h5", "r") as f:
            assert list(f) == FEATURE_KEYS
            assert {k: f.attrs[k] for k in f.attrs} == {
                "format": "vqa-features",
                "version": 1,
                "grid_size": 7,
                "generator": "vqa synth",
                "seed": 0,
            }
            assert all(h5py.h5o.get_info(f[k].id).ctime == 0 for k in ["/"] + FEATURE_KEYS)  # no timestamps
            d = {k: f[k][()] for k in FEATURE_KEYS}
        assert d["ids"].dtype == np.int64 and d["ids"].tolist() == sorted(
            {q["image_id"] for q in questions.values()}
        )
        assert d["grid"].dtype == np.float16 and d["grid"].shape == (n, 64, 7, 7)
        assert (
            np.isfinite(d["grid"]).all() and d["grid"].min() >= 0 and d["grid"].astype(np.float32).std() > 0.1
        )
        pos = d["pos_boxes"]
        r = len(d["image_bb"])
        assert pos.dtype == np.int64 and pos.shape == (n, 2) and pos[0, 0] == 0 and pos[-1, 1] == r
        assert (pos[1:, 0] == pos[:-1, 1]).all() and (pos[:, 1] - pos[:, 0] >= 2).all()
        assert len(set((pos[:, 1] - pos[:, 0]).tolist())) > 3  # the box count varies per image
        assert d["image_features"].dtype == np.float16 and d["image_features"].shape == (r, 64)
        assert d["image_bb"].dtype == np.float32 and d["spatial_features"].dtype == np.float32
        assert d["spatial_features"].shape == (r, 6)
        assert (
            d["image_w"].dtype == np.int32 and d["image_h"].dtype == np.int32 and d["image_w"].shape == (n,)
        )
        size = np.repeat(np.stack([d["image_w"], d["image_h"]], 1), pos[:, 1] - pos[:, 0], axis=0)
        bb = d["image_bb"]
        assert (bb[:, 2:] > bb[:, :2]).all() and (bb >= 0).all() and (bb <= np.tile(size, 2)).all()
        expected = np.concatenate([bb / np.tile(size, 2), (bb[:, 2:] - bb[:, :2]) / size], 1)
        np.testing.assert_allclose(d["spatial_features"], expected, rtol=1e-5)


def test_features_encode_the_scene_through_a_nonlinear_code(tiny):
    """A nearest-class-mean probe trained on train2014 reads attributes on val2014 far above chance."""
    root, _ = tiny

    def objects(subtype):
        scenes = json.loads((root / f"scenes_{subtype}.json").read_text())["scenes"]
        with h5py.File(root / f"features_{subtype}.h5", "r") as f:
            boxes, pos, grid = f["image_features"][()].astype(np.float32), f["pos_boxes"][()], f["grid"][()]
        rows = [(i, o) for i, s in enumerate(scenes) for o in s["objects"]]
        box = np.stack([boxes[pos[i, 0] + o["box"]] for i, o in rows])
        cell = np.stack([grid[i, :, o["row"], o["col"]].astype(np.float32) for i, o in rows])
        return box, cell, [o for _, o in rows]

    def probe(x_train, y_train, x_val, y_val):
        labels = sorted(set(y_train))
        means = np.stack([x_train[np.array(y_train) == c].mean(0) for c in labels])
        pred = np.array(labels)[((x_val[:, None] - means[None]) ** 2).sum(-1).argmin(1)]
        return (pred == np.array(y_val)).mean()

    tb, tc, to = objects("train2014")
    vb, vc, vo = objects("val2014")
    assert probe(tb, [o["color"] for o in to], vb, [o["color"] for o in vo]) > 0.5  # chance 1/8
    assert probe(tc, [o["shape"] for o in to], vc, [o["shape"] for o in vo]) > 0.6  # chance 1/4


def test_statistics_match_the_files_and_look_like_vqa_v2(tiny):
    root, stats = tiny
    assert json.loads((root / "stats.json").read_text()) == stats
    questions, raw = load(root, "train2014")
    human, mca = [], []
    for a in raw["annotations"]:  # brute-force official metric, independent of the generator's closed form
        norm = [normalize(x["answer"]) for x in a["answers"]]
        for k, mine in enumerate(norm):
            others = norm[:k] + norm[k + 1 :]
            human.append(
                np.mean([min(1, sum(o == mine for o in others[:g] + others[g + 1 :]) / 3) for g in range(9)])
            )
        mca.append(
            np.mean(
                [
                    min(1, sum(o == a["multiple_choice_answer"] for o in norm[:g] + norm[g + 1 :]) / 3)
                    for g in range(10)
                ]
            )
        )
    s = stats["splits"]["train2014"]
    assert s["human_accuracy"]["overall"] == pytest.approx(np.mean(human))
    by_type = defaultdict(list)  # answer type -> (all ten answers identical, distinct normalized answers)
    for a in raw["annotations"]:
        answers = [x["answer"] for x in a["answers"]]
        by_type[a["answer_type"]].append((len(set(answers)) == 1, len({normalize(x) for x in answers})))
    for t, rows in by_type.items():
        assert s["unanimous_by_type"][t] == pytest.approx(np.mean([u for u, _ in rows]))
        assert s["unique_answers_by_type"][t] == pytest.approx(np.mean([q for _, q in rows]))
    assert s["unanimous_by_type"]["overall"] == pytest.approx(s["unanimous"])
    assert s["unique_answers_by_type"]["overall"] == pytest.approx(s["mean_unique_answers"])
    assert s["mca_accuracy"]["overall"] == pytest.approx(np.mean(mca))
    q = TINY["questions_per_image"]
    assert (s["images"], s["questions"]) == (TINY["train_images"], q * TINY["train_images"])
    assert stats["splits"]["test-dev2015"] == {
        "images": TINY["test_images"],
        "questions": q * TINY["test_images"],
    }
    for split in ("train2014", "val2014"):
        s = stats["splits"][split]
        h = s["human_accuracy"]
        assert 0.7 < h["overall"] < 0.9 and h["yes/no"] > h["number"] > h["other"]
        assert s["mca_accuracy"]["overall"] > 0.95 and 0.05 < s["unanimous"] < 0.5
        assert 1.5 < s["mean_unique_answers"] < 4
    prior = stats["prior_accuracy_val"]
    assert prior["overall"] < stats["splits"]["val2014"]["mca_accuracy"]["overall"] - 0.3
    assert prior["yes/no"] < 0.8 and prior["other"] < 0.5
    table = format_stats(stats)
    assert "human acc" in table and f"{100 * h['overall']:.1f}" in table
    assert "VQA v2 (published)" in table and "unanimous %" in table and stats["annotators"] == "v2"


def pooled(stats: dict, key: str) -> dict:
    """train2014 and val2014's `key` by answer type, pooled (weighted by the questions of each type)."""
    splits = [stats["splits"][s] for s in ("train2014", "val2014")]
    out = {}
    for t in ("yes/no", "number", "other"):
        n = [s["answer_types"][t] for s in splits]
        out[t] = sum(s[key][t] * k for s, k in zip(splits, n)) / sum(n)
    n = [s["questions"] for s in splits]
    out["overall"] = sum(s[key]["overall"] * k for s, k in zip(splits, n)) / sum(n)
    return out


def test_default_annotators_agree_like_the_published_vqa_statistics(tmp_path):
    """The calibration (data/README.md, "Ten simulated annotators"), on the `small` preset: human
    accuracy per answer type within 1.5 points of VQA v2's published figures; the unanimous share
    within 10 points of VQA v1's (no VQA v2 figure was found; v2 agrees less than v1) and the mean
    number of distinct answers within 0.3 of VQA v1's 2.70."""
    v2 = generate(tmp_path / "v2", seed=0, quiet=True, features=False, **PRESETS["small"])
    human, published = pooled(v2, "human_accuracy"), PUBLISHED["VQA v2"]["human_accuracy"]
    assert all(abs(human[t] - published[t]) < 0.015 for t in ("yes/no", "number", "other")), human
    assert human["yes/no"] > human["number"] > human["other"]
    vqa1 = {key: v["overall"] for key, v in PUBLISHED["VQA v1"].items() if key != "human_accuracy"}
    assert abs(pooled(v2, "unanimous_by_type")["overall"] - vqa1["unanimous_by_type"]) < 0.10
    assert abs(pooled(v2, "unique_answers_by_type")["overall"] - vqa1["unique_answers_by_type"]) < 0.3


def test_the_tiny_preset_writes_the_pinned_files(tiny):
    root, stats = tiny
    files = {name: digests(root)[name] for name in TINY_SHA256 if not name.endswith(".h5")}
    files |= {name: content_digest(root / name, skip=ENCODED) for name in TINY_SHA256 if name.endswith(".h5")}
    assert files == TINY_SHA256
    sums = encoded_sums(root / "features_train2014.h5")
    for name, (total, squares, positive) in ENCODED.items():
        assert sums[name][0] == pytest.approx(total, rel=ENCODED_RTOL), name
        assert sums[name][1] == pytest.approx(squares, rel=ENCODED_RTOL), name
        assert abs(sums[name][2] - positive) <= 5, name  # a value within 1e-7 of 0 may flip
    assert stats["annotators"] == "v2"


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(train_images=0), "train_images"),
        (dict(questions_per_image=0), "questions_per_image"),
        (dict(grid_size=2), "grid_size"),
        (dict(val_images="5"), "val_images"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_arguments_raise_a_user_error_before_writing(tmp_path, override, message):
    kwargs = dict(PRESETS["tiny"], seed=0) | override
    with pytest.raises(UserError, match=message):
        generate(tmp_path / "out", quiet=True, **kwargs)
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        generate(tmp_path / "file", quiet=True, **PRESETS["tiny"])


def test_an_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    """An interrupt in the middle of the feature file leaves the output folder as it was (here: empty),
    no half file and no temporary folder: the dataset is swapped in only when complete."""

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(features, "_grid_block", interrupt)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, seed=0, quiet=True, **PRESETS["tiny"])
    assert list(tmp_path.iterdir()) == []
    assert not tmp_path.with_name(f".{tmp_path.name}.tmp").exists()


def test_cli_parser_agrees_with_the_presets(capsys):
    """`vqa synth` offers every preset and one option per size (vqa/cli.py imports PRESETS and SIZE_KEYS,
    which need no numpy), and every preset sets the same sizes."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "--help"])
    out = capsys.readouterr().out
    assert "--preset {" + ",".join(PRESETS) + "}" in out
    assert all(tuple(sizes) == SIZE_KEYS for sizes in PRESETS.values())
    assert all("--" + key.replace("_", "-") in out for key in SIZE_KEYS)


def test_cli_options_override_the_preset(tmp_path, capsys):
    parser = build_parser()
    defaults = parser.parse_args(["synth", "--out", "x"])
    assert (defaults.preset, defaults.seed, defaults.train_images, defaults.quiet) == (
        "small",
        0,
        None,
        False,
    )
    args = parser.parse_args(
        [
            "synth",
            "--out",
            str(tmp_path / "d"),
            "--preset",
            "tiny",
            "--seed",
            "3",
            "--train-images",
            "10",
            "--val-images",
            "6",
            "--test-images",
            "0",
            "--questions-per-image",
            "3",
            "--grid-size",
            "4",
            "--grid-dim",
            "8",
            "--box-dim",
            "5",
        ]
    )
    assert synth_command(args) == 0
    assert "human acc" in capsys.readouterr().out
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert stats["seed"] == 3 and stats["options"] == dict(
        train_images=10,
        val_images=6,
        test_images=0,
        questions_per_image=3,
        grid_size=4,
        grid_dim=8,
        box_dim=5,
    )
    with h5py.File(tmp_path / "d" / "features_train2014.h5", "r") as f:
        assert f["grid"].shape == (10, 8, 4, 4) and f["image_features"].shape[1] == 5
    with h5py.File(tmp_path / "d" / "features_test2015.h5", "r") as f:
        assert f["ids"].shape == (0,) and f["grid"].shape == (0, 8, 4, 4)
    args = parser.parse_args(
        ["synth", "--out", str(tmp_path / "q"), "--preset", "tiny", "--train-images", "4", "--quiet"]
    )
    assert synth_command(args) == 0 and capsys.readouterr().out == ""


def test_stale_synthetic_data_is_regenerated_for_the_config(tmp_path, capsys):
    """A folder whose stats.json names other annotators (or none: written before they were
    calibrated) than vqa synth's is regenerated, saying so; the right data is left alone."""
    from vqa.config import load_config
    from vqa.data.build import ensure_synthetic

    root = tmp_path / "tiny"
    generate(root, seed=0, quiet=True, **PRESETS["tiny"])
    stats = json.loads((root / "stats.json").read_text())
    del stats["annotators"]
    (root / "stats.json").write_text(json.dumps(stats))
    cfg = load_config("configs/synthetic/avg_soft.yaml", [f"data.root={root}", "data.synth_preset=tiny"])
    capsys.readouterr()
    ensure_synthetic(cfg)
    assert "holds vqa2 data from the v1 annotators" in capsys.readouterr().out
    assert json.loads((root / "stats.json").read_text())["annotators"] == "v2"
    ensure_synthetic(cfg)
    assert "regenerating" not in capsys.readouterr().out

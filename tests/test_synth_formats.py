"""`vqa synth --format`: each dataset's exact files, its annotators, and the statistics printed."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict

import h5py
import numpy as np
import pytest

from vqa.cli import build_parser
from vqa.config import load_config
from vqa.errors import UserError
from vqa.synth.annotators import most_common_answer, normalize
from vqa.synth.formats import FORMATS, split_sizes
from vqa.synth.generate import generate, stale_reason, synth_command
from vqa.synth.okvqa import stem
from vqa.synth.questions import OFFICIAL_QUESTION_TYPES
from vqa.synth.stats import format_stats
from vqa.synth.vqacp import MIX, resplit

# Small enough to write every format in a few seconds, large enough for stable shares.
SIZES = dict(train_images=150, val_images=60, test_images=10, questions_per_image=4, grid_size=5, grid_dim=8,
             box_dim=8)  # fmt: skip
FILES = {
    "vqa1": {"OpenEnded_mscoco_train2014_questions.json", "OpenEnded_mscoco_val2014_questions.json",
             "OpenEnded_mscoco_test-dev2015_questions.json", "mscoco_train2014_annotations.json",
             "mscoco_val2014_annotations.json", "features_train2014.h5", "features_val2014.h5",
             "features_test2015.h5", "scenes_train2014.json", "scenes_val2014.json", "scenes_test2015.json"},
    "okvqa": {"OpenEnded_mscoco_train2014_questions.json", "OpenEnded_mscoco_val2014_questions.json",
              "mscoco_train2014_annotations.json", "mscoco_val2014_annotations.json", "features_train2014.h5",
              "features_val2014.h5", "scenes_train2014.json", "scenes_val2014.json"},
    "vizwiz": {"train.json", "val.json", "test.json", "features_train.h5", "features_val.h5", "features_test.h5",
               "scenes_train.json", "scenes_val.json", "scenes_test.json"},
    "vqacp2": {"vqacp_v2_train_questions.json", "vqacp_v2_test_questions.json", "vqacp_v2_train_annotations.json",
               "vqacp_v2_test_annotations.json", "features_train2014.h5", "features_val2014.h5",
               "scenes_train2014.json", "scenes_val2014.json"},
}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Every format written once (and vqa2 for comparison): {format: (root, stats)}."""
    out = {}
    for fmt in FORMATS:
        root = tmp_path_factory.mktemp(fmt)
        out[fmt] = root, generate(root, seed=0, quiet=True, format=fmt, **SIZES)
    return out


def read(root, name):
    return json.loads((root / name).read_text())


def human_accuracy(answers: list[str]) -> float:
    """The official leave-one-out accuracy of each answer against the other nine, averaged."""
    norm = [normalize(a) for a in answers]
    c = Counter(norm)
    return sum(min(1.0, (c[a] - 1) / 3) if c[a] <= 3 else 1.0 for a in norm) / len(norm)


def test_each_format_writes_its_dataset_files_and_nothing_else(data):
    for fmt, names in FILES.items():
        root, stats = data[fmt]
        assert {p.name for p in root.iterdir()} == names | {"stats.json"}, fmt
        assert stats["format"] == fmt and read(root, "stats.json") == stats
    assert "format" not in data["vqa2"][1]  # vqa2's stats.json as it always was


def test_vqa1_has_v1_names_ids_and_three_questions_per_image(data):
    root, _ = data["vqa1"]
    for split in ("train2014", "val2014"):
        q = read(root, f"OpenEnded_mscoco_{split}_questions.json")
        a = read(root, f"mscoco_{split}_annotations.json")
        assert list(q) == ["info", "task_type", "data_type", "data_subtype", "questions", "license"]
        assert q["info"]["version"] == "1.0" and q["data_subtype"] == split
        per_image = Counter(x["image_id"] for x in q["questions"])
        assert set(per_image.values()) == {3}
        assert all(
            x["question_id"] // 10 == x["image_id"] and x["question_id"] % 10 < 3 for x in q["questions"]
        )
        assert [x["question_id"] for x in a["annotations"]] == [x["question_id"] for x in q["questions"]]
        assert all(
            len(x["answers"]) == 10 and x["question_type"] in OFFICIAL_QUESTION_TYPES
            for x in a["annotations"]
        )
    # as many questions as the preset asks for: 3 per image, proportionally more images
    assert (
        split_sizes("vqa1", 150, 4) == (200, 3) and data["vqa1"][1]["splits"]["train2014"]["questions"] == 600
    )


def test_vqa1_is_unbalanced_without_complementary_pairs(data):
    v1, v2 = data["vqa1"][1]["splits"]["train2014"], data["vqa2"][1]["splits"]["train2014"]
    assert v1["paired_questions"] < v2["paired_questions"]  # no pairs by design; only repeated wordings
    assert (
        abs(v1["yes_share"] - 0.5) > abs(v2["yes_share"] - 0.5)
        or v1["top_number_share"] > v2["top_number_share"]
    )


def test_okvqa_five_annotators_listed_twice_with_raw_answers(data):
    root, stats = data["okvqa"]
    for split in ("train2014", "val2014"):
        q = read(root, f"OpenEnded_mscoco_{split}_questions.json")["questions"]
        anns = read(root, f"mscoco_{split}_annotations.json")["annotations"]
        assert len({x["image_id"] for x in q}) == len(q)  # about one question per image
        assert all(x["question_id"] // 10 == x["image_id"] for x in q)
        for a in anns:
            assert list(a) == ["image_id", "answer_type", "question_type", "question_id", "answers"]
            assert "multiple_choice_answer" not in a and a["answer_type"] == "other"
            assert a["question_type"] in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                          "ten", "other")  # fmt: skip
            xs = a["answers"]
            assert [x["answer_id"] for x in xs] == list(range(1, 11))
            assert all(list(x) == ["answer_id", "raw_answer", "answer_confidence", "answer"] for x in xs)
            assert all(
                x["answer_confidence"] in ("yes", "no") and x["answer"] == stem(x["raw_answer"]) for x in xs
            )
            for first, second in zip(xs[::2], xs[1::2]):  # each person's answer twice
                assert {k: v for k, v in first.items() if k != "answer_id"} == {
                    k: v for k, v in second.items() if k != "answer_id"
                }
    assert stem("a cube") == "cube" and stem("spheres") == "sphere" and stem("glass") == "glass"
    assert stem("yes") == "yes" and stem("2") == "2"
    assert 0 < stats["raw_answer_differs"] < 0.2


def test_vizwiz_files_are_lists_keyed_by_image_file_name(data):
    root, _ = data["vizwiz"]
    for split in ("train", "val", "test"):
        entries = read(root, f"{split}.json")
        assert isinstance(entries, list)
        names = [e["image"] for e in entries]
        assert len(set(names)) == len(names)  # one question per photo
        assert all(re.fullmatch(rf"VizWiz_{split}_\d{{8}}\.jpg", n) for n in names)
        with h5py.File(root / f"features_{split}.h5", "r") as f:
            assert [n.decode() for n in f["names"][()]] == names
            assert f["ids"][()].tolist() == [int(n[-12:-4]) for n in names]
        if split == "test":
            assert all(list(e) == ["image", "question"] for e in entries)
            continue
        for e in entries:
            assert list(e) == ["image", "question", "answers", "answer_type", "answerable"]
            assert (
                all(list(x) == ["answer", "answer_confidence"] for x in e["answers"])
                and len(e["answers"]) == 10
            )
            assert e["answer_type"] in ("yes/no", "number", "other", "unanswerable")
            assert e["answerable"] == int(e["answer_type"] != "unanswerable")
            if e["answer_type"] == "unanswerable":
                assert most_common_answer(e["answers"]) == "unanswerable"


def test_vizwiz_annotators_disagree_far_more_than_vqa2s_and_some_cannot_answer(data):
    root, stats = data["vizwiz"]
    entries = read(root, "train.json") + read(root, "val.json")
    unanswerable = sum(e["answer_type"] == "unanswerable" for e in entries) / len(entries)
    assert 0.18 < unanswerable < 0.40  # about 28% in the preset sizes (data/README.md)
    human = np.mean([human_accuracy([x["answer"] for x in e["answers"]]) for e in entries])
    assert human == pytest.approx(stats["splits"]["train"]["human_accuracy"]["overall"], abs=0.03)
    vqa2 = data["vqa2"][1]["splits"]["train2014"]
    assert human < vqa2["human_accuracy"]["overall"] - 0.15
    assert stats["splits"]["train"]["mean_unique_answers"] > vqa2["mean_unique_answers"] + 1
    types = Counter(e["answer_type"] for e in entries)
    assert types["other"] > types["unanswerable"] > types["yes/no"] > 0 and types["number"] > 0


def test_vqacp2_resplits_the_vqa2_questions_so_priors_differ(data):
    root, stats = data["vqacp2"]
    v2root, _ = data["vqa2"]
    train, test = (read(root, f"vqacp_v2_{s}_annotations.json") for s in ("train", "test"))
    questions = {s: read(root, f"vqacp_v2_{s}_questions.json") for s in ("train", "test")}
    assert all(
        list(q) == ["question_id", "image_id", "question", "coco_split"]
        for s in questions
        for q in questions[s]
    )
    assert [a["question_id"] for a in train] == [q["question_id"] for q in questions["train"]]
    pool = {}
    for split in ("train2014", "val2014"):
        for a in read(v2root, f"v2_mscoco_{split}_annotations.json")["annotations"]:
            pool[a["question_id"]] = dict(a, coco_split=split)
        # the images and their features are vqa2's, byte for byte
        assert (root / f"features_{split}.h5").read_bytes() == (v2root / f"features_{split}.h5").read_bytes()
    assert sorted(a["question_id"] for a in train + test) == sorted(pool)
    assert all(a == pool[a["question_id"]] for a in train + test)  # the same answers, only re-split
    assert 0.2 < len(test) / len(pool) < 0.5
    # each (question type, answer) group mostly on one side (resplit's exact counts: the test below)
    groups = defaultdict(Counter)
    for split, anns in (("train", train), ("test", test)):
        for a in anns:
            groups[a["question_type"], a["multiple_choice_answer"]][split] += 1
    assert all(min(c["train"], c["test"]) <= 0.35 * (c["train"] + c["test"]) + 1 for c in groups.values())
    shift = stats["prior_shift"]
    assert shift["vqacp2"]["tv_distance"] > 0.4 > 0.2 > shift["vqa2"]["tv_distance"]
    assert shift["vqacp2"]["type_prior"] < shift["vqa2"]["type_prior"] - 0.1
    assert shift["vqacp2"]["covered"] == 1.0 and stats["vqacp_mix"] == MIX


def test_every_format_prints_its_disagreement(data):
    for _, stats in data.values():
        assert "human acc" in format_stats(stats)
    assert "unans" in format_stats(data["vizwiz"][1]) and "unanswerable" in format_stats(data["vizwiz"][1])
    assert "prior shift, vqacp2" in format_stats(data["vqacp2"][1])
    assert "listed twice" in format_stats(data["okvqa"][1])


def test_same_seed_same_bytes(data, tmp_path):
    root, _ = data["vizwiz"]
    generate(tmp_path / "again", seed=0, quiet=True, format="vizwiz", **SIZES)

    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    assert digests(tmp_path / "again") == digests(root)


def test_cli_and_config_know_the_formats(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "--help"])
    assert "--format {" + ",".join(FORMATS) + "}" in capsys.readouterr().out
    args = build_parser().parse_args(["synth", "--out", str(tmp_path / "d"), "--preset", "tiny", "--format", "vqa1",
                                      "--train-images", "20", "--val-images", "10", "--test-images", "0"])  # fmt: skip
    assert synth_command(args) == 0 and (tmp_path / "d" / "OpenEnded_mscoco_val2014_questions.json").exists()
    assert load_config(None, ["data.synth_format=vizwiz"]).data.synth_format == "vizwiz"
    assert load_config(None).data.synth_format == "vqa2"
    with pytest.raises(UserError, match="'data.synth_format'.*vizwiz"):
        load_config(None, ["data.synth_format=gqa"])
    with pytest.raises(UserError, match="format"):
        generate(tmp_path / "x", format="gqa", quiet=True, **SIZES)


def test_the_sources_read_every_format(data):
    """The dataset sources (vqa/data/sources) read the synthetic files as they read the real ones."""
    sources = pytest.importorskip("vqa.data.sources")
    splits = {"vqa1": ("train2014", "val2014", "test-dev2015"), "okvqa": ("train2014", "val2014"),
              "vizwiz": ("train", "val", "test"), "vqacp2": ("train", "test")}  # fmt: skip
    for fmt, names in splits.items():
        root, stats = data[fmt]
        for split in names:
            records = sources.get_source(fmt).load(root, split)
            assert len(records) == stats["splits"][split]["questions"], (fmt, split)


def _rows(counts: dict[tuple[str, str], int]) -> list[dict]:
    """Annotation rows with the given (question type, answer) group sizes, ids in order."""
    rows = []
    for (qt, a), n in counts.items():
        rows += [
            {"question_id": len(rows) + i, "question_type": qt, "multiple_choice_answer": a} for i in range(n)
        ]
    return rows


def test_resplit_moves_a_mix_share_of_each_group_across():
    """Hand-worked: 'is the' yes 60 / no 40 and 'how many' 1: 50 / 2: 30 / 3: 20. Whatever the seeded
    order, each type's test groups keep round(mix * n) of their questions in train (their first ones;
    at mix 0, the first tenth, rounded up, of a group whose answer no train group has), and its train
    groups send as many in all to test (their last ones), shared by size."""
    rows = _rows({("is the", "yes"): 60, ("is the", "no"): 40, ("how many", "1"): 50, ("how many", "2"): 30,
                  ("how many", "3"): 20})  # fmt: skip
    groups = defaultdict(list)
    for r in rows:
        groups[r["question_type"], r["multiple_choice_answer"]].append(r["question_id"])
    for mix in (0.0, 0.25):
        out = resplit(rows, seed=0, mix=mix)
        test = {r["question_id"] for r in out["test"]}
        assert len(out["train"]) + len(test) == len(rows)
        in_test = {g for g, ids in groups.items() if sum(q in test for q in ids) > len(ids) / 2}
        assert len(in_test & {("is the", "yes"), ("is the", "no")}) == 1  # one answer each side
        answers_in_train = {a for (_, a) in groups if (_, a) not in in_test}
        for qt in ("is the", "how many"):
            tests = [g for g in in_test if g[0] == qt]
            trains = [g for g in groups if g[0] == qt and g not in in_test]
            assert trains and groups[trains[0]]  # the first group of a type stays in train
            left = 0
            for g in tests:
                n, k = len(groups[g]), int(mix * len(groups[g]) + 0.5)
                left += k
                k = max(k, -(-n // 10) if g[1] not in answers_in_train else 0)
                assert [q for q in groups[g] if q not in test] == groups[g][:k]
            kept = sum(len(groups[g]) for g in trains)
            for g in trains:
                n = len(groups[g])
                k = int(left * n / kept + 0.5)
                assert [q for q in groups[g] if q in test] == groups[g][n - k :]


def test_a_folder_of_another_format_or_resplit_is_stale(data):
    """stats.json tells ensure_synthetic what a folder holds: another format, or VQA-CP whole groups
    (a folder without `vqacp_mix`), are regenerated; the current files are kept."""
    _, stats = data["vqacp2"]
    assert stale_reason(stats, "vqacp2") is None and stats["vqacp_mix"] == MIX
    whole = {k: v for k, v in stats.items() if k != "vqacp_mix"}
    assert stale_reason(whole, "vqacp2") == f"the VQA-CP re-split with mix 0.0 (vqa synth writes {MIX})"
    assert stale_reason(stats, "vqa2") == "vqacp2 data"
    assert stale_reason(data["okvqa"][1], "okvqa") is None

"""Dataset sources (vqa/data/sources): each format difference read right, every source scored as its
evaluator scores it, bad input per source as one line, and one end-to-end run per source on its
fixture (tests/fixtures/<source>_tiny, written by tests/fixtures/build_sources.py)."""

import json
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from reference_eval import build_targets, vizwiz_loop

from vqa.cli import main
from vqa.data.answers import ANSWER_TYPES, AnswerVocab, answer_type_key, encode_targets
from vqa.data.features import FeatureStore
from vqa.data.image_features import ImageFeatures
from vqa.data.sources import SOURCES, get_source
from vqa.data.sources.records import Answers
from vqa.data.sources.vizwiz import average_precision, evaluate_vizwiz, vizwiz_scores
from vqa.errors import UserError
from vqa.evaluate import checked_report, typed_report
from vqa.features.writer import GridRowWriter, create_grid_file, finish_grid_file

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
FIXTURE = {name: FIXTURES / f"{name}_tiny" for name in SOURCES}
DIM, SIDE = 16, 2  # grid features of the end-to-end runs


def fixture(name: str, tmp_path: Path) -> Path:
    """A copy of the fixture's JSON files (a test may change them)."""
    root = tmp_path / name
    root.mkdir()
    for path in FIXTURE[name].glob("*.json"):
        shutil.copy(path, root)
    return root


def raw(path: Path):
    return json.loads(path.read_text())


def write_features(path: Path, keys: list, seed: int = 0) -> None:
    """Random grid features of `keys` (COCO ids, or file names: layout version 2) through the writer."""
    names = sorted(keys) if isinstance(keys[0], str) else None
    ids = np.arange(len(keys)) if names else np.asarray(sorted(keys), np.int64)
    partial = path.with_name(path.name + ".partial")
    create_grid_file(partial, len(ids), DIM, SIDE, {"source": "test"}, names)
    writer = GridRowWriter(partial)
    writer.write(ids, np.random.default_rng(seed).standard_normal((len(ids), DIM, SIDE, SIDE)))
    writer.close()
    finish_grid_file(partial, path, len(ids), len(ids))


def image_keys(name: str, root: Path) -> dict[str, set]:
    """image folder -> keys of the images the source's splits ask about."""
    out: dict[str, set] = {}
    for split in SOURCES[name].splits:
        records = SOURCES[name].load(root, split)
        for group, key in zip(records.image_group, records.image_keys.tolist()):
            out.setdefault(records.groups[group], set()).add(key)
    return out


# ---------------------------------------------------------------- the registry and the loaders


def test_registry_and_unknown_names():
    assert list(SOURCES) == ["vqa2", "vqa1", "vqacp2", "vizwiz", "okvqa"]
    with pytest.raises(
        UserError, match="unknown data source 'gqa'; choose one of vqa2, vqa1, vqacp2, vizwiz, okvqa"
    ):
        get_source("gqa")
    with pytest.raises(
        UserError,
        match=r"OK-VQA \(data.source okvqa\) has no split 'test2015'; choose one of train2014, val2014",
    ):
        SOURCES["okvqa"].load(FIXTURE["okvqa"], "test2015")


def test_vqa1_names_without_prefix_and_test_dev_in_test2015():
    vqa1 = SOURCES["vqa1"]
    train = vqa1.load(FIXTURE["vqa1"], "train2014")
    assert len(train) == 24 and train.annotated and train.groups == ("train2014",)
    assert all(r.question_id // 10 == r.image_id and len(r.answers) == 10 for r in train)
    dev = vqa1.load(FIXTURE["vqa1"], "test-dev2015")
    assert not dev.annotated and dev.groups == ("test2015",)  # test-dev images are in test2015's folder
    val = vqa1.load(FIXTURE["vqa1"], "val2014")
    assert sorted(Counter(val.answers.counts().tolist())) == [9, 10]  # one question without 10 answers


def test_vqacp2_bare_lists_and_images_in_two_folders(tmp_path):
    root = fixture("vqacp2", tmp_path)
    questions = raw(root / "vqacp_v2_train_questions.json")
    assert isinstance(questions, list) and {q["coco_split"] for q in questions} == {"train2014", "val2014"}
    records = SOURCES["vqacp2"].load(root, "train")
    assert records.groups == ("train2014", "val2014")
    by_group = {records.groups[g]: set() for g in range(2)}
    for g, key in zip(records.image_group, records.image_keys.tolist()):
        by_group[records.groups[g]].add(key)
    assert by_group == {s: {q["image_id"] for q in questions if q["coco_split"] == s} for s in by_group}
    # the features of one split come from two files, each image from its own
    for group, keys in by_group.items():
        write_features(root / f"features_{group}.h5", list(keys), seed=len(group))
    stores = {g: FeatureStore(root / f"features_{g}.h5") for g in records.groups}
    features = ImageFeatures.resolve(stores, records, "train")
    for i in range(len(records)):
        key, group = records.image_key(i), records.groups[records.image_group[records.image[i]]]
        np.testing.assert_array_equal(features.get(int(records.image[i])), stores[group].get(key))
    # a wrapped (VQA v2-style) file is not VQA-CP's format
    (root / "vqacp_v2_train_questions.json").write_text(json.dumps({"questions": questions}))
    with pytest.raises(
        UserError, match="top level is not a JSON list; VQA-CP v2 questions files are bare lists"
    ):
        SOURCES["vqacp2"].load(root, "train")


def test_vizwiz_image_keys_answerable_and_test_without_answers():
    vizwiz = SOURCES["vizwiz"]
    val = vizwiz.load(FIXTURE["vizwiz"], "val")
    entries = raw(FIXTURE["vizwiz"] / "val.json")
    assert val.question_id.tolist() == list(range(len(entries)))  # no ids in the release: the row
    assert [val.image_key(i) for i in range(len(val))] == [e["image"] for e in entries]
    assert val.answerable.tolist() == [e["answerable"] for e in entries]
    assert "unanswerable" in val.answer_types and val.rules == "vizwiz" and val.groups == ("val",)
    test = vizwiz.load(FIXTURE["vizwiz"], "test")
    assert not test.annotated and len(test) == 10
    results = vizwiz.results({q: "yes" for q in range(len(val))}, val)
    assert results[0] == {"image": "VizWiz_val_00000000.jpg", "answer": "yes"}


def test_okvqa_doubled_answers_and_the_most_common_answer():
    records = SOURCES["okvqa"].load(FIXTURE["okvqa"], "train2014")
    annotations = raw(FIXTURE["okvqa"] / "mscoco_train2014_annotations.json")["annotations"]
    assert "multiple_choice_answer" not in annotations[0] and "raw_answer" in annotations[0]["answers"][0]
    for r, a in zip(records, annotations):
        answers = [x["answer"] for x in a["answers"]]
        assert answers[::2] == answers[1::2] and r.answers == answers  # each of 5 answers listed twice
        assert r.multiple_choice_answer == Counter(answers).most_common(1)[0][0]


@pytest.mark.parametrize("name", ["vqa2", "vqa1", "vqacp2", "okvqa"])
def test_compact_targets_equal_the_reference(name):
    """The Dataset's targets (from interned strings) equal the reference's, question by question, on the
    annotation files' strings."""
    source = SOURCES[name]
    split = next(s for s, info in source.splits.items() if info.annotated)
    records = source.load(FIXTURE[name], split)
    _, a_path = source.files(FIXTURE[name], split)
    data = raw(a_path)
    annotations = {a["question_id"]: a for a in (data["annotations"] if source.layout.wrapped else data)}
    vocab = AnswerVocab.from_answers(Counter(r.multiple_choice_answer for r in records), 12)
    scored = records.answers.counts() == 10
    t = encode_targets(records.answers.select(scored), vocab)
    for j, r in enumerate(records.select(scored)):
        ann = annotations[r.question_id]
        b = build_targets([x["answer"] for x in ann["answers"]], r.multiple_choice_answer, vocab.stoi)
        n = len(b.answer_idx)
        assert (b.answer, b.answer_idx, b.oov_weight) == (t.answer[j], t.idx[j, :n].tolist(), t.oov_weight[j])
        assert [c / 10 for c in t.count[j, :n].tolist()] == b.answer_weight and not t.count[j, n:].any()


def test_vizwiz_scores_and_targets_follow_its_evaluator():
    rnd = random.Random(0)
    pool = ["yes", "Yes", "no", "the cat", "cat", "2", "two", " soup ", "soup", "unanswerable", "a b"]
    answers = [[rnd.choice(pool) for _ in range(10)] for _ in range(300)]
    preds = [rnd.choice([*pool, "Cat.", "TWO"]) for _ in range(300)]
    scores = vizwiz_scores([a for row in answers for a in row], np.full(300, 10), preds)
    assert scores.tolist() == [vizwiz_loop(a, p) for a, p in zip(answers, preds)]
    # targets key the answers as released: "the cat" and " soup " never match a prediction
    vocab = AnswerVocab(["yes", "cat", "2", "soup", "unanswerable", "no"])
    t = encode_targets(
        Answers.build(answers, [Counter(a).most_common(1)[0][0] for a in answers]), vocab, "vizwiz"
    )
    for j, row in enumerate(answers):
        got = {vocab.itos[i]: c for i, c in zip(t.idx[j].tolist(), t.count[j].tolist()) if c}
        assert got == {s: row.count(s) for s in row if s in vocab.stoi}


def test_average_precision_as_scikit_learn():
    # hand-worked: ranked 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): AP = 0.5 * 1 + 0.5 * 2/3
    labels, scores = np.array([1, 0, 1, 0]) == 1, np.array([0.9, 0.8, 0.7, 0.1])
    assert average_precision(labels, scores) == pytest.approx(0.5 + 1 / 3)
    # ties share a threshold: both at 0.5, one positive -> precision 1/2 at recall 1
    assert average_precision(np.array([True, False]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert average_precision(np.array([False, False]), np.array([0.5, 0.2])) is None


def test_vizwiz_eval_reports_unanswerable_and_answerability(tmp_path, capsys):
    val = FIXTURE["vizwiz"] / "val.json"
    entries = raw(val)
    results = [{"image": e["image"], "answer": "unanswerable", "answerable": 0.1 + 0.8 * e["answerable"]}
               for e in entries]  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "report.json"
    assert (
        main(
            [
                "eval",
                "--source",
                "vizwiz",
                "--results",
                str(path),
                "--annotations",
                str(val),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["rules"] == "vizwiz" and "unanswerable" in report["perAnswerType"]
    assert report["unanswerability"] == {"average_precision": 100.0, "f1_score": 100.0}  # a perfect ranking
    assert "unanswerability: average precision 100.00" in capsys.readouterr().out
    assert set(report["perQuestion"]) == {e["image"] for e in entries}
    without = evaluate_vizwiz(val, None, [{"image": r["image"], "answer": r["answer"]} for r in results])
    assert "unanswerability" not in without and without["overall"] == report["overall"]


@pytest.mark.parametrize("name", ["vqacp2", "okvqa", "vqa1"])
def test_eval_typed_and_checked_paths_agree(name, tmp_path):
    """VQA-CP's bare lists and OK-VQA's missing multiple_choice_answer take the fast path too."""
    source = SOURCES[name]
    split = [s for s, info in source.splits.items() if info.annotated][-1]
    q, a = source.files(FIXTURE[name], split)
    records = source.load(FIXTURE[name], split)
    results = tmp_path / "r.json"
    results.write_text(
        json.dumps([{"question_id": q_, "answer": "2"} for q_ in records.question_id.tolist()])
    )
    fast = typed_report(a, q, results, source)
    assert fast is not None and fast == checked_report(a, q, results, source)


# ---------------------------------------------------------------- bad input: one line, exit 2


def vqa(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vqa", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def test_results_in_another_sources_format_is_one_line(tmp_path):
    by_qid = tmp_path / "qid.json"
    by_qid.write_text(json.dumps([{"question_id": 1, "answer": "yes"}]))
    err = one_line(
        vqa(
            "eval", "--source", "vizwiz", "--results", by_qid, "--annotations", FIXTURE["vizwiz"] / "val.json"
        )
    )
    assert (
        f"results file {by_qid}: its entries are keyed by 'question_id', not 'image'" in err
        and "--source" in err
    )
    by_image = tmp_path / "image.json"
    by_image.write_text(json.dumps([{"image": "VizWiz_val_00000000.jpg", "answer": "yes"}]))
    q, a = SOURCES["vqa1"].files(FIXTURE["vqa1"], "val2014")
    err = one_line(
        vqa("eval", "--source", "vqa1", "--results", by_image, "--annotations", a, "--questions", q)
    )
    assert "its entries are keyed by 'image', not 'question_id'" in err
    assert "unknown data source 'gqa'" in one_line(
        vqa("eval", "--source", "gqa", "--results", by_image, "--annotations", a)
    )


@pytest.mark.slow
def test_training_refuses_a_vqacp_entry_without_coco_split_and_a_vizwiz_image_without_features(tmp_path):
    cp = fixture("vqacp2", tmp_path)
    questions = raw(cp / "vqacp_v2_train_questions.json")
    del questions[3]["coco_split"]
    (cp / "vqacp_v2_train_questions.json").write_text(json.dumps(questions))
    err = one_line(
        vqa("train", "--config", "configs/vqacp2/avg_soft.yaml", f"data.root={cp}", f"out_dir={tmp_path}")
    )
    assert (
        f"vqacp_v2_train_questions.json: entry 3 (question_id {questions[3]['question_id']}) has no valid 'coco_split'"
        in err
    )
    vw = fixture("vizwiz", tmp_path)
    keys = image_keys("vizwiz", vw)
    for split, names in keys.items():
        write_features(vw / f"features_{split}.h5", sorted(names)[1:] if split == "val" else list(names))
    err = one_line(vqa("train", "--config", "configs/vizwiz/avg_soft.yaml", f"data.root={vw}", f"out_dir={tmp_path}",
                       f"data.feature_dim={DIM}"))  # fmt: skip
    assert f"features_val.h5: image {sorted(keys['val'])[0]} has no features (1 questions affected)" in err


# ---------------------------------------------------------------- end to end, per source


def extract_vizwiz_features(root: Path, keys: dict[str, set]) -> None:
    """`vqa extract` on generated photos named as VizWiz's: features keyed by file name."""
    from PIL import Image

    for split, names in keys.items():
        folder = root / "images" / split
        folder.mkdir(parents=True)
        for i, name in enumerate(sorted(names)):
            Image.new("RGB", (48, 40), (37 * i % 256, 90, 160)).save(folder / name)
        assert main(["extract", "--images", str(folder), "--out", str(root / f"features_{split}.h5"), "--arch", "resnet18",
                     "--size", "64", "--weights", "none", "--workers", "0", "--device", "cpu"]) == 0  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SOURCES))
def test_end_to_end(name, tmp_path, capsys):
    """features -> `vqa train` 2 epochs -> `vqa predict` -> `vqa eval --source`: the accuracy the training
    loop logged (closed form) is the one the exact string path gives, per answer type too."""
    source, root, runs = SOURCES[name], fixture(name, tmp_path), tmp_path / "runs"
    keys = image_keys(name, root)
    dim = DIM
    if name == "vizwiz":
        extract_vizwiz_features(root, keys)
        dim = 512  # resnet18's width
    else:
        for i, (group, group_keys) in enumerate(keys.items()):
            write_features(root / f"features_{group}.h5", list(group_keys), seed=i)
    code = main(["train", "--config", f"configs/{name}/avg_soft.yaml", f"data.root={root}", f"out_dir={runs}", "name=e2e",
                 "data.features=grid", "data.features_file=features_{split}.h5", f"data.feature_dim={dim}",
                 "data.num_workers=0", "train.epochs=2", "train.batch_size=8", "train.device=cpu", "train.lr=0.01",
                 "model.embed_dim=8", "model.rnn_dim=16", "model.hidden_dim=16", "model.dropout=0",
                 # VQA-CP selects on a held-out part of train; here the logged split must be the one scored
                 *(["data.val_split=test", "data.test_split="] if name == "vqacp2" else [])])  # fmt: skip
    assert code == 0
    run = runs / "e2e"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = max(metrics, key=lambda m: m["val/accuracy"])
    val = [s for s, info in source.splits.items() if info.annotated][-1]
    results, report = tmp_path / "val.json", tmp_path / "report.json"
    assert main(["predict", "--run", str(run), "--split", val, "--out", str(results)]) == 0
    q, a = source.files(root, val)
    files = ["--annotations", str(a), "--questions", str(q)] if a else ["--annotations", str(q)]
    assert main(["eval", "--source", name, "--results", str(results), *files, "--out", str(report)]) == 0
    scored = json.loads(report.read_text())
    print(
        f"{name}: val accuracy {best['val/accuracy']} (logged) = {scored['overall']} (vqa eval)",
        file=sys.stderr,
    )
    assert scored["overall"] == best["val/accuracy"]
    for t in ANSWER_TYPES:
        assert scored["perAnswerType"].get(t) == best[f"val/accuracy_{answer_type_key(t)}"]
    for bucket, accuracy in scored["perAgreement"].items():  # by human agreement too (vqa.agreement)
        assert accuracy == best[f"val/accuracy_agree_{bucket}"], bucket
    key = "image" if source.keyed_by == "image" else "question_id"
    assert all(set(r) == {key, "answer"} for r in json.loads(results.read_text()))
    # the trainer's own predictions file of the best epoch: the same server format and answers (predict
    # also answers the questions without 10 answers, which training leaves out)
    own = json.loads((run / f"predictions_{val}.json").read_text())
    predicted = {json.dumps(r, sort_keys=True) for r in json.loads(results.read_text())}
    assert own and all(json.dumps(r, sort_keys=True) in predicted for r in own)
    for split, info in source.splits.items():  # the test files go out under the server's names
        if not info.annotated:
            out_dir = tmp_path / split
            assert main(["predict", "--run", str(run), "--split", split, "--out", str(out_dir)]) == 0
            assert [p.name for p in out_dir.iterdir()] == [source.results_file(split, "e2e")]
    capsys.readouterr()
    assert main(["predict", "--run", str(run), "--split", "nope", "--out", str(tmp_path)]) == 2
    assert f"has no split 'nope'; choose one of {', '.join(source.splits)}" in capsys.readouterr().err

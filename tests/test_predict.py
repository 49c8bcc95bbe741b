"""`vqa predict` on the tiny VQA v2 fixture: server file names, the phase of each test file, and
refusals that write nothing (missing questions, an --out that cannot be written)."""

import json
import shutil
from pathlib import Path

import pytest

import vqa.predict
from vqa.cli import main

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "vqa2_tiny"
QUESTIONS = "v2_OpenEnded_mscoco_{split}_questions.json"
SERVER = "vqa_OpenEnded_mscoco_{split}_{name}_results.json"


def question_ids(root: Path, split: str) -> list[int]:
    return [
        q["question_id"] for q in json.loads((root / QUESTIONS.format(split=split)).read_text())["questions"]
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory, fixture_builder):
    """The fixture's official JSON + region features made by `vqa convert` from its TSV writer."""
    root = tmp_path_factory.mktemp("vqa2")
    for path in FIXTURE.glob("*.json"):
        shutil.copy(path, root)
    tsv = tmp_path_factory.mktemp("tsv")
    for subtype in ("train2014", "val2014", "test2015"):
        rows = fixture_builder.bottomup_rows(fixture_builder.image_ids(subtype), boxes=(4, 4), dim=32)
        fixture_builder.write_bottomup_tsv(tsv / f"{subtype}.tsv", rows)
        args = ["convert", "--from", "bottomup-tsv", str(tsv / f"{subtype}.tsv"), "--out", str(root / f"boxes_{subtype}.h5")]  # fmt: skip
        assert main(args) == 0
    return root


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    code = main([
        "train", "--config", "configs/vqa2/avg_soft.yaml", f"data.root={data}", f"out_dir={runs}", "name=tiny",
        "data.features=boxes", "data.features_file=boxes_{split}.h5", "data.feature_dim=32", "data.num_workers=0",
        "train.epochs=1", "train.batch_size=8", "train.device=cpu", "model.embed_dim=8", "model.rnn_dim=16",
        "model.hidden_dim=16",
    ])  # fmt: skip
    assert code == 0
    return runs / "tiny"


def predict(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["predict", *args])
    out, err = capsys.readouterr()
    return code, out, err


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()}


def test_test2015_file_answers_every_question_under_the_server_name(run, data, capsys):
    before = files(run)
    code, out, err = predict(capsys, "--run", str(run), "--split", "test2015")  # --out: the run folder
    assert code == 0, err
    path = run / SERVER.format(split="test2015", name="tiny")
    assert files(run) - before == {path.name}
    results = json.loads(path.read_text())
    assert [r["question_id"] for r in results] == sorted(question_ids(data, "test2015"))
    assert len(results) == 18 and all(isinstance(r["answer"], str) and r["answer"] for r in results)
    assert {r["question_id"] for r in results} > set(question_ids(data, "test-dev2015"))  # test-dev inside
    assert f"predict: 18 answers for test2015 from {run} (epoch 1) -> {path}" in out
    assert (
        "test2015 (18 questions; VQA v2's test2015 has 447,793): the complete file: upload it to any EvalAI phase"
        in out
    )
    assert "Test-Standard" in out and "evaluation server's name" not in out


def test_test_dev_file_says_it_is_not_the_submission(run, data, tmp_path, capsys):
    code, out, err = predict(capsys, "--run", str(run), "--split", "test-dev2015", "--out", str(tmp_path), "--name", "avg-soft")  # fmt: skip
    assert code == 0, err
    path = tmp_path / SERVER.format(split="test-dev2015", name="avg-soft")
    assert files(tmp_path) == {path.name}
    assert sorted(r["question_id"] for r in json.loads(path.read_text())) == sorted(
        question_ids(data, "test-dev2015")
    )
    assert "predict: 12 answers for test-dev2015" in out
    assert "test-dev2015 (12 questions; VQA v2's test-dev2015 has 107,394): test-dev questions only" in out
    assert "EvalAI refuses it in every phase" in out and "vqa predict --split test2015" in out


def test_out_file_and_new_folder(run, tmp_path, capsys):
    # a file path is used as it is; the line names the server's name for it
    code, out, err = predict(
        capsys, "--run", str(run), "--split", "test2015", "--out", str(tmp_path / "mine.json")
    )
    assert code == 0, err
    assert files(tmp_path) == {"mine.json"}
    assert (
        f"the evaluation server's name for this file: {SERVER.format(split='test2015', name='tiny')}" in out
    )
    # a new path without a suffix is a folder, made on the way
    code, out, err = predict(
        capsys, "--run", str(run), "--split", "test2015", "--out", str(tmp_path / "sub" / "dir")
    )
    assert code == 0, err
    assert (tmp_path / "sub" / "dir" / SERVER.format(split="test2015", name="tiny")).is_file()


def test_val_split_is_still_scored(run, tmp_path, capsys):
    report = tmp_path / "report.json"
    code, out, err = predict(capsys, "--run", str(run), "--split", "val2014", "--out", str(tmp_path), "--report", str(report))  # fmt: skip
    assert code == 0, err
    assert (tmp_path / SERVER.format(split="val2014", name="tiny")).is_file()
    assert "predict: 24 answers for val2014" in out and "VQA accuracy" in out
    assert json.loads(report.read_text())["overall"] >= 0


def one_line_refusal(code: int, out: str, err: str) -> str:
    assert code == 2 and out == "", out
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_missing_answers_are_refused_and_nothing_is_written(run, tmp_path, capsys, monkeypatch):
    predict_all = vqa.predict.predict

    def drop_one(*args, **kwargs):
        answers = predict_all(*args, **kwargs)
        answers.pop(max(answers))
        return answers

    monkeypatch.setattr(vqa.predict, "predict", drop_one)
    code, out, err = predict(capsys, "--run", str(run), "--split", "test2015", "--out", str(tmp_path))
    err = one_line_refusal(code, out, err)
    assert (
        "1 of 18 questions" in err and QUESTIONS.format(split="test2015") in err and "nothing written" in err
    )
    assert files(tmp_path) == set()


def test_question_without_features_is_refused_and_nothing_is_written(run, data, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(data, root)
    path = root / QUESTIONS.format(split="test2015")
    questions = json.loads(path.read_text())
    questions["questions"].append({"question_id": 999000, "image_id": 999, "question": "What is this?"})
    path.write_text(json.dumps(questions))
    out_dir = tmp_path / "out"
    args = ["--run", str(run), "--split", "test2015", "--out", str(out_dir), "--data-root", str(root)]
    err = one_line_refusal(*predict(capsys, *args))
    assert "image 999 of question 999000 has no features" in err
    assert not out_dir.exists()


def test_out_under_a_file_is_one_line(run, tmp_path, capsys):
    blocker = tmp_path / "X"
    blocker.write_text("a file, not a folder")
    target = blocker / "y.json"
    err = one_line_refusal(*predict(capsys, "--run", str(run), "--split", "test2015", "--out", str(target)))
    assert f"--out {target}: {blocker} is a file, not a folder" in err
    assert files(tmp_path) == {"X"} and blocker.read_text() == "a file, not a folder"
    err = one_line_refusal(*predict(capsys, "--run", str(run), "--split", "test2015", "--out", str(tmp_path), "--name", "a b"))  # fmt: skip
    assert "name 'a b'" in err and files(tmp_path) == {"X"}

"""Every JSON file the project writes is strict JSON (no NaN / Infinity), and bad checkpoints are one line."""

import collections
import json
from pathlib import Path

import pytest
import torch

from vqa import io
from vqa.cli import main

CONFIG = "configs/synthetic/avg_soft.yaml"


def strict(text: str):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def json_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    argv = ["train", "--config", CONFIG, f"data.root={tiny_data}", f"out_dir={out}", "name=r", "train.epochs=1",
            "model.rnn_dim=64", "model.hidden_dim=128", "train.device=cpu"]  # fmt: skip
    assert main(argv) == 0
    return out / "r"


def test_every_json_the_project_writes_is_strict(run, tiny_data, tmp_path):
    """Training (metrics.jsonl, predictions), predict, eval's report, compare's summary and the
    synthetic generator: parsed with a parser that refuses NaN and Infinity."""
    assert main(["predict", "--run", str(run), "--split", "val2014", "--out", str(tmp_path / "pred.json"),
                 "--report", str(tmp_path / "report.json")]) == 0  # fmt: skip
    assert main(["eval", "--results", str(tmp_path / "pred.json"),
                 "--annotations", str(tiny_data / "v2_mscoco_val2014_annotations.json"),
                 "--questions", str(tiny_data / "v2_OpenEnded_mscoco_val2014_questions.json"),
                 "--out", str(tmp_path / "eval.json")]) == 0  # fmt: skip
    assert main(["compare", str(run), "--out", str(tmp_path / "compare")]) == 0
    assert main(["synth", "--out", str(tmp_path / "synth"), "--preset", "tiny", "--quiet"]) == 0
    files = json_files(run) + json_files(tmp_path)
    names = {p.name for p in files}
    assert {"metrics.jsonl", "predictions_val2014.json", "pred.json", "report.json", "eval.json",
            "summary.json", "stats.json"} <= names  # fmt: skip
    for path in files:
        text = path.read_text()
        if path.suffix == ".jsonl":
            for line in text.splitlines():
                strict(line)
        else:
            strict(text)


def test_a_file_that_is_not_a_run_checkpoint_is_one_line(run, tmp_path, capsys):
    """A checkpoint that loads but is not a run's, random bytes, or a pickle that would run code:
    one line each, and never torch's advice to load with weights_only=False."""
    folder = tmp_path / "fake"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text((run / "config.yaml").read_text())
    last, best = folder / "checkpoints" / "last.pt", folder / "checkpoints" / "best.pt"

    class Evil:
        def __reduce__(self):
            return (print, ("this ran",))

    cases = {
        "not a run": lambda p: torch.save({"x": collections.OrderedDict()}, p),
        "random bytes": lambda p: p.write_bytes(bytes(range(256)) * 4),
        "code": lambda p: torch.save(Evil(), p),
    }
    for what, write in cases.items():
        write(last)
        write(best)
        for argv in (
            ["train", "--resume", str(folder)],
            ["predict", "--run", str(folder), "--split", "val2014"],
        ):
            capsys.readouterr()
            assert main(argv) == 2, (what, argv)
            captured = capsys.readouterr()
            lines = captured.err.strip().splitlines()
            assert len(lines) == 1 and str(folder / "checkpoints") in lines[0], (what, lines)
            assert "weights_only" not in captured.err and "this ran" not in captured.out, what


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "run folder does not exist" in line


def test_io_refuses_nan_on_write_and_read(tmp_path):
    with pytest.raises(ValueError):
        io.write_json_atomic(tmp_path / "x.json", {"a": float("nan")})
    assert not list(tmp_path.iterdir())  # nothing half-written, no temporary file left
    (tmp_path / "y.json").write_text('{"a": NaN}')
    with pytest.raises(io.UserError, match="not strict JSON"):
        io.read_json(tmp_path / "y.json")

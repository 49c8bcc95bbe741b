"""The bad-input catalogue, through the real command line: each row ends in one `error: ` line that
names the file, key or id and says what to do (exit code 2, no traceback, nothing half-written), or,
for questions that cannot be scored, in a count that training and `vqa eval` report alike.

Independent commands of a test start together (each pays the interpreter's and torch's start-up).
"""

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from vqa.config import load_config
from vqa.errors import UserError
from vqa.synth import generate as synth

ROOT = Path(__file__).parents[1]
CONFIG = "configs/synthetic/avg_soft.yaml"
Q = "v2_OpenEnded_mscoco_{split}_questions.json"
A = "v2_mscoco_{split}_annotations.json"
SMALL_MODEL = ("model.embed_dim=16", "model.rnn_dim=32", "model.hidden_dim=32")


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vqa", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def vqa(*args) -> subprocess.CompletedProcess:
    return finish(start(*args))


def vqa_all(*commands) -> list[subprocess.CompletedProcess]:
    """Run several commands at once; their results in order."""
    return [finish(p) for p in [start(*c) for c in commands]]


def check_error(proc, *needles) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def train_args(root, out, *overrides):
    return ("train", "--config", CONFIG, f"data.root={root}", f"out_dir={out}", "data.synth_preset=",
            "train.epochs=1", *SMALL_MODEL, *overrides)  # fmt: skip


def copy_data(tiny_data, dest: Path) -> Path:
    shutil.copytree(tiny_data, dest)
    return dest


def read(path: Path):
    return json.loads(path.read_text())


def write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- 1. Config ---------------------------------------------------------------------------------------


def test_config_rows(tmp_path):
    (tmp_path / "base7.yaml").write_text("base: 7\ntrain:\n  epochs: 2\n")
    (tmp_path / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x00")
    (tmp_path / "syntax.yaml").write_text("train:\n  lr_decay_epochs: [30, 60\n  epochs: 3\n")
    runs = tmp_path / "runs"
    typo, base, binary, syntax, gone = vqa_all(
        ("train", "--config", CONFIG, "data.questions=v2_OpenEnded_mscoco_{splt}_questions.json", f"out_dir={runs}"),
        ("train", "--config", tmp_path / "base7.yaml", f"out_dir={runs}"),
        ("train", "--config", tmp_path / "binary.yaml", f"out_dir={runs}"),
        ("train", "--config", tmp_path / "syntax.yaml", f"out_dir={runs}"),
        ("train", "--resume", tmp_path / "no_such_run"),
    )  # fmt: skip
    # a typo in a {split} template fails when the config loads (was: KeyError: 'splt' at data loading)
    check_error(typo, "'data.questions'", "{splt}", "{split}")
    # was: TypeError: unsupported operand type(s) for /: 'PosixPath' and 'int'
    check_error(base, "base7.yaml", "'base' is 7", "relative path string")
    # was: UnicodeDecodeError: 'utf-8' codec can't decode byte ...
    check_error(binary, "binary.yaml", "not UTF-8", "YAML")
    # was: "not valid YAML (while parsing a flow sequence)", without a place
    check_error(syntax, "syntax.yaml", "not valid YAML", "line 3 column 9")
    # was: ".../no_such_run/config.yaml: config file not found; pass an existing YAML file"
    check_error(gone, "--resume", "no_such_run", "config.yaml", "runs/<name>")
    assert not runs.exists()


def test_a_template_typo_in_a_yaml_file_names_the_key(tmp_path):
    path = tmp_path / "tpl.yaml"
    path.write_text(f"base: {ROOT / CONFIG}\ndata:\n  features_file: features_{{spilt}}.h5\n")
    with pytest.raises(
        UserError, match=r"'data.features_file' is 'features_\{spilt\}.h5' \(\{spilt\} is unknown\)"
    ):
        load_config(path)


@pytest.mark.parametrize(
    "override, needle",
    [
        ("data.annotations=v2_mscoco_{Split}_annotations.json", "{Split} is unknown"),
        ("data.features_file=features_{0}.h5", "'data.features_file'"),
        ("data.questions=q_{split.name}.json", "'data.questions'"),
        ("data.questions=q_{split.json", "'data.questions'"),
        ("data.features_file=f_{split:d}.h5", "'data.features_file'"),
    ],
)
def test_every_bad_split_template_is_one_line_at_load_time(override, needle):
    with pytest.raises(UserError, match="the only placeholder is {split}") as e:
        load_config(CONFIG, [override])
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_good_templates_and_text_overrides_load():
    cfg = load_config(
        CONFIG, ["data.questions={split}_q.json", "name=2024", "data.features_file=f{{x}}_{split}.h5"]
    )
    assert (cfg.data.questions, cfg.name, cfg.data.features_file) == (
        "{split}_q.json",
        "2024",
        "f{{x}}_{split}.h5",
    )


def test_resume_messages_in_config_loading(tmp_path):
    from vqa.config import load_run_config

    with pytest.raises(UserError, match="run folder does not exist"):
        load_run_config(tmp_path / "gone")
    with pytest.raises(UserError, match="has no config.yaml"):
        load_run_config(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        load_run_config(tmp_path / "file")


# --- 2. Data -----------------------------------------------------------------------------------------


def test_data_file_rows(tiny_data, tmp_path):
    latin = copy_data(tiny_data, tmp_path / "latin")
    q_path = latin / Q.format(split="train2014")
    raw = q_path.read_bytes()
    i = raw.index(b'"question": "') + len(b'"question": "')
    q_path.write_bytes(raw[:i] + "é".encode("latin-1") + raw[i + 1 :])  # one latin-1 byte

    zipped = copy_data(tiny_data, tmp_path / "zipped")
    a_path = zipped / A.format(split="val2014")
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(a_path, a_path.name)
    shutil.copy(tmp_path / "a.zip", a_path)  # a zip saved under the .json name

    mixed = copy_data(tiny_data, tmp_path / "mixed")
    anns = read(mixed / A.format(split="val2014"))
    anns["annotations"][0]["question_id"] = 123
    write(mixed / A.format(split="val2014"), anns)

    runs = tmp_path / "runs"
    p_latin, p_zip, p_mixed = vqa_all(*(train_args(r, runs) for r in (latin, zipped, mixed)))
    # was: UnicodeDecodeError (now vqa.io.read_json)
    check_error(p_latin, q_path, "not UTF-8")
    check_error(p_zip, a_path, "not UTF-8")
    # was: "... annotation for question_id 123 has no question in v2_...json", without advice
    check_error(p_mixed, "question_id 123", Q.format(split="val2014"), "same split")
    assert not runs.exists()


def _answers(n: int, pool: list[str]) -> list[dict]:
    return [{"answer_id": i + 1, "answer": pool[i % len(pool)], "answer_confidence": "yes"} for i in range(n)]


def test_questions_without_10_answers_are_left_out_of_training_and_eval_alike(tiny_data, tmp_path):
    """25 answers (was: a broadcast traceback), 0 answers (was: trained silently, refused by `vqa eval`),
    5 answers: left out of training, validation and `vqa eval` alike, and counted by both."""
    root = copy_data(tiny_data, tmp_path / "data")
    skipped = {}
    for split, n in (("train2014", 240), ("val2014", 120)):  # a cut of tiny: a fast epoch
        questions, anns = read(root / Q.format(split=split)), read(root / A.format(split=split))
        questions["questions"] = questions["questions"][:n]
        anns["annotations"] = anns["annotations"][:n]
        # answers in the vocabulary: more than 10 distinct ones overflowed the 10 target slots
        pool = sorted({a["multiple_choice_answer"] for a in anns["annotations"]})
        assert len(pool) > 10
        for a, count in zip(anns["annotations"], (25, 0, 5)):
            a["answers"] = _answers(count, pool)
        skipped[split] = [a["question_id"] for a in anns["annotations"][:3]]
        write(root / Q.format(split=split), questions)
        write(root / A.format(split=split), anns)
    runs = tmp_path / "runs"
    trained = vqa(*train_args(root, runs))
    assert trained.returncode == 0, trained.stdout + trained.stderr
    for split, n in (("train2014", 240), ("val2014", 120)):
        assert (
            f"{split}: 3 questions whose annotation does not have exactly 10 answers left out"
            in trained.stdout
        )
        assert f"of {n} questions kept" in trained.stdout
        assert ", ".join(map(str, skipped[split])) in trained.stdout
    logged = read_jsonl(runs / "avg_soft" / "metrics.jsonl")[-1]["val/accuracy"]

    # `vqa eval` of the run's own predictions (which lack the skipped questions) and of a results
    # file that answers every question: both score the same 117 questions, equal to the logged accuracy
    predictions = runs / "avg_soft" / "predictions_val2014.json"
    every = tmp_path / "every.json"
    answered = {r["question_id"]: r["answer"] for r in read(predictions)}
    assert not answered.keys() & set(skipped["val2014"])
    write(every, [{"question_id": q, "answer": answered.get(q, "yes")} for q in _ids(root, "val2014")])
    files = (
        "--annotations",
        root / A.format(split="val2014"),
        "--questions",
        root / Q.format(split="val2014"),
    )
    evals = vqa_all(*(("eval", "--results", r, *files, "--out", tmp_path / f"{r.stem}.report.json")
                      for r in (predictions, every)))  # fmt: skip
    for proc, results in zip(evals, (predictions, every)):
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"(current rules, 117 questions): {logged:.2f}" in proc.stdout
        line = f"skipped: 3 questions not scored, annotation without exactly 10 answers (question ids {', '.join(map(str, skipped['val2014']))})"
        assert line in proc.stdout
        report = read(tmp_path / f"{results.stem}.report.json")
        assert report["overall"] == logged and report["questions"] == 117
        assert report["skipped"]["questions"] == 3 and report["skipped"]["question_ids"] == skipped["val2014"]


def _ids(root: Path, split: str) -> list[int]:
    return [q["question_id"] for q in read(root / Q.format(split=split))["questions"]]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- 3. Synthetic data -------------------------------------------------------------------------------


def test_sigkill_of_synth_over_a_dataset_leaves_it_entirely_old(tiny_data, tmp_path):
    out = copy_data(tiny_data, tmp_path / "data")
    before = digest(out)
    staging = tmp_path / ".data.tmp"
    proc = start("synth", "--out", out, "--preset", "tiny", "--seed", "1", "--quiet")
    deadline = time.monotonic() + 120
    while not (staging.is_dir() and any(staging.iterdir())):  # the new dataset is half-way written
        assert proc.poll() is None and time.monotonic() < deadline, finish(proc).stderr
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert digest(out) == before  # entirely old: not one new file
    assert staging.exists()  # what the kill left, for the rerun to remove

    again = vqa("synth", "--out", out, "--preset", "tiny", "--seed", "1", "--quiet")
    assert again.returncode == 0, again.stderr
    assert read(out / "stats.json")["seed"] == 1
    after = digest(out)
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)  # entirely new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no .data.tmp, no .data.old


def test_a_kill_between_the_two_renames_is_undone(tiny_data, tmp_path):
    """A kill after the old folder was put aside and before the new one came in: the next run puts
    the old one back first (and removes the stale copy), so `out` is never missing for long."""
    out = tmp_path / "data"
    shutil.copytree(tiny_data, tmp_path / ".data.old")
    (tmp_path / ".data.tmp").mkdir()
    (tmp_path / ".data.tmp" / "stats.json").write_text("{}")
    real, tmp, old = synth._staging(out)
    assert real == out.resolve() and digest(out) == digest(tiny_data)
    assert not old.exists() and tmp.is_dir() and not any(tmp.iterdir())
    shutil.rmtree(tmp)


def test_synth_refuses_a_folder_holding_other_files(tiny_data, tmp_path):
    out = copy_data(tiny_data, tmp_path / "data")
    (out / "notes.txt").write_text("mine")
    before = digest(out)
    check_error(vqa("synth", "--out", out, "--preset", "tiny", "--quiet"), out, "notes.txt", "--out")
    assert digest(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data"]

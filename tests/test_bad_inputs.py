"""The bad-input catalogue, through the real command line: each row ends in one `error: ` line that
names the file, key or id and says what to do (exit code 2, no traceback, nothing half-written), or,
for questions that cannot be scored, in a count that training and `vqa eval` report alike.

Independent commands of a test start together (each pays the interpreter's and torch's start-up).
"""

import hashlib
import json
import os
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
from vqa.synth.staging import stage

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
    # a typo in a {split} template fails when the config loads, naming the key (not a KeyError later)
    check_error(typo, "'data.questions'", "{splt}", "{split}")
    # a `base` that is not a path string: one line, not a TypeError from path arithmetic
    check_error(base, "base7.yaml", "'base' is 7", "relative path string")
    # a config file that is not UTF-8: one line, not a UnicodeDecodeError
    check_error(binary, "binary.yaml", "not UTF-8", "YAML")
    # a YAML syntax error names its line and column
    check_error(syntax, "syntax.yaml", "not valid YAML", "line 3 column 9")
    # --resume of a missing run names the option and what a run folder is
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
    p_latin, p_zip, p_mixed = vqa_all(
        *(train_args(r, runs, f"name={r.name}") for r in (latin, zipped, mixed))
    )
    # files that are not UTF-8: vqa.io.read_json's line, not a UnicodeDecodeError
    check_error(p_latin, q_path, "not UTF-8")
    check_error(p_zip, a_path, "not UTF-8")
    # an annotation without its question names both files and says to pair the same split
    check_error(p_mixed, "question_id 123", Q.format(split="val2014"), "same split")
    # three refused runs started together: no run folder is left; out_dir may stay behind, empty, when the
    # process that created it released its lock while another still held one inside it
    assert not runs.exists() or not any(runs.iterdir())


def _answers(n: int, pool: list[str]) -> list[dict]:
    return [{"answer_id": i + 1, "answer": pool[i % len(pool)], "answer_confidence": "yes"} for i in range(n)]


def test_questions_without_10_answers_are_left_out_of_training_and_eval_alike(tiny_data, tmp_path):
    """Questions with 25, 0 or 5 answers (not 10): left out of training, validation and `vqa eval` alike,
    and counted by both (no broadcast traceback, no silent training on them)."""
    root = copy_data(tiny_data, tmp_path / "data")
    skipped = {}
    for split, n in (("train2014", 240), ("val2014", 120)):  # a cut of tiny: a fast epoch
        questions, anns = read(root / Q.format(split=split)), read(root / A.format(split=split))
        questions["questions"] = questions["questions"][:n]
        anns["annotations"] = anns["annotations"][:n]
        # answers in the vocabulary: more than 10 distinct ones would overflow the 10 target slots
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
    real, tmp, old = stage(out)
    assert real == out.resolve() and digest(out) == digest(tiny_data)
    assert not old.exists() and tmp.is_dir() and not any(tmp.iterdir())
    shutil.rmtree(tmp)


def test_synth_refuses_a_folder_holding_other_files(tiny_data, tmp_path):
    out = copy_data(tiny_data, tmp_path / "data")
    (out / "notes.txt").write_text("mine")
    before = digest(out)
    check_error(vqa("synth", "--out", out, "--preset", "tiny", "--quiet"), out, "notes.txt", "--out")
    assert digest(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# --- 4. The catalogue: every class of bad input, each a subprocess (tests/catalogue.py) ---------------

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from catalogue import Case, can_mount, run_cases  # noqa: E402
from catalogue import check as check_case  # noqa: E402
from catalogue import train_args as catalogue_train  # noqa: E402


def _poison(root: Path, split: str, row: int, value: float) -> None:
    with h5py.File(root / f"features_{split}.h5", "r+") as f:
        key = "grid" if "grid" in f else "features"
        cell = f[key][row]
        cell.flat[5] = value
        f[key][row] = cell


def _nan_train(folder, data):
    root = copy_data(data, folder / "data")
    _poison(root, "train2014", 3, float("nan"))
    return catalogue_train(root, folder / "runs")


def _inf_val(folder, data):
    root = copy_data(data, folder / "data")
    _poison(root, "val2014", 0, float("inf"))
    return catalogue_train(root, folder / "runs")


def _yaml_file(text):
    def build(folder, data):
        (folder / "c.yaml").write_text(text)
        return ["train", "--config", folder / "c.yaml", f"out_dir={folder / 'runs'}"]

    return build


def _bomb(width: int, depth: int = 9) -> str:
    """A config whose `name` is `depth` levels of lists, each holding `width` references to the level
    below: width**depth strings from a few hundred bytes."""
    level = f"&l0 [{', '.join(['x'] * width)}]"
    for d in range(1, depth):
        level = f"&l{d} [{level}, {', '.join([f'*l{d - 1}'] * (width - 1))}]"
    return f"name: {level}\n"


BOMB = _bomb(9)  # 9**9 strings, 64 aliases: loads as shared references, refused as no string
WIDE_BOMB = _bomb(13, 10)  # over the loader's 100 aliases


def _override(*overrides):
    return lambda folder, data: catalogue_train(data, folder / "runs", *overrides)


def _deep_json(which):
    def build(folder, data):
        q, a = data / Q.format(split="val2014"), data / A.format(split="val2014")
        deep = folder / "deep.json"
        deep.write_text("[" * 100_000 + "]" * 100_000)
        if which == "convert":
            tsv = folder / "b.tsv"
            tsv.write_text("1\t10\t10\t1\tAAAA\tAAAA\n")
            return ["convert", "--from", "bottomup-tsv", tsv, "--out", folder / "b.h5", "--questions", deep]
        files = {"results": deep, "questions": q, "annotations": a}
        files[which] = deep
        return ["eval", "--results", files["results"], "--annotations", files["annotations"],
                "--questions", files["questions"]]  # fmt: skip

    return build


def _tsv_id(value):
    def build(folder, data):
        tsv = folder / "b.tsv"
        tsv.write_text(f"{value}\t10\t10\t1\tAAAA\tAAAA\n")
        return ["convert", "--from", "bottomup-tsv", tsv, "--out", folder / "b.h5"]

    return build


def _float_ids(folder, data):
    root = copy_data(data, folder / "data")
    path = root / "features_train2014.h5"
    with h5py.File(path, "r+") as f:
        ids = f["ids"][()]
        del f["ids"]
        f["ids"] = ids.astype(np.float64) + 0.5
    return catalogue_train(root, folder / "runs")


def _loop(kind):
    def build(folder, data):
        (folder / "loop").symlink_to(folder / "loop")
        if kind == "synth":
            return ["synth", "--out", folder / "loop", "--preset", "tiny", "--quiet"]
        return ["train", "--config", ROOT / CONFIG, f"data.root={folder / 'loop'}", "data.synth_preset=tiny",
                f"out_dir={folder / 'runs'}"]  # fmt: skip

    return build


def _out_is_file(verb):
    def build(folder, data):
        (folder / "out").write_text("a file")
        if verb == "bench":
            return ["bench", "--only", "losses", "--quick", "--out", folder / "out"]
        if verb == "compare":
            run = folder / "r"
            run.mkdir()
            return ["compare", run, "--out", folder / "out"]
        return ["attention", "--run", folder / "no_run", "--out", folder / "out"]

    return build


def _broken_checkpoint(folder, data):
    run = folder / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(f"base: {ROOT / CONFIG}\nname: r\nout_dir: {folder}\ndata:\n  root: {data}\n"
                                     "  synth_preset: ''\n")  # fmt: skip
    (run / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    return ["train", "--resume", run]


def _only_best(folder, data):
    run = folder / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(f"base: {ROOT / CONFIG}\nname: r\nout_dir: {folder}\n")
    (run / "checkpoints" / "best.pt").write_bytes(b"x")
    return ["train", "--resume", run]


def _paper_jobs_zero(folder, data):
    return ["paper", "--config-dir", ROOT / "configs/synthetic", "--models", "avg", "--runs-dir",
            folder / "runs", "--out", folder / "report", "--jobs", "0"]  # fmt: skip


def _long_value(folder, data):
    return catalogue_train(data, folder / "runs", "train.epochs=" + "9" * 5000 + "x")


def _long_key(folder, data):
    (folder / "c.yaml").write_text("train:\n  " + "k" * 1000 + ": 1\n")  # YAML keys: 1,024 characters at most
    return ["train", "--config", folder / "c.yaml"]


CATALOGUE = [
    Case(
        "nan_in_training_features",
        _nan_train,
        ("features_train2014.h5", "not finite", "NaN", "re-extract"),
        max_line=600,
    ),
    Case("inf_in_validation_features", _inf_val, ("features_val2014.h5", "row 0", "inf"), max_line=600),
    Case("yaml_alias_bomb", _yaml_file(BOMB), ("c.yaml", "'name' must be str"), max_line=300),
    Case("yaml_alias_bomb_past_the_bound", _yaml_file(WIDE_BOMB), ("c.yaml", "more than 100 aliases")),
    Case(
        "yaml_alias_bomb_override",
        _override(BOMB.replace("name: ", "name=").strip()),
        ("'name'",),
        max_line=400,
    ),
    Case("yaml_nested_50000", _yaml_file("a: " + "[" * 50_000 + "]" * 50_000 + "\n"), ("c.yaml", "nested")),
    Case("override_nested_deep", _override("train.lr_decay_epochs=" + "[" * 5000 + "]" * 5000), ("nested",)),
    Case("results_nested_100000", _deep_json("results"), ("results", "nested too deep")),
    Case("questions_nested_100000", _deep_json("questions"), ("questions", "nested too deep")),
    Case("convert_questions_nested", _deep_json("convert"), ("deep.json", "nested too deep")),
    Case("seed_negative", _override("train.seed=-1"), ("'train.seed' is -1", "2**32")),
    Case("seed_too_large", _override(f"train.seed={2**32}"), ("'train.seed'", "2**32")),
    Case("paper_jobs_zero", _paper_jobs_zero, ("--jobs is 0",)),
    Case("tsv_id_inf", _tsv_id("inf"), ("b.tsv:1", "image_id inf")),
    Case("tsv_id_1e30", _tsv_id("1e30"), ("image_id 1e30", "int64")),
    Case("tsv_id_fraction", _tsv_id("1.7"), ("image_id 1.7",)),
    Case("tsv_id_text", _tsv_id("abc"), ("image_id abc",)),
    Case("float_ids_in_hdf5", _float_ids, ("features_train2014.h5", "'ids' holds float64")),
    Case("synth_out_symlink_loop", _loop("synth"), ("loop", "symlink loop")),
    Case("data_root_symlink_loop", _loop("train"), ("loop",)),
    Case("bench_out_is_a_file", _out_is_file("bench"), ("--out", "is a file")),
    Case("compare_out_is_a_file", _out_is_file("compare"), ()),
    Case("attention_out_is_a_file", _out_is_file("attention"), ()),
    Case("corrupt_last_checkpoint", _broken_checkpoint, ("last.pt", "--from best"), added=("r/.lock",)),
    Case("last_deleted_best_kept", _only_best, ("last.pt is missing", "--from best"), added=("r/.lock",)),
    Case(
        "from_best_without_resume",
        lambda f, d: [*catalogue_train(d, f / "runs"), "--from", "best"],
        ("--resume",),
    ),
    Case(
        "resume_with_overwrite", lambda f, d: ["train", "--resume", f / "r", "--overwrite"], ("--overwrite",)
    ),
    Case("value_echo_is_cut", _long_value, ("'train.epochs'",), max_line=300),
    Case("unknown_key_echo_is_cut", _long_key, ("unknown key",), max_line=400),
]


@pytest.fixture(scope="module")
def catalogue(tiny_data, tmp_path_factory):
    return run_cases(CATALOGUE, tmp_path_factory.mktemp("catalogue"), tiny_data)


@pytest.mark.parametrize("case", [c.name for c in CATALOGUE])
def test_catalogue(catalogue, case):
    print(f"{case} -> {check_case(catalogue[case])}")  # the catalogue's table with -s


# --- 5. A full disk and a read-only folder, on a real small file system of the case's own ------------

FULL_DISK = """
set -e
mount -t tmpfs -o size=20m tmpfs "$OUT"
"$PY" -m vqa "$@" train.epochs=1 > /dev/null
head -c 100m /dev/zero > "$OUT/filler" 2>/dev/null || true
set +e
"$PY" -m vqa train --resume "$OUT/r" train.epochs=3 > /dev/null 2> "$OUT/../full.err"
echo "full: $?"; cat "$OUT/../full.err"
"$PY" -c "import torch, sys; print('epoch', torch.load(sys.argv[1], weights_only=True)['epoch'])" "$OUT/r/checkpoints/last.pt"
rm "$OUT/filler"
"$PY" -m vqa train --resume "$OUT/r" train.epochs=3 > /dev/null 2> "$OUT/../resume.err"; echo "resumed: $?"
"$PY" -c "import json, sys; print('rows', [json.loads(l)['epoch'] for l in open(sys.argv[1])])" "$OUT/r/metrics.jsonl"
mount -o remount,ro "$OUT"
"$PY" -m vqa train --resume "$OUT/r" train.epochs=4 > /dev/null 2> "$OUT/../ro.err"; echo "ro: $?"
"""


@pytest.mark.slow
@pytest.mark.skipif(not can_mount(), reason="needs root and unshare -m to mount a small tmpfs")
def test_a_full_disk_and_a_read_only_folder_are_one_line_and_the_run_resumes(tiny_data, tmp_path):
    out = tmp_path / "disk"
    out.mkdir()
    args = [str(a) for a in catalogue_train(tiny_data, out, "name=r", "train.batch_size=32")]
    proc = subprocess.run(["unshare", "-m", "sh", "-c", FULL_DISK, "sh", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OUT": str(out), "PY": sys.executable}, timeout=600)  # fmt: skip
    lines = proc.stdout.splitlines()
    assert "full: 2" in lines, proc.stdout + proc.stderr
    error = lines[lines.index("full: 2") + 1]
    assert error.startswith("error: ") and "No space left on device" in error and "MiB free there" in error
    assert "--resume" in error and lines[lines.index("full: 2") + 2].startswith("error: ") is False
    assert "epoch 1" in lines  # the last complete checkpoint is the one before the disk filled
    resumed = (tmp_path / "resume.err").read_text()
    assert "resumed: 0" in lines and "rows [1, 2, 3]" in lines, (
        proc.stdout + resumed
    )  # complete and consistent
    assert "ro: 2" in lines
    ro = (tmp_path / "ro.err").read_text().strip().splitlines()
    assert len(ro) == 1 and "Read-only file system" in ro[0], ro

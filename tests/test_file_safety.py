"""What vqa promises about your files, tried as an attacker or a careless user would: run names that
point elsewhere, --overwrite of folders that are not runs, symlinks planted where vqa writes, outputs
that are the command's own inputs, two trainings of one run. Each refusal is a real subprocess that
exits 2 with one line and leaves every file as it was (tests/catalogue.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from catalogue import CONFIG, ROOT, A, Case, Q, check, copy_data, digest, run_cases, train_args

from vqa import io, runs
from vqa.errors import UserError


def _name(name):
    return lambda folder, data: train_args(data, folder / "runs", f"name={name}")


def _thesis_run(folder: Path) -> Path:
    """A run folder that a user also keeps a file in."""
    run = folder / "runs" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: r\n")
    (run / "metrics.jsonl").write_text("")
    (run / "thesis.tex").write_text("\\section{Years of work}\n")
    return run


def _overwrite_thesis(folder, data):
    _thesis_run(folder)
    return [*train_args(data, folder / "runs", "name=r"), "--overwrite"]


def _finished_run(folder: Path, name="r") -> Path:
    run = folder / "runs" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: {name}\n")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    return run


def _overwrite_data_root(folder, data):
    run = _finished_run(folder)
    root = copy_data(data, run / "predictions_val2014.json")  # a data folder named like a run's file
    return [*train_args(root, folder / "runs", "name=r"), "--overwrite"]


def _overwrite_config_inside(folder, data):
    run = _finished_run(folder)
    config = run / "predictions_x.json"  # the config file itself, inside the run folder
    config.write_text(f"base: {ROOT / CONFIG}\n")
    return ["train", "--config", config, f"data.root={data}", f"out_dir={folder / 'runs'}", "name=r",
            "data.synth_preset=", "--overwrite"]  # fmt: skip


def _new_run_into_foreign_folder(folder, data):
    (folder / "runs" / "r").mkdir(parents=True)
    (folder / "runs" / "r" / "notes.txt").write_text("mine")
    return train_args(data, folder / "runs", "name=r")


def _run_exists(folder, data):
    _finished_run(folder)
    return train_args(data, folder / "runs", "name=r")


def _symlinked_run_folder(folder, data):
    (folder / "elsewhere").mkdir()
    (folder / "runs").mkdir()
    (folder / "runs" / "r").symlink_to(folder / "elsewhere")
    return train_args(data, folder / "runs", "name=r")


def _out_dir_file(folder, data):
    (folder / "runs").write_text("a file")
    return train_args(data, folder / "runs")


def _eval_files(folder, data):
    q, a = data / Q.format(split="val2014"), data / A.format(split="val2014")
    results = folder / "results.json"
    ids = [x["question_id"] for x in json.loads(q.read_text())["questions"]]
    results.write_text(json.dumps([{"question_id": i, "answer": "yes"} for i in ids]))
    return q, a, results


def _eval_out(which):
    def build(folder, data):
        q, a, results = _eval_files(folder, data)
        target = {"results": results}.get(which)
        if target is None:  # an input of the shared dataset, reached through a link in the case's folder
            target = folder / "link.json"
            target.symlink_to(q if which == "questions" else a)
        return ["eval", "--results", results, "--annotations", a, "--questions", q, "--out", target]

    return build


def _eval_out_hardlink(folder, data):
    q, a, results = _eval_files(folder, data)
    mine = copy_data(data, folder / "data") / A.format(split="val2014")
    os.link(mine, folder / "report.json")
    return [
        "eval",
        "--results",
        results,
        "--annotations",
        mine,
        "--questions",
        q,
        "--out",
        folder / "report.json",
    ]


def _compare_into_run(folder, data):
    run = _finished_run(folder)
    return ["compare", run, "--out", run / "checkpoints"]


def _convert_over_input(folder, data):
    tsv = folder / "boxes.tsv"
    tsv.write_text("1\t10\t10\t1\tAAAA\tAAAA\n")
    return ["convert", "--from", "bottomup-tsv", tsv, "--out", tsv, "--overwrite"]


CASES = [
    Case("name_dotdot", _name(".."), ("'name' is '..'", "parent")),
    Case("name_dot", _name("."), ("'name' is '.'",)),
    Case("name_up_and_over", _name("../x"), ("'name' is '../x'", "path separator")),
    Case("name_absolute", _name("/tmp/vqa-victim"), ("'name'", "path separator")),
    Case("name_nested", _name("a/b"), ("path separator",)),
    Case("name_backslash", _name("a\\b"), ("path separator",)),
    Case("name_dash", _name("-rf"), ("starts with '-'",)),
    Case("name_hidden", _name(".hidden"), ("starts with '.'",)),
    Case("name_300_chars", _name("x" * 300), ("300 characters", "at most 100"), max_line=400),
    Case("name_control_char", _name("a\tb"), ("control character",)),
    Case("name_empty", _name(""), ("'name' is ''", "empty")),
    Case("overwrite_not_a_run", _overwrite_thesis, ("--overwrite", "thesis.tex", "nothing was touched")),
    Case("overwrite_holding_data_root", _overwrite_data_root, ("--overwrite would delete", "an input")),
    Case(
        "overwrite_holding_the_config",
        _overwrite_config_inside,
        ("--overwrite would delete", "predictions_x.json"),
    ),
    Case("new_run_into_a_foreign_folder", _new_run_into_foreign_folder, ("notes.txt", "not a run")),
    Case("new_run_over_a_run", _run_exists, ("already holds a run", "--resume", "--overwrite")),
    Case("run_folder_links_outside", _symlinked_run_folder, ("outside out_dir", "elsewhere")),
    Case("out_dir_is_a_file", _out_dir_file, ("runs", "Not a directory")),
    Case("eval_out_is_the_results", _eval_out("results"), ("--out", "results file this command reads")),
    Case("eval_out_links_to_the_questions", _eval_out("questions"), ("questions file this command reads",)),
    Case("eval_out_links_to_the_annotations", _eval_out("annotations"), ("annotations file",)),
    Case("eval_out_hardlinked_annotations", _eval_out_hardlink, ("annotations file this command reads",)),
    Case("compare_out_inside_a_run", _compare_into_run, ("inside the run folder",)),
    Case("convert_out_is_its_input", _convert_over_input, ("--out", "input TSV file")),
]


@pytest.fixture(scope="module")
def outcomes(tiny_data, tmp_path_factory):
    return run_cases(CASES, tmp_path_factory.mktemp("safety"), tiny_data)


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_refused_in_one_line_with_nothing_touched(outcomes, case):
    print(f"{case} -> {check(outcomes[case])}")  # the catalogue's table with -s


def test_nothing_escaped_the_case_folders(outcomes):
    assert not Path("/tmp/vqa-victim").exists()
    for name in ("name_dotdot", "name_up_and_over"):
        assert sorted(p.name for p in outcomes[name].folder.iterdir()) == []


# --- predict: outputs that are the run's own files ----------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    proc = subprocess.run([sys.executable, "-m", "vqa", *map(str, train_args(tiny_data, out, "name=r"))],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out / "r"


@pytest.mark.parametrize("target, needle", [
    ("checkpoints/best.pt", "checkpoint best.pt"), ("config.yaml", "run's config"), ("questions", "questions file"),
])  # fmt: skip
def test_predict_refuses_to_write_over_its_inputs(trained, tiny_data, tmp_path, target, needle):
    out = tiny_data / Q.format(split="val2014") if target == "questions" else trained / target
    before = digest(trained)
    shared = digest(tiny_data)
    proc = subprocess.run([sys.executable, "-m", "vqa", "predict", "--run", str(trained), "--split", "val2014",
                           "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
        proc.stderr
    )
    assert digest(trained) == before and digest(tiny_data) == shared


def test_predict_report_over_the_annotations_is_refused(trained, tiny_data):
    shared = digest(tiny_data)
    proc = subprocess.run([sys.executable, "-m", "vqa", "predict", "--run", str(trained), "--split", "val2014",
                           "--report", str(tiny_data / A.format(split="val2014"))], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "annotations file" in proc.stderr, proc.stderr
    assert digest(tiny_data) == shared


# --- atomic writes never follow links ------------------------------------------------------------------


def test_a_symlink_at_the_target_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out" / "report.json"
    out.parent.mkdir()
    out.symlink_to(victim)
    (out.parent / ".report.json.tmp").symlink_to(victim)  # a planted file at a guessable temporary name
    io.write_json_atomic(out, {"a": 1})
    assert victim.read_text() == "precious"
    assert not out.is_symlink() and json.loads(out.read_text()) == {"a": 1}
    assert (out.parent / ".report.json.tmp").is_symlink()  # not ours: left alone


def test_stale_temporaries_of_dead_writers_go_links_and_live_ones_stay(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    stale = tmp_path / f".m.json.{pid}.abc.tmp"
    stale.write_text("torn")
    link = tmp_path / f".m.json.{pid}.def.tmp"
    link.symlink_to(victim)
    live = tmp_path / f".m.json.{os.getpid()}.ghi.tmp"
    live.write_text("being written")
    io.write_text_atomic(tmp_path / "m.json", "{}")
    assert not stale.exists() and link.is_symlink() and live.exists() and victim.read_text() == "precious"


def test_a_symlinked_metrics_file_is_never_appended_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(OSError):
        io.append_line(tmp_path / "metrics.jsonl", "{}")
    assert victim.read_text() == "precious"


# --- the run folder module ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["run", "avg_soft_s0", "pool-soft.v2", "x" * 100, "2024"])
def test_good_names_pass(name):
    assert runs.name_problem(name) is None


def test_overwrite_clears_a_run_and_keeps_its_lock(tmp_path):
    run = _finished_run(tmp_path)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "events.out.tfevents.1.host").write_bytes(b"x")
    with runs.RunLock(run):
        runs.check_new(run, overwrite=True, inputs=[tmp_path / "data"])
        runs.clear(run)
        assert [p.name for p in run.iterdir()] == [".lock"]


def test_a_lock_refused_run_folder_created_for_nothing_is_removed(tmp_path):
    run = tmp_path / "runs" / "r"
    with runs.RunLock(run):
        assert runs.is_locked(run)
    assert not run.exists() and not runs.is_locked(run)


def test_a_second_process_on_the_same_run_is_refused(tmp_path):
    run = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from vqa.runs import RunLock\n"
        "with RunLock(Path(sys.argv[1])): print('locked', flush=True); time.sleep(60)"), str(run)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"being trained by another process \\(pid {holder.pid}\\)"):
            runs.RunLock(run).acquire()
    finally:
        holder.kill()
        holder.wait()
    deadline = time.time() + 10
    while runs.is_locked(run):  # the OS released it with the process
        assert time.time() < deadline
        time.sleep(0.05)
    runs.RunLock(run).acquire().release()


@pytest.mark.slow
def test_two_trainings_of_one_run_started_together(tiny_data, tmp_path):
    """Both pass every check a moment apart; the lock lets exactly one train, the other is refused in
    one line, and metrics.jsonl holds the rows of one run."""
    argv = [
        sys.executable,
        "-m",
        "vqa",
        *map(str, train_args(tiny_data, tmp_path, "name=r", "train.epochs=2")),
    ]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for _ in range(2)]  # fmt: skip
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    refused = [err for p, (_, err) in zip(procs, results) if p.returncode == 2]
    assert codes == [0, 2], results
    assert "being trained by another process" in refused[0] or "already holds a run" in refused[0], refused
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]

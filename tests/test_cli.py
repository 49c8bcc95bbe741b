"""Bad input through the real command line: one line naming the culprit, exit code 2, nothing written."""

import json
import shutil
import subprocess
import sys

import h5py
import pytest

CONFIG = "configs/synthetic/avg_soft.yaml"


def vqa(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vqa", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def data(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    return root


def check_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def train(root, out, *overrides):
    return vqa(
        "train", "--config", CONFIG, f"data.root={root}", f"out_dir={out}", "train.epochs=1", *overrides
    )


def test_missing_config_and_bad_values(tmp_path):
    check_error(vqa("train", "--config", str(tmp_path / "nope.yaml")), "nope.yaml", "not found")
    check_error(vqa("train", "--config", CONFIG, "train.lrr=1"), "train.lrr", "train.lr")
    check_error(vqa("train", "--config", CONFIG, "train.loss=softce"), "softce", "soft_ce")
    check_error(vqa("train", "--config", CONFIG, "model.name=resnet"), "resnet", "avg")
    check_error(vqa("train", "--config", CONFIG, "train.batch_size=0"), "train.batch_size")


def test_missing_data_root(tmp_path):
    check_error(train(tmp_path / "none", tmp_path / "runs", "data.synth_preset="), "none", "not found")
    assert not (tmp_path / "runs").exists()


def test_malformed_json(data, tmp_path):
    path = data / "v2_mscoco_val2014_annotations.json"
    path.write_text(path.read_text()[:-20])
    check_error(train(data, tmp_path / "runs"), str(path), "is not valid JSON")
    assert not (tmp_path / "runs").exists()


def test_image_without_features(data, tmp_path):
    questions = data / "v2_OpenEnded_mscoco_val2014_questions.json"
    annotations = data / "v2_mscoco_val2014_annotations.json"
    q, a = json.loads(questions.read_text()), json.loads(annotations.read_text())
    q["questions"][0]["image_id"] = a["annotations"][0]["image_id"] = 424242
    questions.write_text(json.dumps(q))
    annotations.write_text(json.dumps(a))
    check_error(train(data, tmp_path / "runs"), "image 424242", str(q["questions"][0]["question_id"]))
    assert not (tmp_path / "runs").exists()


def test_feature_shape_mismatch(data, tmp_path):
    with h5py.File(data / "features_train2014.h5") as f:
        dim = f["grid"].shape[1]
    check_error(
        train(data, tmp_path / "runs", f"data.feature_dim={dim + 1}"), "features_train2014.h5", str(dim)
    )
    # train and val features from different extractors
    with h5py.File(data / "features_val2014.h5", "a") as f:
        grid = f["grid"][()]
        del f["grid"]
        f["grid"] = grid[:, :-1]
    check_error(train(data, tmp_path / "runs"), "features_val2014.h5", f"{dim - 1}", f"{dim}")
    assert not (tmp_path / "runs").exists()


def test_empty_split(data, tmp_path):
    path = data / "v2_OpenEnded_mscoco_val2014_questions.json"
    q = json.loads(path.read_text())
    q["questions"] = []
    path.write_text(json.dumps(q))
    check_error(train(data, tmp_path / "runs"), "val2014", "no questions")
    assert not (tmp_path / "runs").exists()


def test_synth_refuses_a_file_as_output(tmp_path):
    (tmp_path / "f").write_text("x")
    check_error(vqa("synth", "--out", str(tmp_path / "f"), "--preset", "tiny"), str(tmp_path / "f"))


def test_the_command_line_starts_without_heavy_imports():
    """`vqa --help` and every verb's --help build the parser without torch, numpy or h5py."""
    code = (
        "import sys, vqa.cli\n"
        "p = vqa.cli.build_parser()\n"
        "for verb in vqa.cli.VERBS:\n"
        "    try:\n"
        "        p.parse_args([verb, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'h5py', 'matplotlib') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_every_verb_names_a_function_that_exists():
    import importlib

    from vqa.cli import VERBS

    for verb, (module, _) in VERBS.items():
        assert callable(getattr(importlib.import_module(module), f"{verb}_command")), verb


def test_a_closed_pipe_is_no_traceback(tmp_path):
    """`vqa synth ... | head -1`: the reader leaves after one line; the writer ends without a traceback."""
    argv = [sys.executable, "-m", "vqa", "synth", "--out", str(tmp_path / "d"), "--preset", "tiny"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # like head: later lines hit a closed pipe
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()[-2000:]

"""Honest model selection: the held-out split (disjoint by image, fixed for a seed), the test split
scored once at the selected epoch, test-set selection named; end to end on the synthetic VQA-CP
stand-in with a debiasing method through the real command line, and its debiasing table."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from vqa.config import load_config
from vqa.data.build import load_records
from vqa.data.heldout import hold_out
from vqa.errors import UserError
from vqa.training.selection import selection_line

REPO = Path(__file__).resolve().parents[1]
SMALL = ["model.embed_dim=16", "model.rnn_dim=32", "model.hidden_dim=32", "model.attention_dim=16",
         "train.batch_size=32"]  # fmt: skip


def image_keys(records) -> set:
    return {(records.image_key(i), int(records.image_group[records.image[i]])) for i in range(len(records))}


def reordered(records, seed: int):
    """The same records with questions and the image table in another order (as another file order)."""
    rng = np.random.default_rng(seed)
    rows = records.select(rng.permutation(len(records)))
    order = rng.permutation(len(records.image_keys))  # new table row j = old row order[j]
    return replace(rows, image_keys=records.image_keys[order], image_group=records.image_group[order],
                   image=np.argsort(order)[rows.image].astype(records.image.dtype))  # fmt: skip


def test_heldout_is_disjoint_by_image_and_fixed_for_a_seed(tiny_data):
    records = load_records(
        load_config("configs/synthetic/avg_soft.yaml", [f"data.root={tiny_data}"]), "train2014"
    )
    train, held, line = hold_out(records, 0.2, seed=3)
    assert image_keys(train).isdisjoint(image_keys(held))
    assert sorted([*train.question_id, *held.question_id]) == sorted(records.question_id)
    assert len(image_keys(held)) == round(0.2 * len(image_keys(records)))
    assert held.split == "heldout" and f"{len(held):,} questions" in line
    _, again, _ = hold_out(reordered(records, 7), 0.2, seed=3)
    assert image_keys(again) == image_keys(held)  # the seed fixes the images, not the file order
    _, other, _ = hold_out(records, 0.2, seed=4)
    assert image_keys(other) != image_keys(held)


def test_selection_is_named_and_settings_are_checked():
    cp = load_config(REPO / "configs/synthetic-vqacp2/updn_bce.yaml")
    assert (cp.data.val_split, cp.data.test_split) == ("heldout", "test")
    assert "on 'heldout' (0.1 of 'train' held out by image, seed 0); 'test' scored once" in selection_line(cp)
    peer = load_config(REPO / "configs/synthetic-vqacp2/updn_bce.yaml", ["data.val_split=test"])
    assert "TEST-SET SELECTION" in selection_line(peer)
    with pytest.raises(UserError, match="'data.heldout_fraction' is 1.5; it must be in"):
        load_config(None, ["data.val_split=heldout", "data.heldout_fraction=1.5"])
    with pytest.raises(UserError, match="'data.test_split' is 'tset', not a split of data.source vqa2"):
        load_config(None, ["data.test_split=tset"])


@pytest.fixture(scope="module")
def vqacp_tiny(tmp_path_factory):
    from vqa.synth.generate import generate
    from vqa.synth.presets import PRESETS

    root = tmp_path_factory.mktemp("tiny-vqacp2")
    generate(root, seed=0, quiet=True, format="vqacp2", **PRESETS["tiny"])
    return root


def vqa(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "vqa", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def train(method: str, root: Path, out: Path) -> subprocess.CompletedProcess:
    return vqa("train", "--config", f"configs/synthetic-vqacp2/updn_{method}.yaml", f"data.root={root}",
               "data.synth_preset=tiny", "train.epochs=3", f"out_dir={out}", f"name={method}", *SMALL)  # fmt: skip


@pytest.mark.slow  # three tiny trainings through the command line (about 90 s on 2 busy cores)
def test_vqacp_end_to_end_selects_on_heldout_and_scores_test_once(vqacp_tiny, tmp_path):
    lmh = train("lmh", vqacp_tiny, tmp_path)
    assert (
        "debias lmh" in lmh.stdout
        and "model selection: best epoch and early stopping on 'heldout'" in lmh.stdout
    )
    rows = [json.loads(x) for x in (tmp_path / "lmh" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_split"] for r in rows] == ["heldout"] * 3 and lmh.stdout.count("[val: heldout]") == 3
    best = 1 + int(np.argmax([r["val/accuracy"] for r in rows]))
    test = json.loads((tmp_path / "lmh" / "test.json").read_text())
    assert (test["split"], test["selected_on"], test["epoch"]) == ("test", "heldout", best)
    assert f"test: 'test' at epoch {best} (selected on 'heldout')" in lmh.stdout
    assert f"best: epoch {best} on 'heldout'" in lmh.stdout
    # the base model of best.pt answers test as test.json scored it (vqa eval's exact strings)
    pred = vqa(
        "predict", "--run", str(tmp_path / "lmh"), "--split", "test", "--out", str(tmp_path / "p.json")
    )
    assert re.search(
        rf"VQA accuracy \(current rules, \d+ questions\): {test['test/accuracy']:.2f}\n", pred.stdout
    )
    train("bce", vqacp_tiny, tmp_path)
    out = vqa("compare", str(tmp_path / "bce"), str(tmp_path / "lmh"), "--out", str(tmp_path / "report"))
    table = (tmp_path / "report" / "debias.md").read_text()
    assert "| UPDN | lmh - bce | 1 |" in table and "UPDN lmh vs bce: test All" in out.stdout
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())["debias"]
    (diff,) = summary["differences"]
    base_test = json.loads((tmp_path / "bce" / "test.json").read_text())["test/accuracy"]
    assert diff["all"]["mean"] == pytest.approx(test["test/accuracy"] - base_test)

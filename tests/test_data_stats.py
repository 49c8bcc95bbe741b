"""`vqa stats` (vqa/data_stats.py) and the target statistics it prints (vqa/data/target_stats.py)."""

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vqa.data.keys import clean_whitespace, normalize_answer
from vqa.data.target_stats import label_smoothing_entropy, matching_label_smoothing, soft_target_entropy


def test_matching_label_smoothing_hand_worked():
    """7 of 10 annotators gave one answer, 3 gave one other answer each: the human soft target is
    (.7, .1, .1, .1), which is exactly the label-smoothed target over A = 4 answers with eps = .4
    (1 - .4 + .4 / 4 = .7 and .4 / 4 = .1), so the matching eps is .4. A question without an
    in-vocabulary answer (a row of padding) carries no soft target and changes nothing; a unanimous
    split matches eps = 0."""
    seven_one_one_one = np.array([[7, 1, 1, 1, 0, 0, 0, 0, 0, 0]], np.uint8)
    h = -(0.7 * math.log(0.7) + 3 * 0.1 * math.log(0.1))  # 0.9404 nats
    assert soft_target_entropy(seven_one_one_one) == pytest.approx(h)
    assert label_smoothing_entropy(0.4, 4) == pytest.approx(h)
    assert matching_label_smoothing(seven_one_one_one, 4) == pytest.approx(0.4, abs=1e-9)
    padded = np.vstack([seven_one_one_one, np.zeros((1, 10), np.uint8)])
    assert matching_label_smoothing(padded, 4) == pytest.approx(0.4, abs=1e-9)
    # answers outside the vocabulary are dropped: 7 + 1 + 1 in the vocabulary is (7/9, 1/9, 1/9)
    dropped = np.array([[7, 1, 1, 0, 0, 0, 0, 0, 0, 0]], np.uint8)
    assert soft_target_entropy(dropped) == pytest.approx(-(7 / 9 * math.log(7 / 9) + 2 / 9 * math.log(1 / 9)))
    unanimous = np.array([[10, 0, 0, 0, 0, 0, 0, 0, 0, 0]] * 3, np.uint8)
    assert matching_label_smoothing(unanimous, 3000) == pytest.approx(0.0, abs=1e-12)


def gt_keys(answers):  # the evaluator's keys: whitespace-cleaned, normalized unless then unanimous
    cleaned = [clean_whitespace(a) for a in answers]
    return cleaned if len(set(cleaned)) == 1 else [normalize_answer(a) for a in cleaned]


def official(k):  # accuracy of an answer k of 10 annotators gave: leave-one-out mean of min(1, matches / 3)
    return (k * min(1, (k - 1) / 3) + (10 - k) * min(1, k / 3)) / 10


def test_vqa_stats_command(tiny_data, tmp_path):
    """The real command on the tiny synthetic split, its numbers recomputed from the annotation JSON,
    each answer keyed as the official evaluator compares them (gt_keys)."""
    out = tmp_path / "stats.json"
    proc = subprocess.run(
        [sys.executable, "-m", "vqa", "stats", "--config", "configs/synthetic/avg_soft.yaml", "--out", str(out),
         f"data.root={tiny_data}", "data.max_answers=20"],  # fmt: skip
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    s = json.loads(out.read_text())
    assert sorted(tmp_path.iterdir()) == [out]  # nothing else written
    anns = {
        split: json.loads((tiny_data / f"v2_mscoco_{split}_annotations.json").read_text())["annotations"]
        for split in ("train2014", "val2014")
    }
    for a in (a for split in anns.values() for a in split):
        for x, key in zip(a["answers"], gt_keys([x["answer"] for x in a["answers"]])):
            x["answer"] = key
    vocab = {a for a, _ in Counter(a["multiple_choice_answer"] for a in anns["train2014"]).most_common(20)}
    assert s["answers"] == 20
    val = s["splits"][1]
    top = [Counter(x["answer"] for x in a["answers"]).most_common(1)[0][1] for a in anns["val2014"]]
    assert val["split"] == "val2014" and val["questions"] == len(top)
    assert val["mean_top_count"] == pytest.approx(np.mean(top))
    assert val["agreement_buckets"]["10"] == pytest.approx(top.count(10) / len(top))
    assert val["agreement_buckets"]["le3"] == pytest.approx(sum(t <= 3 for t in top) / len(top))
    assert val["most_common_answer_accuracy"] == pytest.approx(np.mean([official(t) for t in top]), rel=1e-6)
    outside = [sum(x["answer"] not in vocab for x in a["answers"]) / 10 for a in anns["val2014"]]
    assert val["oov_weight"] == pytest.approx(np.mean(outside)) and val["oov_weight"] > 0
    assert val["most_common_answer_oov"] == sum(
        a["multiple_choice_answer"] not in vocab for a in anns["val2014"]
    )
    train = s["splits"][0]  # the questions training keeps: most common answer in the vocabulary
    kept = [a for a in anns["train2014"] if a["multiple_choice_answer"] in vocab]
    assert train["questions"] == len(kept) and train["left_out_for_it"] == len(anns["train2014"]) - len(kept)
    counts = [
        sorted(Counter(x["answer"] for x in a["answers"] if x["answer"] in vocab).values()) for a in kept
    ]
    entropy = np.mean([-sum(c / sum(cs) * math.log(c / sum(cs)) for c in cs) for cs in counts])
    assert train["soft_target_entropy"] == pytest.approx(entropy)
    eps = train["matching_label_smoothing"]
    assert label_smoothing_entropy(eps, 20) == pytest.approx(entropy, abs=1e-9)
    assert f"train.label_smoothing={eps:.4f} (over 20 answers)" in proc.stdout
    assert f"given by {val['mean_top_count']:.2f} of 10 annotators" in proc.stdout


def test_vqa_stats_refuses_its_config_as_output(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("base: " + str(Path("configs/synthetic/avg_soft.yaml").resolve()) + "\n")
    for out in (config, tmp_path):
        proc = subprocess.run([sys.executable, "-m", "vqa", "stats", "--config", str(config), "--out", str(out)],
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 2 and proc.stderr.startswith(f"error: --out {out} is "), proc.stderr
        assert len(proc.stderr.splitlines()) == 1
    assert config.read_text().startswith("base: ")

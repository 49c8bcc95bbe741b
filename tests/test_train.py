"""End to end: real synthetic files -> `vqa train` -> TensorBoard events, metrics.jsonl, checkpoints."""

import json
from collections import Counter

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vqa.agreement import AGREEMENT_BUCKETS
from vqa.cli import main
from vqa.data.sources.vqa2 import VQA2
from vqa.evaluate import evaluate, load_annotations

Q = "v2_OpenEnded_mscoco_{split}_questions.json"
A = "v2_mscoco_{split}_annotations.json"
SCALARS = {
    "train/loss", "val/loss", "val/accuracy", "val/accuracy_yes_no", "val/accuracy_number",
    "val/accuracy_other", "lr", "throughput/samples_per_s",
}  # fmt: skip


def question_only_prior(root) -> float:
    """Official accuracy on val of answering each question with the most common training answer
    to the same question text (falling back to the most common answer of its question type)."""
    train = VQA2.load(root, "train2014")
    val = VQA2.load(root, "val2014")
    by_text: dict[str, Counter] = {}
    by_type: dict[str, Counter] = {}
    for r in train:
        by_text.setdefault(r.question, Counter())[r.multiple_choice_answer] += 1
        by_type.setdefault(r.question_type, Counter())[r.multiple_choice_answer] += 1
    preds = {
        r.question_id: (by_text.get(r.question) or by_type[r.question_type]).most_common(1)[0][0] for r in val
    }
    return evaluate(preds, load_annotations(root / A.format(split="val2014")))["overall"]


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for loss in ("hard_ce", "soft_ce"):
        code = main([
            "train", "--config", f"configs/synthetic/avg_{loss.split('_')[0]}.yaml",
            f"data.root={tiny_data}", f"out_dir={out}", "train.epochs=2", "train.batch_size=16",
            "train.lr=3e-3", "model.dropout=0.0", "train.log_every=5", "data.features=boxes",
        ])  # fmt: skip
        assert code == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["avg_hard", "avg_soft"])
def test_run_folder_events_and_accuracy(runs, tiny_data, name):
    run = runs / name
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "best.pt"}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert SCALARS <= tags
    for tag in SCALARS:
        values = [e.value for e in events.Scalars(tag)]
        assert [e.step for e in events.Scalars(tag)] == [m["step"] for m in metrics], tag  # the epoch's end
        assert values == pytest.approx([m[tag] for m in metrics]), tag
    best = max(m["val/accuracy"] for m in metrics)
    prior = question_only_prior(tiny_data)
    assert best > prior, (
        f"{name}: best val accuracy {best:.2f} does not beat the question-only prior {prior:.2f}"
    )
    # the checkpoint is self-contained and loads without running code
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["config"]["name"] == name and ckpt["answer_vocab"]["itos"]
    assert ckpt["epoch"] == max(metrics, key=lambda m: m["val/accuracy"])["epoch"]


@pytest.mark.slow
def test_hard_and_soft_runs_overlay(runs):
    tags = []
    for name in ("avg_hard", "avg_soft"):
        events = EventAccumulator(str(runs / name))
        events.Reload()
        tags.append(set(events.Tags()["scalars"]))
    assert tags[0] == tags[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["avg_hard", "avg_soft"])
def test_predict_and_eval_reproduce_the_logged_accuracy(runs, tiny_data, tmp_path, capsys, name):
    """The training loop's closed-form accuracy and the exact string path agree to the digit.

    They could only differ for a prediction the closed form cannot see: an answer string outside the
    vocabulary, or a vocabulary string the evaluator would normalize into something else. Predictions
    are arg-maxes over the vocabulary, and the vocabulary keeps only fixed points of the official
    normalization (vqa.data.answers.AnswerVocab.from_answers), so under the current rules neither can happen.
    """
    metrics = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
    best = max(metrics, key=lambda m: m["val/accuracy"])
    results = tmp_path / "val.json"
    report = tmp_path / "report.json"
    assert main(["predict", "--run", str(runs / name), "--split", "val2014", "--out", str(results)]) == 0
    args = ["--annotations", str(tiny_data / A.format(split="val2014")),
            "--questions", str(tiny_data / Q.format(split="val2014"))]  # fmt: skip
    assert main(["eval", "--results", str(results), *args, "--out", str(report)]) == 0
    scored = json.loads(report.read_text())
    assert scored["overall"] == best["val/accuracy"]
    for t, key in (("yes/no", "yes_no"), ("number", "number"), ("other", "other")):
        assert scored["perAnswerType"][t] == best[f"val/accuracy_{key}"]
    # and per agreement bucket: the same top count (every answer, keyed as the evaluator keys them)
    buckets = [bucket for bucket, _, _ in AGREEMENT_BUCKETS]
    assert list(scored["perAgreement"]) == buckets
    for bucket in buckets:
        assert scored["perAgreement"][bucket] == best[f"val/accuracy_agree_{bucket}"], bucket
    assert len({scored["perAgreement"][bucket] for bucket in buckets}) > 1  # the buckets differ
    # the predictions file the trainer wrote at its best epoch is the same results file
    written = json.loads((runs / name / "predictions_val2014.json").read_text())
    assert sorted(written, key=lambda r: r["question_id"]) == json.loads(results.read_text())
    # test-dev has no annotations: results only, one answer per question
    test = tmp_path / "test.json"
    assert main(["predict", "--run", str(runs / name), "--split", "test-dev2015", "--out", str(test)]) == 0
    qids = {
        q["question_id"]
        for q in json.loads((tiny_data / Q.format(split="test-dev2015")).read_text())["questions"]
    }
    assert {r["question_id"] for r in json.loads(test.read_text())} == qids


def test_word_vectors_initialize_the_question_embedding(tiny_data, tmp_path, capsys):
    from vqa.data.text import QuestionVocab

    train = VQA2.load(tiny_data, "train2014")
    words = QuestionVocab.build(r.question for r in train).itos[2:]
    known = words[: len(words) // 2]
    vectors = tmp_path / "vectors.txt"  # GloVe text format, 8-d
    vectors.write_text(
        "".join(
            f"{w} " + " ".join(f"{i + 0.5 * d:.1f}" for d in range(8)) + "\n" for i, w in enumerate(known)
        )
    )
    args = ["train", "--config", "configs/synthetic/avg_soft.yaml", f"data.root={tiny_data}", f"out_dir={tmp_path}",
            "train.epochs=1", "model.embed_dim=8", f"model.word_vectors={vectors}", "train.lr=1e-12",
            "train.optimizer=sgd"]  # fmt: skip
    assert main(args) == 0
    assert (
        f"word vectors: {len(known) / len(words):.1%} of the question words found" in capsys.readouterr().out
    )
    ckpt = torch.load(tmp_path / "avg_soft" / "checkpoints" / "last.pt", weights_only=True)
    emb = ckpt["model"]["question.embedding.weight"]
    qvocab = QuestionVocab.from_dict(ckpt["question_vocab"])
    i = qvocab.stoi[known[3]]
    assert emb[i].tolist() == pytest.approx([3 + 0.5 * d for d in range(8)], abs=1e-6)

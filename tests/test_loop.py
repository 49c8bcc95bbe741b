"""The training loop around the epoch: gradient accumulation, strict metrics, run folders, resume rules."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from vqa import io
from vqa.cli import main
from vqa.training.hparams import FILE_NAME as HPARAMS_FILE

CONFIG = "configs/synthetic/avg_soft.yaml"
COMPARED = ("step", "train/loss", "val/loss", "val/hard_ce", "val/soft_ce", "val/accuracy", "lr")


def args(root, out, name, *extra, epochs=2, batch=32):
    """A small AVG run without dropout (so micro-batches and whole batches see the same network)."""
    return ["train", "--config", CONFIG, f"data.root={root}", f"out_dir={out}", f"name={name}",
            f"train.epochs={epochs}", f"train.batch_size={batch}", "train.lr=3e-3", "model.rnn_dim=64",
            "model.hidden_dim=128", "model.dropout=0", "train.warmup_epochs=0.5", "train.device=cpu",
            "train.log_every=5", *extra]  # fmt: skip


def metrics(run: Path) -> list[dict]:
    return io.read_jsonl(run / "metrics.jsonl")


def assert_same(a: Path, b: Path, tol: float) -> None:
    ma, mb = metrics(a), metrics(b)
    assert len(ma) == len(mb)
    for x, y in zip(ma, mb):
        for key in COMPARED:
            assert x[key] == pytest.approx(y[key], rel=tol, abs=tol), (x["epoch"], key, x[key], y[key])


@pytest.fixture(scope="module")
def whole(tiny_data, tmp_path_factory):
    """The reference: 2 epochs with one optimizer step per batch of 32."""
    out = tmp_path_factory.mktemp("whole")
    assert main(args(tiny_data, out, "r")) == 0
    return out / "r"


@pytest.mark.slow
def test_accumulation_gives_the_same_losses_as_the_whole_batch(whole, tiny_data, tmp_path):
    assert main(args(tiny_data, tmp_path, "acc", "train.accumulate=2")) == 0
    assert_same(whole, tmp_path / "acc", 1e-5)  # same steps, schedule and losses: 2 x 16 = 32


@pytest.mark.slow
def test_sigterm_between_micro_batches_resumes_exactly(whole, tiny_data, tmp_path, monkeypatch, capsys):
    """SIGTERM arrives after the first of two micro-batches of step 7: the step is finished, then the
    run stops, checkpoints and resumes to the same losses as the uninterrupted accumulated run."""
    from vqa import losses

    calls = {"n": 0}

    def soft_ce_then_sigterm(logits, batch, reduction="mean"):
        if reduction == "mean":
            calls["n"] += 1
            if calls["n"] == 13:  # micro-batch 13 = the first half of optimizer step 7
                os.kill(os.getpid(), signal.SIGTERM)
        return losses.soft_ce(logits, batch, reduction)

    monkeypatch.setitem(losses.LOSSES, "soft_ce_sigterm", soft_ce_then_sigterm)
    run = tmp_path / "r"
    assert main(args(tiny_data, tmp_path, "r", "train.accumulate=2", "train.loss=soft_ce_sigterm")) == 0
    assert "stopped by signal at step 7" in capsys.readouterr().out
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 7 and ckpt["epoch_state"]["batches"] == 14  # a step boundary, not mid-step
    assert main(["train", "--resume", str(run)]) == 0
    assert_same(whole, run, 1e-5)


def test_batch_must_split_into_micro_batches(tiny_data, tmp_path, capsys):
    assert main(args(tiny_data, tmp_path, "r", "train.accumulate=3")) == 2
    assert "must divide by 1 processes x train.accumulate 3" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_split_without_number_questions_logs_null_not_nan(tiny_data, tmp_path, capsys):
    """metrics.jsonl stays strict JSON: the missing accuracy is null, '-' in the epoch line, and
    absent from TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = tmp_path / "data"
    root.mkdir()
    for f in tiny_data.iterdir():
        (root / f.name).symlink_to(f)
    name = "v2_mscoco_val2014_annotations.json"
    ann = json.loads((tiny_data / name).read_text())
    keep = [a for a in ann["annotations"] if a["answer_type"] != "number"]
    kept = {a["question_id"] for a in keep}
    (root / name).unlink()
    (root / name).write_text(json.dumps({**ann, "annotations": keep}))
    qname = "v2_OpenEnded_mscoco_val2014_questions.json"
    qs = json.loads((tiny_data / qname).read_text())
    (root / qname).unlink()
    (root / qname).write_text(
        json.dumps({**qs, "questions": [q for q in qs["questions"] if q["question_id"] in kept]})
    )
    assert main(args(root, tmp_path, "r", epochs=1)) == 0
    out = capsys.readouterr().out
    assert "number -  other" in out
    (row,) = [io.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert row["val/accuracy_number"] is None and row["val/accuracy_other"] is not None
    events = EventAccumulator(str(tmp_path / "r")).Reload()
    assert (
        "val/accuracy_number" not in events.Tags()["scalars"]
        and "val/accuracy_other" in events.Tags()["scalars"]
    )


def test_resume_of_a_run_without_checkpoint_starts_it(tiny_data, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(args(tiny_data, tmp_path, "r", epochs=1)) == 0
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "best.pt").unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"resume: {run} has no checkpoint yet; starting the run from its saved config.yaml" in out
    assert [m["epoch"] for m in metrics(run)] == [1]
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2  # no config: still an error


def test_a_new_run_never_replaces_an_existing_one(tiny_data, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(args(tiny_data, tmp_path, "r", epochs=1)) == 0
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    capsys.readouterr()
    assert main(args(tiny_data, tmp_path, "r", "train.lr=1e30", epochs=1)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--overwrite" in err[0]
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before  # nothing touched
    assert main([*args(tiny_data, tmp_path, "r", "train.lr=1e-3", epochs=1), "--overwrite"]) == 0
    events = sorted(p.name for p in run.glob("events.out.tfevents*"))  # the HParams file, one writer's file
    assert [m["epoch"] for m in metrics(run)] == [1] and len(events) == 2 and events[0] == HPARAMS_FILE


def test_resume_refuses_an_override_that_changes_the_model(tiny_data, tmp_path, capsys):
    run = tmp_path / "r"
    assert main(args(tiny_data, tmp_path, "r", epochs=1)) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "model.rnn_dim=7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.rnn_dim=64" in err[0] and "cannot change it to 7" in err[0]


def test_divergence_before_any_checkpoint_leaves_no_folder(tiny_data, tmp_path, capsys):
    assert (
        main(args(tiny_data, tmp_path, "r", "train.lr=1e30", "train.grad_clip=1", "train.log_every=1")) == 2
    )
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "training diverged: loss is nan at step" in line and "was removed" in line
    assert "grad_clip" not in line  # already set: the advice does not repeat it
    assert not (tmp_path / "r").exists()


def test_a_rank_without_a_gpu_is_one_clear_error(monkeypatch):
    from vqa.errors import UserError
    from vqa.training.distributed import init_distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(UserError, match=r"1 visible and 2 processes started; use NPROC=1"):
        init_distributed("cuda")


# ModelConfig fields a resume may change: they fix no parameter shape and not what the weights compute
CHANGEABLE_ON_RESUME = {"model.dropout", "model.fc_dropout", "model.word_vectors"}
SMALL_MODEL = dict(
    embed_dim=8, rnn_dim=8, hidden_dim=8, attention_dim=8, glimpses=2, mcb_dim=16, heads=2, ff_dim=8, layers=1
)


def _shapes(cfg) -> dict:
    from vqa.models import build_model

    return {k: tuple(v.shape) for k, v in build_model(cfg, 20, 7, 6).state_dict().items()}


@pytest.mark.parametrize("model_name", ["avg", "pool", "mcb", "updn", "mcan", "ban"])
def test_every_model_setting_that_fixes_a_shape_is_fixed_on_resume(model_name):
    """Each ModelConfig field is fixed on resume or explicitly changeable, and every field whose change
    changes a parameter shape of a model is fixed."""
    from dataclasses import fields, replace

    from vqa.config import ModelConfig
    from vqa.models import MODELS
    from vqa.training.checkpoint import FIXED_ON_RESUME

    assert model_name in MODELS
    base = ModelConfig(name=model_name, **SMALL_MODEL)
    shapes = _shapes(base)
    for f in fields(ModelConfig):
        key, value = f"model.{f.name}", getattr(base, f.name)
        assert (key in FIXED_ON_RESUME) != (key in CHANGEABLE_ON_RESUME), key
        other = {"lstm": "gru", "gru": "lstm"}.get(value) if isinstance(value, str) else None
        if isinstance(value, (int, float)):  # bool included
            other = (not value) if isinstance(value, bool) else value * 2
        if other is not None and f.name != "name" and _shapes(replace(base, **{f.name: other})) != shapes:
            assert key in FIXED_ON_RESUME, f"{key} changes {model_name}'s parameter shapes"


@pytest.mark.parametrize("key", ["model.heads", "model.ff_dim", "model.layers"])
def test_resume_refuses_an_mcan_or_ban_shape_override(key, tmp_path):
    from vqa.config import Config, to_dict
    from vqa.errors import UserError
    from vqa.training.checkpoint import check_resumable

    ckpt, cfg = {"config": to_dict(Config())}, Config()
    name = key.split(".")[1]
    setattr(cfg.model, name, getattr(cfg.model, name) + 1)
    with pytest.raises(UserError) as e:
        check_resumable(ckpt, cfg, tmp_path)
    (line,) = str(e.value).splitlines()
    assert f"{key}={getattr(Config().model, name)!r}" in line and "cannot change it to" in line

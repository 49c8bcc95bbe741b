"""Model selection: which split chooses the best epoch (and stops early), and the test split scored
once, at that epoch.

`data.val_split` chooses; `data.test_split` (when set and another split) is scored once after training
with the weights of the chosen epoch (checkpoints/best.pt) and written to test.json:

    {"split": "test", "selected_on": "heldout", "epoch": 7, "test/accuracy": ..., ...}

Choosing on a test split (VQA-CP's `data.val_split: test`, as the peer repos do) is named test-set
selection in the output: it inflates the reported numbers (Teney et al. 2020); a held-out part of
train (`data.val_split: heldout`, vqa/data/heldout.py) is the honest choice without a validation split.
"""

from __future__ import annotations

from vqa import io, runs
from vqa.config import Config
from vqa.data.heldout import HELDOUT
from vqa.training.distributed import barrier
from vqa.training.runlog import VAL_SCALARS, type_accuracies
from vqa.training.validation import evaluate, question_groups

TEST_FILE = "test.json"


def is_test_split(name: str) -> bool:
    """Whether a split is a test split of its release (test, test2015, test-dev2015, ...)."""
    return name.startswith("test")


def test_set_selection(cfg: Config) -> bool:
    """Whether the best epoch is chosen on a test split (the numbers reported are then optimistic)."""
    return is_test_split(cfg.data.val_split) or cfg.data.val_split == cfg.data.test_split


def chosen_on(cfg: Config) -> str:
    """How the best line names the split that chose the epoch: 'heldout', or 'test' (test-set selection)."""
    return f"'{cfg.data.val_split}'" + (" (test-set selection)" if test_set_selection(cfg) else "")


def selection_line(cfg: Config) -> str:
    """The run log's line saying which split chooses the epoch and which is reported beside it."""
    d = cfg.data
    if test_set_selection(cfg):
        return (
            f"model selection: TEST-SET SELECTION: the best epoch and early stopping use '{d.val_split}', a "
            "test split, so its numbers are optimistic (Teney et al. 2020); set data.val_split=heldout "
            f"data.test_split={d.val_split} to choose on a part of train held out by image"
        )
    held_out = f" ({d.heldout_fraction:g} of '{d.train_split}' held out by image, seed {d.heldout_seed})"
    on = f"'{d.val_split}'" + (held_out if d.val_split == HELDOUT else "")
    test = f"; '{d.test_split}' scored once, at the selected epoch" if d.test_split else ""
    return f"model selection: best epoch and early stopping on {on}{test}"


def test_row(cfg: Config, best: dict, test: dict) -> dict:
    """test.json's content: the test metrics of the selected epoch and the split that selected it."""
    row = {"split": cfg.data.test_split, "selected_on": cfg.data.val_split, "epoch": best["epoch"]}
    row.update({f"test/{k}": test[k] for k in VAL_SCALARS})
    row.update({f"val/{k}": best.get(k) for k in ("loss", "accuracy")})
    return row


def test_line(row: dict) -> str:
    """The printed line of the test scores (answer types from the `test/` keys)."""
    m = {k[len("test/") :]: v for k, v in row.items() if k.startswith("test/")}
    acc = "-" if m["accuracy"] is None else f"{m['accuracy']:.2f}"
    head = f"test: '{row['split']}' at epoch {row['epoch']} (selected on '{row['selected_on']}')"
    return f"{head}  acc {acc}  {type_accuracies(m)}"


def write_test(run_dir, writer, row: dict) -> None:
    """test.json (atomically) and the `test/` scalars at the selected epoch (main rank only)."""
    io.write_json_atomic(run_dir / TEST_FILE, row, indent=1)
    for key, value in row.items():
        if key.startswith("test/") and value is not None:
            writer.add_scalar(key, value, row["epoch"])
    writer.flush()


def score_test(
    cfg: Config, model, eval_model, loss_fn, loader, dataset, device, dist, log, best: dict
) -> dict:
    """Score data.test_split once with the weights of the selected epoch (checkpoints/best.pt, loaded
    into the bare `model`; `eval_model` is what runs it: the DDP / compiled wrapper of the same
    parameters), print the line and write test.json. Returns the test.json row."""
    barrier(dist)  # best.pt is written by the main rank
    model.load_state_dict(runs.read_checkpoint(cfg.run_dir / "checkpoints" / "best.pt")["model"])
    answer_types, agreement = question_groups(dataset)
    test = evaluate(eval_model, loss_fn, loader, device, answer_types, cfg.train.precision, dist, agreement)
    row = test_row(cfg, best, test)
    if dist.main:
        write_test(cfg.run_dir, log.writer, row)
        log.say(test_line(row))
    return row

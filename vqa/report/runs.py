"""Run folders written by `vqa train`: config.yaml and metrics.jsonl, read and checked.

A run's arm is its train.loss or the name of a variant of a loss (ARMS, read back from its config;
`vqa paper --losses` takes the same names). Runs are grouped by (model, arm), the summary's "loss"
field holding the arm, and paired across arms by (model, seed). Loading checks everything `vqa
compare` relies on before anything is written: a folder that is not a run, a torn metrics line, two
runs of different datasets or of the same (model, arm, seed) each end in one UserError line naming the
folder. metrics.jsonl is strict JSON, null where a metric has no value (vqa.io.read_jsonl refuses a
bare NaN); null is missing to everything here (`num`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from vqa.config import Config, to_dict
from vqa.data.answers import ANSWER_TYPES, answer_type_key
from vqa.errors import UserError
from vqa.io import read_json, read_jsonl

REFERENCE = "hard_ce"  # every other arm is compared with it
# Named variants of a loss: arm -> (train.loss, the config values that make the variant). Any loss of
# vqa.losses.LOSSES is an arm of its own name (with these keys at their defaults).
ARMS: dict[str, tuple[str, dict[str, object]]] = {
    # soft_ce whose target weights land on other answers of the same type (the control: the human
    # weight profile without the human answers; vqa.data.shuffled.shuffle_soft_targets)
    "shuffled": ("soft_ce", {"data.soft_target": "shuffled"}),
    # debiasing methods (vqa/debias) on the sigmoid loss of the bottom-up-attention baselines they
    # were published on; each is compared with the plain `bce` arm (vqa/report/debias.py)
    "bias_product": ("bce", {"train.debias": "bias_product"}),
    "lmh": ("bce", {"train.debias": "lmh", "train.debias_entropy": 0.36}),
    "learned_mixin": ("bce", {"train.debias": "lmh", "train.debias_entropy": 0.0}),
    "rubi": ("bce", {"train.debias": "rubi"}),
    "lpf": ("bce", {"train.debias": "lpf"}),
    "gge": ("bce", {"train.debias": "gge"}),
}
VARIANT_KEYS = sorted({k for _, values in ARMS.values() for k in values})
COLUMNS = {  # table column -> metrics.jsonl key: All, then one per answer type
    "all": "val/accuracy",
    **{answer_type_key(t): f"val/accuracy_{answer_type_key(t)}" for t in ANSWER_TYPES},
}
REQUIRED = ("epoch", "train/loss", "val/loss", "val/accuracy")  # keys every metrics row must have
# where and how a run trains, not what it trains
RUN_ONLY_KEYS = {"name", "out_dir", "train.device", "train.log_every", "data.num_workers", "data.preload"}
# keys that may differ between paired runs without making the comparison unfair
PAIRING_IGNORES = {*RUN_ONLY_KEYS, "train.loss", "train.seed", *VARIANT_KEYS}
HINT = "pass run folders written by `vqa train` (runs/<name>)"


def read_rows(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl, checked: JSON objects with the required keys, epochs increasing."""
    rows = []
    for i, row in enumerate(read_jsonl(path, "metrics"), 1):
        missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
        if missing:
            raise UserError(f"{path} line {i}: missing {', '.join(repr(k) for k in missing)}")
        if rows and row["epoch"] <= rows[-1]["epoch"]:
            raise UserError(
                f"{path} line {i}: epoch {row['epoch']} does not follow epoch {rows[-1]['epoch']}"
            )
        rows.append(row)
    return rows


def read_test(path: Path) -> dict | None:
    """test.json of a run (vqa/training/selection.py), or None when the run has none."""
    if not path.is_file():
        return None
    test = read_json(path, "test scores")
    if not isinstance(test, dict) or "epoch" not in test:
        raise UserError(f"{path}: not a test.json written by `vqa train` (no 'epoch')")
    return test


def stopped_early(rows: list[dict], patience: int) -> bool:
    """Whether early stopping ended the run: `patience` epochs without a strictly better accuracy
    since the best (the training loop's rule, whose first best is the first epoch's)."""
    if patience <= 0 or not rows:
        return False
    acc = np.asarray([num(r["val/accuracy"]) for r in rows])  # null (missing) -> NaN, never the best
    if not np.isfinite(acc).any():
        return False
    best = int(np.nanargmax(acc))  # first maximum, as training's strict '>'
    return len(rows) - 1 - best >= patience


def is_complete(rows: list[dict], epochs: int, patience: int = 0) -> bool:
    """Whether the run trained all its `epochs` or early stopping ended it."""
    return bool(rows) and (rows[-1]["epoch"] >= epochs or stopped_early(rows, patience))


def flatten(d: dict, prefix: str = "") -> dict:
    """{"train": {"loss": x}} -> {"train.loss": x}: configs compared key by key."""
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def num(x) -> float:
    """A metric value as a float; NaN when missing (None, NaN, not a number)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else float("nan")


@functools.cache
def _defaults() -> dict:
    """The flattened default config: a run folder without a variant key has its default."""
    return flatten(to_dict(Config()))


@dataclass
class Run:
    path: Path
    config: dict  # flattened: {"train.loss": ..., ...}
    rows: list[dict]
    test: dict | None = None  # test.json: data.test_split scored once at the selected epoch

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> str:
        return self.config["model.name"]

    @property
    def loss(self) -> str:
        return self.config["train.loss"]

    @property
    def arm(self) -> str:
        """The ARMS name whose loss and values the config has; else the loss, with any variant key
        off its default appended (`soft_ce[data.soft_target=x]`) so that no two variants mix."""
        for name, (loss, values) in ARMS.items():
            if self.loss == loss and all(self.config.get(k) == v for k, v in values.items()):
                return name
        defaults = _defaults()
        off = [
            f"[{k}={self.config[k]}]"
            for k in VARIANT_KEYS
            if self.config.get(k, defaults.get(k)) != defaults.get(k)
        ]
        return self.loss + "".join(off)

    @property
    def seed(self) -> int:
        return self.config["train.seed"]

    @property
    def data(self) -> tuple:
        """(dataset folder, train split, val split): runs of one comparison must share it."""
        root = os.path.normpath(os.path.abspath(str(self.config["data.root"])))
        return root, self.config.get("data.train_split"), self.config.get("data.val_split")

    @property
    def complete(self) -> bool:
        return is_complete(
            self.rows, self.config["train.epochs"], self.config.get("train.early_stop_patience", 0)
        )

    def series(self, key: str) -> np.ndarray:
        """[epochs] float values of `key` (NaN where missing)."""
        return np.asarray([num(r.get(key)) for r in self.rows], dtype=np.float64)

    @property
    def epochs(self) -> np.ndarray:
        return np.asarray([r["epoch"] for r in self.rows])

    @property
    def best_row(self) -> dict:
        """The row of the best val/accuracy (the first of equal ones, as training keeps best.pt)."""
        return self.rows[int(np.nanargmax(self.series("val/accuracy")))]


def load_run(path: str | Path) -> Run:
    """A run folder written by `vqa train`; a UserError naming the folder when it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a folder; {HINT}")
    for f in ("config.yaml", "metrics.jsonl"):
        if not (path / f).is_file():
            raise UserError(f"{path}: no {f}; {HINT}")
    try:
        raw = yaml.safe_load((path / "config.yaml").read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path / 'config.yaml'}: not valid YAML ({str(e).splitlines()[0]})") from None
    config = flatten(raw) if isinstance(raw, dict) else {}
    for key in ("model.name", "train.loss", "train.seed", "train.epochs", "data.root"):
        if key not in config:
            raise UserError(f"{path / 'config.yaml'}: missing '{key}'; {HINT}")
    rows = read_rows(path / "metrics.jsonl")
    if not rows:
        raise UserError(f"{path / 'metrics.jsonl'}: empty (no finished epoch); resume or rerun the run")
    test = read_test(path / "test.json")
    run = Run(path, config, rows, test)
    if not np.isfinite(run.series("val/accuracy")).any():
        raise UserError(f"{path / 'metrics.jsonl'}: no finite val/accuracy")
    return run


def ordered(items: Iterable[str]) -> list[str]:
    """Unique items in order of first appearance, the reference loss first."""
    out = list(dict.fromkeys(items))
    return sorted(out, key=lambda x: x != REFERENCE)


def load_runs(
    paths: Iterable[str | Path], allow_incomplete: bool = False
) -> tuple[list[Run], list[Run], list[str]]:
    """(runs to compare, incomplete runs, warnings). Checks one dataset and one run per (model, loss, seed)."""
    runs, seen = [], set()
    for p in paths:
        if Path(p).resolve() not in seen:
            seen.add(Path(p).resolve())
            runs.append(load_run(p))
    if not runs:
        raise UserError("compare: no run folders given")
    first = runs[0]
    for r in runs[1:]:
        if r.data != first.data:
            raise UserError(
                f"{r.path}: data {r.config['data.root']} ({r.data[2]}) differs from {first.config['data.root']} "
                f"({first.data[2]}) of {first.path}; compare runs of one dataset"
            )
    by_key: dict[tuple, Run] = {}
    for r in runs:
        key = (r.model, r.arm, r.seed)
        if key in by_key:
            raise UserError(
                f"{r.path}: same model, loss and seed as {by_key[key].path} ({r.model}, {r.arm}, seed {r.seed}); "
                "pass one of them"
            )
        by_key[key] = r
    incomplete = [r for r in runs if not r.complete]
    chosen = runs if allow_incomplete else [r for r in runs if r.complete]
    if not chosen:
        raise UserError(
            f"compare: none of the {len(runs)} runs is complete ({incomplete[0].path}: "
            f"{len(incomplete[0].rows)} of {incomplete[0].config['train.epochs']} epochs); "
            "resume them or pass --allow-incomplete"
        )
    return chosen, incomplete, pairing_warnings(chosen)


def pairing_warnings(runs: list[Run]) -> list[str]:
    """One warning per run whose config differs from its model's first run beyond PAIRING_IGNORES."""
    warnings = []
    for model in ordered(r.model for r in runs):
        first, *others = [r for r in runs if r.model == model]
        for r in others:
            keys = sorted(set(first.config) | set(r.config))
            diff = [k for k in keys if k not in PAIRING_IGNORES and first.config.get(k) != r.config.get(k)]
            if diff:
                k = diff[0]
                warnings.append(
                    f"{r.path} differs from {first.path} in {', '.join(diff)} ({k}: {r.config.get(k)!r} vs "
                    f"{first.config.get(k)!r}); the loss should be the only difference"
                )
    return warnings

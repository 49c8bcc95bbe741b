"""Typed experiment configuration.

A config is a YAML file mapped onto the dataclasses below. A file may name a
`base:` file (relative to itself) whose values it overrides, recursively. Command
line overrides are dotted `key=value` pairs parsed as YAML scalars
(`train.lr=3e-4`, `model.name=pool`, `train.lr_decay_epochs=[30,60]`).
Unknown keys and wrong types are refused with the key and the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from vqa.errors import UserError
from vqa.runs import check_name, shown
from vqa.yaml_safe import TooLarge, read_yaml, safe_yaml


@dataclass
class DataConfig:
    root: str = "data/synthetic/small"  # folder holding the JSON files and features
    source: str = "vqa2"  # a key of vqa.data.sources.SOURCES: vqa2 | vqa1 | vqacp2 | vizwiz | okvqa
    train_split: str = "train2014"
    val_split: str = (
        "val2014"  # a split of the source, or "heldout": data.heldout_fraction of train, by image
    )
    heldout_fraction: float = 0.1  # val_split heldout: the share of the training split's images held out
    heldout_seed: int = 0  # val_split heldout: which images (fixed for a seed, whatever the file order)
    test_split: str = ""  # scored once, at the epoch chosen on val_split ("" = none; vqa/data/heldout.py)
    questions: str = "v2_OpenEnded_mscoco_{split}_questions.json"  # relative to root
    annotations: str = "v2_mscoco_{split}_annotations.json"
    features_file: str = "features_{split}.h5"
    features: str = "grid"  # grid | boxes
    feature_dim: int = 0  # expected image feature size; 0 = take it from the file
    max_answers: int = 3000  # top-K multiple_choice_answer of the training split
    max_question_len: int = 14  # longer questions are truncated (counted and reported)
    min_token_count: int = 1  # rarer question words map to <unk>
    soft_targets_oov: str = "drop"  # drop (paper's code) | renormalize in-vocabulary weights
    soft_target: str = "human"  # human | shuffled (control: weights moved to answers of the same type)
    preload: str = (
        "none"  # none | ram (a feature file read into memory) | device (held on the GPU; data/README.md)
    )
    num_workers: int = 0  # DataLoader worker processes (pinned memory on CUDA, persistent workers)
    sampler: str = (
        "random"  # random | image_grouped (questions of one image share a batch: features read once)
    )
    synth_preset: str = ""  # tiny | small | paper: generate synthetic data into root when it is missing
    synth_format: str = "vqa2"  # vqa2 | vqa1 | okvqa | vizwiz | vqacp2: the dataset synth_preset imitates


@dataclass
class ModelConfig:
    name: str = "avg"  # a key of vqa.models.MODELS
    embed_dim: int = 300  # word vectors
    rnn: str = "lstm"  # lstm | gru
    rnn_dim: int = 1024  # question encoder size (2400 in the paper's code)
    hidden_dim: int = 1024  # fused / classifier hidden size
    attention_dim: int = 512  # attention MLP size
    glimpses: int = 2
    mcb_dim: int = 16000  # compact bilinear output size (Fukui et al. 2016)
    heads: int = 8  # MCAN: attention heads (hidden_dim must be a multiple)
    ff_dim: int = 2048  # MCAN: feed-forward size of each attention layer
    layers: int = 6  # MCAN: encoder layers, and as many decoder layers
    dropout: float = 0.5
    fc_dropout: float = 0.2  # BAN: dropout on the inputs of its other linear layers (authors: 0.2)
    normalize_image: bool = True  # L2-normalize image feature vectors
    word_vectors: str = ""  # GloVe .txt / fastText .vec (.gz too) to initialize the question embedding; "" = random (the paper: 300-d fastText)


@dataclass
class TrainConfig:
    loss: str = "soft_ce"  # a key of vqa.losses.LOSSES
    debias: str = "none"  # a key of vqa.debias.DEBIAS: a branch and loss around the model (docs/debias.md)
    debias_entropy: float = 0.36  # lmh: weight of the gate's entropy penalty (0 = learned-mixin)
    debias_gamma: float = 5.0  # lpf: exponent of the feedback weight (1 - p_q(y))^gamma
    debias_question_weight: float = 1.0  # rubi, lpf, gge: weight of the question-only branch's loss
    label_smoothing: float = 0.1  # label_smoothing's eps (`vqa stats` prints the matching one)
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"  # adam | adamw | adamax | sgd
    lr: float = 1e-4
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw, adamax
    adam_eps: float = 1e-8  # adam, adamw, adamax
    weight_decay: float = 0.0
    lr_decay_epochs: list[int] = field(
        default_factory=lambda: [30, 60]
    )  # authors' code: /10 at 30, /100 at 60
    lr_decay_factor: float = 0.1
    warmup_epochs: float = 0.0  # warm-up over this many epochs, then the step decay
    warmup: str = "linear"  # linear: from 0, per step | epochwise: x k/(W+1) in epoch k of W (MCAN, BAN)
    early_stop_patience: int = 0  # stop after this many epochs without a better val accuracy; 0 = never
    precision: str = "fp32"  # fp32 | bf16 | fp16 (torch.autocast; fp16 uses a gradient scaler)
    compile: bool = False  # torch.compile the model
    grad_clip: float = 0.0  # max grad norm; 0 disables
    accumulate: int = 1  # gradient accumulation: one optimizer step every N micro-batches of batch_size / N
    tf32: bool = (
        True  # CUDA: TF32 for fp32 matmuls and cuDNN convolutions (~10 mantissa bits; no effect on CPU)
    )
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50  # steps between train/loss scalars


@dataclass
class Config:
    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# The valid values of every enumerated setting (registry names are added by _registry_choices)
CHOICES = {
    "data.features": ("grid", "boxes"),
    "data.soft_targets_oov": ("drop", "renormalize"),
    "data.soft_target": ("human", "shuffled"),
    "data.preload": ("none", "ram", "device"),
    "data.sampler": ("random", "image_grouped"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "model.rnn": ("lstm", "gru"),
    "train.optimizer": ("adam", "adamw", "adamax", "sgd"),
    "train.warmup": ("linear", "epochwise"),
}


def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


# (key, check, what it must be): the valid range of every numeric setting
RANGES = [
    *((k, _positive, "positive") for k in ("data.max_answers", "data.max_question_len", "train.epochs",
      "train.batch_size", "model.embed_dim", "model.rnn_dim", "model.hidden_dim", "model.attention_dim",
      "model.glimpses", "model.mcb_dim", "model.heads", "model.ff_dim", "model.layers", "train.log_every",
      "train.lr", "train.accumulate", "train.adam_eps")),
    *((k, _non_negative, ">= 0") for k in ("train.weight_decay", "train.grad_clip", "train.warmup_epochs",
      "train.early_stop_patience", "data.num_workers", "data.min_token_count", "data.feature_dim")),
    *((k, _non_negative, ">= 0") for k in ("train.debias_entropy", "train.debias_gamma",
      "train.debias_question_weight", "data.heldout_seed")),
    ("data.heldout_fraction", lambda v: 0 < v < 1, "in (0, 1)"),
    ("model.dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("model.fc_dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("train.lr_decay_factor", lambda v: 0 < v <= 1, "in (0, 1]"),
]  # fmt: skip


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _check_type(value: Any, tp: Any, key: str, source: str) -> Any:
    """Return `value` converted to `tp` where lossless (int -> float), else raise."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise UserError(f"{source}: '{key}' must be a list, got {shown(value)}")
        return [_check_type(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError("unions are not used in config")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 1e-4 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise UserError(f"{source}: '{key}' must be {tp.__name__}, got {shown(value)}")
    return value


def _merge(node: Any, raw: dict, prefix: str, source: str) -> None:
    """Set the fields of dataclass `node` from mapping `raw`, strictly."""
    hints = typing.get_type_hints(type(node))
    names = [f.name for f in fields(node)]
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in names:
            valid = [f"{prefix}{n}" for n in names]
            raise UserError(f"{source}: unknown key {shown(full)}{_closest(full, valid)}")
        current = getattr(node, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"{source}: '{full}' must be a mapping of keys")
            _merge(current, value, f"{full}.", source)
        else:
            setattr(node, key, _check_type(value, hints[key], full, source))


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise UserError(f"override {shown(text)} must look like key=value, e.g. train.lr=3e-4")
    key, value = text.split("=", 1)
    if value == "":
        return key.strip(), ""
    try:
        return key.strip(), safe_yaml(value)
    except TooLarge as e:
        raise UserError(f"override {shown(text)}: {e}; give a plain value") from None
    except yaml.YAMLError:  # not YAML: the text itself (a string setting)
        return key.strip(), value


def _field_type(key: str) -> Any:
    """The declared type of dotted `key` ("train.lr" -> float), or None for an unknown key."""
    node: Any = Config
    for part in key.split("."):
        if not (dataclasses.is_dataclass(node) and part in {f.name for f in fields(node)}):
            return None
        node = typing.get_type_hints(node)[part]
    return node


def _nest(key: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def load_config(path: str | Path | None = None, overrides: list[str] = (), missing: str = "") -> Config:
    """Build a validated Config from a YAML file (with `base:`) and dotted overrides. `missing`: the
    message when `path` does not exist (default: config file not found)."""
    cfg = Config()
    layers = read_yaml(Path(path), missing=missing) if path is not None else []
    for raw, source in layers:
        _merge(cfg, raw, "", source)
    for text in overrides:
        key, value = parse_override(text)
        if not isinstance(value, str) and _field_type(key) is str:
            value = text.split("=", 1)[1]  # text as written: name=2024, data.questions={split}.json
        _merge(cfg, _nest(key, value), "", "override")
    validate(cfg)
    return cfg


def load_run_config(run_dir: str | Path, overrides: list[str] = ()) -> Config:
    """The resolved config.yaml of a run folder (`vqa train --resume RUN_DIR`), with overrides; a missing
    folder or a folder without config.yaml is one line saying so and what to pass instead."""
    run_dir = Path(run_dir)
    hint = "pass a run folder written by `vqa train` (runs/<name>), or start a new run with --config"
    if not run_dir.exists():
        missing = f"--resume {run_dir}: run folder does not exist (no config.yaml to resume from); {hint}"
    elif not run_dir.is_dir():
        missing = f"--resume {run_dir}: not a folder; {hint}"
    else:
        missing = f"--resume {run_dir}: the folder has no config.yaml, so it is not a run folder; {hint}"
    return load_config(run_dir / "config.yaml", overrides, missing=missing)


def config_from_dict(raw: dict, source: str = "checkpoint") -> Config:
    cfg = Config()
    _merge(cfg, raw, "", source)
    validate(cfg)
    return cfg


def _registry_choices() -> dict[str, tuple[str, ...]]:
    """Names whose valid values are a registry's keys (imported here, when a config is validated,
    so a typo in model.name or train.loss fails before any data is read or generated)."""
    from vqa.data.sources import SOURCES
    from vqa.debias import DEBIAS
    from vqa.losses import LOSSES
    from vqa.models import MODELS
    from vqa.synth.formats import FORMATS
    from vqa.synth.presets import PRESETS

    return {
        "model.name": tuple(sorted(MODELS)),
        "train.loss": tuple(sorted(LOSSES)),
        "train.debias": ("none", *DEBIAS),
        "data.synth_preset": ("", *PRESETS),
        "data.source": tuple(SOURCES),
        "data.synth_format": tuple(FORMATS),
    }


def _check_splits(cfg: Config) -> None:
    """The training, validation and test splits are splits of the source (its split table lists them);
    the validation split may also be "heldout" (a part of the training split)."""
    from vqa.data.heldout import HELDOUT
    from vqa.data.sources import SOURCES

    source = SOURCES[cfg.data.source]
    for key in ("train_split", "val_split", "test_split"):
        value = getattr(cfg.data, key)
        if (key, value) in (("val_split", HELDOUT), ("test_split", "")):
            continue
        if value not in source.splits:
            raise UserError(
                f"config: 'data.{key}' is {shown(value)}, not a split of data.source {source.name} "
                f"({source.title}); choose one of {', '.join(source.splits)}"
            )


def _floats(node: Any, prefix: str = ""):
    """(dotted key, value) of every float field, nested sections included."""
    for f in fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            yield from _floats(value, f"{prefix}{f.name}.")
        elif isinstance(value, float):
            yield f"{prefix}{f.name}", value


def validate(cfg: Config) -> None:
    """Every value in range and every name valid, before anything is read, generated or trained."""
    for key, value in _floats(cfg):
        if not math.isfinite(value):
            raise UserError(f"config: '{key}' is {value}; give a finite number")
    for key, allowed in {**CHOICES, **_registry_choices()}.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            valid = ", ".join(repr(a) if a == "" else a for a in allowed)
            raise UserError(f"config: '{key}' is {shown(value)}; choose one of {valid}")
    for key, check, text in RANGES:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not check(value):
            raise UserError(f"config: '{key}' is {value}; it must be {text}")
    _check_model_and_schedule(cfg)
    if sorted(cfg.train.lr_decay_epochs) != cfg.train.lr_decay_epochs:
        raise UserError("config: 'train.lr_decay_epochs' must be increasing, e.g. [30, 60]")
    check_name(cfg.name)
    if not 0 <= cfg.train.seed < 2**32:
        raise UserError(
            f"config: 'train.seed' is {cfg.train.seed}; it must be in [0, 2**32 - 1] (numpy's seed range)"
        )
    dev = cfg.train.device
    if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
        raise UserError(f"config: 'train.device' is {shown(dev)}; choose auto, cpu, cuda or cuda:N")
    _check_splits(cfg)
    if cfg.train.debias != "none":
        from vqa.debias import check_loss

        check_loss(cfg.train.debias, cfg.train.loss)
    for key in SPLIT_TEMPLATES:
        _check_template(key, getattr(cfg.data, key.split(".")[1]))


def _check_model_and_schedule(cfg: Config) -> None:
    """The settings that constrain one another: MCAN's heads, Adam's betas, an epochwise warm-up."""
    m, t = cfg.model, cfg.train
    if m.name == "mcan" and m.hidden_dim % m.heads:
        raise UserError(
            f"config: 'model.hidden_dim' is {m.hidden_dim}, not a multiple of 'model.heads' ({m.heads}); "
            "MCAN splits it into equal heads (MCAN-small: 512 and 8)"
        )
    if len(t.adam_betas) != 2 or not all(0 <= b < 1 for b in t.adam_betas):
        raise UserError(
            f"config: 'train.adam_betas' is {t.adam_betas}; give two numbers in [0, 1), e.g. [0.9, 0.98]"
        )
    if t.warmup == "epochwise" and t.warmup_epochs != int(t.warmup_epochs):
        raise UserError(
            f"config: 'train.warmup_epochs' is {t.warmup_epochs}; an epochwise warm-up takes whole epochs (e.g. 3)"
        )


# File names formatted with the split's name ("train2014"): {split} is their only placeholder.
SPLIT_TEMPLATES = ("data.questions", "data.annotations", "data.features_file")


def _check_template(key: str, template: str) -> None:
    """A file-name template must format with split= alone, so a typo fails when the config loads,
    not when the data is read."""
    try:
        template.format(split="x")
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as e:
        bad = f" ({{{e.args[0]}}} is unknown)" if isinstance(e, KeyError) else f" ({e})"
        raise UserError(
            f"config: '{key}' is {shown(template)}{bad}; the only placeholder is {{split}} (the split's name, "
            "e.g. v2_mscoco_{split}_annotations.json); write {{ and }} for a literal brace"
        ) from None


def to_dict(cfg: Config) -> dict:
    return asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)

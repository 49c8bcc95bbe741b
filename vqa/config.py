"""Typed experiment configuration: YAML files mapped onto the dataclasses of vqa/config_schema.py (which
this module re-exports), then validated. A file may name a `base:` file (relative to itself) whose values
it overrides, recursively; command line overrides are dotted `key=value` pairs parsed as YAML scalars
(`train.lr=3e-4`, `train.lr_decay_epochs=[30,60]`). Unknown keys and wrong types are refused with the key
and the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

from vqa.config_schema import CHOICES, RANGES, SPLIT_TEMPLATES, Config
from vqa.config_schema import DataConfig as DataConfig
from vqa.config_schema import ModelConfig as ModelConfig
from vqa.config_schema import TrainConfig as TrainConfig
from vqa.errors import UserError
from vqa.runs import check_name, shown
from vqa.synth.formats import FORMATS
from vqa.synth.presets import PRESETS
from vqa.yaml_safe import TooLarge, read_yaml, safe_yaml


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
            match = difflib.get_close_matches(full, [f"{prefix}{n}" for n in names], n=1, cutoff=0.0)
            raise UserError(
                f"{source}: unknown key {shown(full)}" + (f" (did you mean '{match[0]}'?)" if match else "")
            )
        current = getattr(node, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UserError(f"{source}: '{full}' must be a mapping of keys")
            _merge(current, value, f"{full}.", source)
        else:
            setattr(node, key, _check_type(value, hints[key], full, source))


def parse_override(text: str) -> tuple[str, Any]:
    """(dotted key, value) of a `key=value` override; the value is a YAML scalar, else the text itself."""
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


def load_config(path: str | Path | None = None, overrides: list[str] = (), missing: str = "") -> Config:
    """A validated Config from a YAML file (with `base:`) and dotted overrides; `missing`: the message
    when `path` does not exist (default: config file not found)."""
    cfg = Config()
    for raw, source in read_yaml(Path(path), missing=missing) if path is not None else []:
        _merge(cfg, raw, "", source)
    for text in overrides:
        key, value = parse_override(text)
        if not isinstance(value, str) and _field_type(key) is str:
            value = text.split("=", 1)[1]  # text as written: name=2024, data.questions={split}.json
        nested = functools.reduce(lambda inner, part: {part: inner}, reversed(key.split(".")), value)
        _merge(cfg, nested, "", "override")
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
    """A validated Config from nested plain dicts (a checkpoint's config); `source` names it in errors."""
    cfg = Config()
    _merge(cfg, raw, "", source)
    validate(cfg)
    return cfg


def to_dict(cfg: Config) -> dict:
    """The config as nested plain dicts (what config.yaml and checkpoints hold)."""
    return asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    """The config as YAML, in the schema's key order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def _registry_choices() -> dict[str, tuple[str, ...]]:
    """Settings whose valid values are defined where they are used: registry keys, OOV modes, preloads,
    samplers, presets and formats (the registries imported here, at validation: a typo fails before any data is read)."""
    from vqa.data.answers import OOV_MODES
    from vqa.data.features import PRELOADS
    from vqa.data.loader import SAMPLERS
    from vqa.data.sources import SOURCES
    from vqa.debias import DEBIAS
    from vqa.losses import LOSSES
    from vqa.models import MODELS

    return {
        "data.soft_targets_oov": OOV_MODES,
        "data.preload": PRELOADS,
        "data.sampler": SAMPLERS,
        "model.name": tuple(sorted(MODELS)),
        "train.loss": tuple(sorted(LOSSES)),
        "train.debias": ("none", *DEBIAS),
        "data.synth_preset": ("", *PRESETS),
        "data.source": tuple(SOURCES),
        "data.synth_format": tuple(FORMATS),
    }


def _flat(raw: dict, prefix: str = "") -> dict[str, Any]:
    """Every setting of nested dicts under its dotted key: {"train.lr": 1e-4, ...}."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        out |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
    return out


def validate(cfg: Config) -> None:
    """Every value in range and every name valid, before anything is read, generated or trained."""
    values = _flat(to_dict(cfg))
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"config: '{key}' is {value}; give a finite number")
    for key, allowed in {**CHOICES, **_registry_choices()}.items():
        if (value := values[key]) not in allowed:
            valid = ", ".join(repr(a) if a == "" else a for a in allowed)
            raise UserError(f"config: '{key}' is {shown(value)}; choose one of {valid}")
    for text, (check, keys) in RANGES.items():
        for key in keys.split():
            if not check(value := values[key]):
                raise UserError(f"config: '{key}' is {value}; it must be {text}")
    _check_model_and_schedule(cfg)
    check_name(cfg.name)
    dev = cfg.train.device
    if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
        raise UserError(f"config: 'train.device' is {shown(dev)}; choose auto, cpu, cuda or cuda:N")
    _check_splits(cfg)
    if cfg.train.debias != "none":
        from vqa.debias import check_loss

        check_loss(cfg.train.debias, cfg.train.loss)
    for key in SPLIT_TEMPLATES:
        _check_template(key, values[key])


def _check_model_and_schedule(cfg: Config) -> None:
    """The settings that constrain one another: MCAN's heads, Adam's betas, the learning-rate schedule."""
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
    if sorted(t.lr_decay_epochs) != t.lr_decay_epochs:
        raise UserError("config: 'train.lr_decay_epochs' must be increasing, e.g. [30, 60]")


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

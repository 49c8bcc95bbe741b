"""YAML files read safely and within bounds: configs and their `base:` chains, and override values.

yaml.SafeLoader constructs no Python objects; on top of it `_BoundedLoader` refuses nesting past
YAML_MAX_DEPTH and more than YAML_MAX_ALIASES aliases, so a small hostile file can neither exhaust the
stack nor expand into gigabytes. Every problem is one UserError line naming the file, line and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vqa.errors import UserError
from vqa.runs import shown


def _yaml_problem(e: yaml.YAMLError, text: str) -> str:
    """'<problem> at line L column C' from a YAML error (its problem_mark), on one line."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
    elif isinstance(getattr(e, "position", None), int):  # a reader error: a character YAML refuses
        before = text[: e.position]
        line, column = before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1
    else:
        return " ".join(problem.split())
    return " ".join(f"{problem} at line {line} column {column}".split())


YAML_MAX_DEPTH = 1000  # nesting levels of a config file or override
YAML_MAX_ALIASES = 100  # '*name' references: a config has a handful; chains of them expand exponentially


class TooLarge(yaml.YAMLError):
    """A document past the loader's bounds: refused, never read as a plain string."""


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses nesting past YAML_MAX_DEPTH and more than YAML_MAX_ALIASES aliases,
    so a small hostile file can neither exhaust the stack nor expand into gigabytes."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = self._aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > YAML_MAX_ALIASES:
                raise TooLarge(f"more than {YAML_MAX_ALIASES} aliases (*name)")
        self._depth += 1
        if self._depth > YAML_MAX_DEPTH:
            raise TooLarge(f"nested more than {YAML_MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def safe_yaml(text: str) -> Any:
    """The YAML document `text`: safe types only, within _BoundedLoader's bounds (else TooLarge)."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise TooLarge(f"nested too deep (over {YAML_MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()


def _load_yaml(text: str, where) -> Any:
    try:
        return safe_yaml(text)
    except yaml.YAMLError as e:
        raise UserError(f"{where}: not valid YAML ({_yaml_problem(e, text)}); fix the file") from None


def read_yaml(path: Path, seen: tuple[Path, ...] = (), missing: str = "") -> list[tuple[dict, str]]:
    """The layers of a config file, base first: [(mapping, source name), ...]. `missing` replaces the
    message for a missing top-level file."""
    if not path.is_file():
        if path.is_dir():
            raise UserError(f"{path}: is a folder, not a config file; pass a YAML file (configs/...)")
        raise UserError(missing or f"{path}: config file not found; pass an existing YAML file")
    if path.resolve() in seen:
        raise UserError(f"{path}: 'base:' chain loops back to this file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}: not UTF-8 text (byte {e.start}); is it a YAML config? pass a YAML file (configs/...)"
        ) from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the config file ({e.strerror}); check the path") from None
    raw = _load_yaml(text, path)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a config must be a mapping of keys")
    layers = []
    base = raw.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not base.strip():
            raise UserError(
                f"{path}: 'base' is {shown(base)}; it must be a relative path string naming the YAML file this one "
                "extends (e.g. base: ../base.yaml)"
            )
        layers = read_yaml(path.parent / base, (*seen, path.resolve()))
    return [*layers, (raw, str(path))]

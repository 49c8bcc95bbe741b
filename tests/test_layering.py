"""The import layering of DESIGN.md, checked with ast over every module of vqa/ (imports inside
functions included): each module belongs to one layer of LAYERS, may import only its own layer and
the layers ALLOWED names, and no chain of imports leads back to where it started.

Data knows no model and no loop; models know tensors, not files; the loop knows no command line;
tools use the layers below them, never the training loop; the benchmarks, which time it, go through
vqa.training.timing (Steps) and nothing else of vqa.training. Only
the commands (the training wiring, the tools, the benchmarks, the command line) read a config file or
build Datasets from one (vqa.config, vqa.data.build).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vqa"

# layer -> module prefixes (a module belongs to the layer of its longest matching prefix)
LAYERS = {
    "base": (
        "vqa.errors",
        "vqa.io",
        "vqa.device",
        "vqa.runs",
        "vqa.yaml_safe",
        "vqa.choices",
        "vqa.synth.presets",
        "vqa.synth.formats",
    ),  # errors, files, devices, run folders; the pure-Python name tables the command line offers
    "answers": (
        "vqa.data.keys",
        "vqa.data.answers",
        "vqa.data.sources.records",
    ),  # answer keys, the Record form
    "scoring": ("vqa.metrics", "vqa.scoring", "vqa.agreement"),
    "data": ("vqa.data",),  # sources, text, features, dataset, loader, target statistics
    "synth": ("vqa.synth",),
    "models": ("vqa.models",),
    "losses": ("vqa.losses",),
    "debias": ("vqa.debias",),  # a branch around any model, its loss, the training split's prior
    "config": ("vqa.config", "vqa.config_schema"),
    "build": ("vqa.data.build",),
    "loop": ("vqa.training.loop", "vqa.training.distributed"),
    "timing": ("vqa.training.timing",),  # the loop's steps for the benchmarks, the one way in besides fit
    "train": ("vqa.training",),  # fit (`vqa train`), checkpoint, optim, runlog: the loop's wiring
    "tools": (
        "vqa.evaluate",
        "vqa.evaluate_fast",
        "vqa.evaluate_cache",
        "vqa.predict",
        "vqa.attention",
        "vqa.data_stats",
        "vqa.features",
        "vqa.report",
    ),  # fmt: skip
    "bench": ("vqa.bench",),  # times the training loop itself (through timing) besides the tools' parts
    "cli": ("vqa.cli", "vqa.__main__", "vqa.bench.__main__"),
}
BELOW_TOOLS = {"base", "answers", "scoring", "data", "synth", "models", "losses", "debias", "config", "build"}
# layer -> the other layers it may import
ALLOWED = {
    "base": set(),
    "answers": {"base"},
    "scoring": {"base", "answers"},
    "data": {"base", "answers", "scoring"},
    "synth": {"base", "answers", "data"},  # writes datasets in the official formats
    "models": {"base"},
    "losses": {"base"},
    "debias": {"base", "answers", "models", "losses"},
    "config": {
        "base",
        "answers",
        "data",
        "losses",
        "debias",
        "models",
        "synth",
    },  # the registries' names, to validate a config
    "build": {"base", "answers", "scoring", "data", "synth", "config"},
    "loop": {"base", "answers", "scoring", "data", "models", "losses", "debias"},
    "train": BELOW_TOOLS | {"loop"},
    "tools": BELOW_TOOLS,
    "timing": BELOW_TOOLS | {"loop", "train"},
    "bench": BELOW_TOOLS | {"timing"},
    "cli": {"base"},  # it imports each verb's module by name when the verb runs (VERBS)
}
# Temporary, named exceptions to "no import cycles": (importer, imported) -> why it is still here; a pair
# listed here fails once it no longer holds (agreement <-> scoring went with vqa/data/keys.py).
TEMPORARY: dict[tuple[str, str], str] = {}


def modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The vqa modules `name` imports anywhere in its file (`from vqa import io` is vqa.io)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t not in known and "." in t:
                t = t.rpartition(".")[0]
            if t in known and t != name:
                found.add(t)
    return found


def layer_of(name: str) -> str:
    if name == "vqa":  # the package's own __init__ (empty)
        return "base"
    matches = [
        (len(p), layer) for layer, ps in LAYERS.items() for p in ps if name == p or name.startswith(p + ".")
    ]
    assert matches, f"{name} is in no layer of tests/test_layering.py's LAYERS: add it where it belongs"
    return max(matches)[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_import_follows_the_layers(graph):
    wrong = [
        f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
        for a, targets in graph.items()
        for b in sorted(targets)
        if layer_of(b) != layer_of(a) and layer_of(b) not in ALLOWED[layer_of(a)]
    ]
    assert not wrong, "\n".join(wrong)


def test_below_the_commands_nothing_reads_a_config_or_builds_data(graph):
    for name in ("vqa.losses", "vqa.models", "vqa.data.dataset", "vqa.training.loop"):
        assert name in graph  # the table above covers these; say it by name for the ones DESIGN names
    below = [
        a for a in graph if layer_of(a) not in ("config", "build", "train", "timing", "tools", "bench", "cli")
    ]
    wrong = [f"{a} imports {b}" for a in below for b in graph[a] & {"vqa.config", "vqa.data.build"}]
    assert not wrong, "\n".join(wrong)


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first == last), or None; TEMPORARY arrows left out."""
    edges = {a: sorted(b for b in bs if (a, b) not in TEMPORARY) for a, bs in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycles(graph):
    found = cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(found)
    for a, b in TEMPORARY:  # an exception that no longer holds must go
        assert b in graph[a], f"{a} no longer imports {b}: delete the TEMPORARY entry"


def test_the_checker_finds_what_it_should(monkeypatch):
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
    monkeypatch.setitem(TEMPORARY, ("b", "a"), "an exception: the arrow is left out")
    assert cycle({"a": {"b"}, "b": {"a"}}) is None
    known = modules()
    assert imports("vqa.training.checkpoint", known["vqa.training.checkpoint"], known) >= {
        "vqa.io",
        "vqa.config",
    }
    assert "vqa.losses" in imports("vqa.config", known["vqa.config"], known)  # inside a function
    assert layer_of("vqa.data.build") == "build" and layer_of("vqa.data.dataset") == "data"
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("vqa.newcomer")  # a new top-level module must be placed in the table

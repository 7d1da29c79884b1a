"""The package's shape: layers point down only, no import cycle, no module over 600 lines.

Every ``import olmotrain...`` in every module counts, those inside functions too (a lazy import
is still a dependency). Layers, bottom to top: errors, console, paths, squeue and machine;
metrics; chinchilla; confidence; config, model, data, eval, plan, train, launch; ladder, export,
generate and evaluate; mixture; then the command-line entry points.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "olmotrain"
MAX_LINES = 600

LAYERS = [
    (
        "olmotrain.errors",
        "olmotrain.console",
        "olmotrain.paths",
        "olmotrain.squeue",
        "olmotrain.machine",
    ),
    ("olmotrain.metrics",),  # names only: below everything that logs or reads metrics
    ("olmotrain.chinchilla",),
    ("olmotrain.confidence",),  # statistics only: how sure a number is
    ("olmotrain.config",),
    ("olmotrain.model",),
    ("olmotrain.data",),
    ("olmotrain.eval",),
    ("olmotrain.plan",),
    ("olmotrain.train",),
    ("olmotrain.launch",),
    ("olmotrain.ladder", "olmotrain.export", "olmotrain.generate", "olmotrain.evaluate"),
    ("olmotrain.mixture",),  # a ladder's decision and fit machinery, reused
]
ENTRY_POINTS = len(LAYERS)
"""Modules in no layer above (the ``olmotrain`` command, ``python -m olmotrain.X`` commands) sit on top."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    if module == "olmotrain":  # the package itself: its __init__ holds only the version
        return 0
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return ENTRY_POINTS


def imports(module: str) -> set[str]:
    """The olmotrain modules ``module`` imports, anywhere in its body."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from olmotrain.x import y``: y is a module when there is one by that name.
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                for a in node.names
            ]
        found |= {n for n in names if n.split(".")[0] == "olmotrain" and n in MODULES}
    found.discard(module)
    return found


def test_every_module_is_in_a_layer_or_is_an_entry_point():
    top = {m for m in MODULES if layer(m) == ENTRY_POINTS}
    # A new module in no layer lands here and fails the test until it is given one.
    assert top == {
        "olmotrain.commands",
        "olmotrain.prepare",
        "olmotrain.status",
        "olmotrain.embedded",
    }


def test_every_layer_names_modules_that_exist():
    ghosts = [p for prefixes in LAYERS for p in prefixes if p not in MODULES]
    assert not ghosts, f"layers name modules that do not exist: {ghosts}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_only(module):
    upward = sorted(i for i in imports(module) if layer(i) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports higher layers: {upward}"


def test_no_import_cycles():
    graph = {m: imports(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n) :] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_cycle_check_can_fail():
    """The walker sees function-level imports (a cycle hidden in a function is still one)."""
    assert "olmotrain.data.embedded" in imports("olmotrain.train.startup")
    assert "olmotrain.train.trainer" in imports("olmotrain.launch.local")  # inside rank_main


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_600_lines(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"

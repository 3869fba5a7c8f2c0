"""The folder layout is the pipeline (docs/extending.md): each subpackage of clgraft/ is a stage, and a module imports
only from its own stage or one below it — never up, never in a circle (lazy imports inside functions included).
These tests walk every module's imports with `ast` and fail on an upward import or an import circle; the checks are
themselves tested on a small package with a planted circle and a planted upward import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import clgraft

BASE = ("errors", "config")
"""Top-level modules every stage may use: the one exception type and the run configuration. They import nothing
else of clgraft."""
STAGES = (
    "io",
    "data",
    "model",
    "training",
    "grafting",
    "methods",
    "metrics",
    "runs",
    "analysis",
    "results",
    "sweeps",
    "site",
)
"""The stages, lowest first: a module may import its own stage and those before it."""
FACES = ("cli", "api")
"""Top-level faces: the CLI and the Python API use any stage; nothing of clgraft imports them."""


def module_name(path: Path, root: Path) -> str:
    """'pkg.sub.mod' for root/sub/mod.py, 'pkg.sub' for root/sub/__init__.py (root is the package folder)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside `if TYPE_CHECKING:` blocks (imports there never run)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(n) for n in ast.walk(node)}
    return inside


def imports(root: Path, runtime_only: bool = False) -> dict[str, set[str]]:
    """Every module of the package at `root` → the modules of that package it imports, wherever in the file (module
    level or inside a function); `from pkg.a import b` counts as importing pkg.a.b when that is a module, else pkg.a.
    With runtime_only, imports under `if TYPE_CHECKING:` are left out."""
    package = root.name
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree) if runtime_only else set()
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                }
        graph[module_name(path, root)] = {m for m in found if m.split(".")[0] == package and m in modules}
    return graph


def stage(module: str) -> str:
    """The stage (or base module or face) a module belongs to: the first name under the package; '' for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a → b' for every import that breaks the layering: a stage importing a later stage or a face, a base module
    importing a stage, anything importing a face, or a module in no known place."""
    order = {s: i for i, s in enumerate(STAGES)}
    bad = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            s, t = stage(source), stage(target)
            if t == "" or s == t or (t in BASE and s not in BASE) or (s in FACES and t not in FACES):
                continue
            if t in BASE and s in BASE:
                continue
            if s in order and t in order and order[t] <= order[s]:
                continue
            bad.append(f"{source} → {target}")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of a module graph: its strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


PACKAGE = Path(clgraft.__file__).parent


def test_no_module_imports_a_later_stage():
    assert upward_imports(imports(PACKAGE)) == []


def test_no_import_circle_lazy_imports_included():
    assert circles(imports(PACKAGE, runtime_only=True)) == []


def test_every_module_sits_in_a_stage_or_is_a_base_module_or_a_face():
    places = {*BASE, *STAGES, *FACES, ""}
    assert sorted({stage(m) for m in imports(PACKAGE)} - places) == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A package laid out like clgraft with one upward import (data → runs) and one circle through a lazy import."""
    return _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "errors.py": "",
            "data/__init__.py": "",
            "data/loading.py": "from pkg.errors import X\n\ndef f():\n    from pkg.runs.runner import Runner\n",
            "runs/__init__.py": "",
            "runs/runner.py": "from pkg.data.loading import f\n",
            "methods/__init__.py": "",
            "methods/a.py": "from pkg.methods import b\n",
            "methods/b.py": "def g():\n    import pkg.methods.a\n",
        },
    )


def test_the_checks_catch_a_planted_upward_import_and_circle(planted: Path):
    graph = imports(planted)
    assert upward_imports(graph) == ["pkg.data.loading → pkg.runs.runner"]
    assert circles(imports(planted, runtime_only=True)) == [
        ["pkg.data.loading", "pkg.runs.runner"],
        ["pkg.methods.a", "pkg.methods.b"],
    ]


def test_imports_under_type_checking_do_not_make_a_circle_but_must_still_point_down(tmp_path: Path):
    root = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "model/__init__.py": "",
            "model/headed.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.methods.base import M\n",
            "methods/__init__.py": "",
            "methods/base.py": "from pkg.model.headed import H\n",
        },
    )
    assert circles(imports(root, runtime_only=True)) == []
    assert upward_imports(imports(root)) == ["pkg.model.headed → pkg.methods.base"]

"""The layering of docs/architecture.md, checked by walking every import (module level and inside functions):
core ← train / serve / evalsuite / ui ← app, one namespace, no cycle among the packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# Folder → package name (pyproject's package-dir).
FOLDERS = {"k15": "k15", "train": "k15.train", "serve": "k15.serve", "evalsuite": "k15.evalsuite", "ui": "k15.ui"}
COMPONENTS = ("k15.train", "k15.serve", "k15.evalsuite", "k15.ui")
APP = "k15.app"


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def layer(module: str) -> str:
    """``app``, one of the components, or ``core``; ``k15.__main__`` is an entry script of the app layer."""
    if module == APP or module.startswith(APP + ".") or module == "k15.__main__":
        return "app"
    return next((c for c in COMPONENTS if module == c or module.startswith(c + ".")), "core")


def edges() -> set[tuple[str, str, str]]:
    """(importing module, its layer, imported layer) for every import of a project module."""
    known = modules()
    found = set()
    for module, path in known.items():
        for name in imports(path):
            if name in known or any(name.startswith(k + ".") for k in known):
                found.add((module, layer(module), layer(name)))
    return found


def test_the_core_imports_no_component_and_no_component_imports_the_app() -> None:
    wrong = sorted((m, to) for m, frm, to in edges()
                   if (frm == "core" and to != "core") or (frm in COMPONENTS and to == "app"))  # fmt: skip
    assert not wrong, f"imports against the data flow: {wrong}"


def test_no_import_cycle_among_the_packages() -> None:
    graph: dict[str, set[str]] = {}
    for _, frm, to in edges():
        if frm != to:
            graph.setdefault(frm, set()).add(to)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    cycles = sorted(p for p in graph if reaches(p, p, set()))
    assert not cycles, f"packages in an import cycle: {cycles} ({graph})"
    assert graph.get("k15.train", set()) <= {"core"}, "train comes first in the data flow"


def test_the_walk_sees_the_real_imports() -> None:
    """Guard against a walk that finds nothing: known edges of each kind are present."""
    found = {(m, to) for m, _, to in edges()}
    assert ("k15.app.cli", "k15.serve") in found and ("k15.train.rl.rewards", "core") in found
    assert ("k15.ui.launch", "k15.serve") in found and ("k15.evalsuite.runner", "k15.serve") in found


def test_only_the_k15_namespace_is_installed(tmp_path: Path) -> None:
    """From outside the checkout, the generic folder names do not import; their k15 names do."""
    code = ("import importlib.util as u, sys\n"
            "missing = [n for n in ('train', 'serve', 'ui', 'evalsuite') if u.find_spec(n) is not None]\n"
            "import k15.train.rl.trainer, k15.serve.stack, k15.evalsuite.runner, k15.ui.app, k15.app.cli\n"
            "sys.exit(f'importable: {missing}' if missing else 0)\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]

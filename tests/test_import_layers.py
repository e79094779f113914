"""The import layering of crsdata (.importlinter) holds, and the import graph has at most one circle, of at most
three modules: a new circle or an upward import fails here instead of waiting for a review."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")


def test_lint_imports_keeps_every_contract() -> None:
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert tool, "import-linter is installed but its lint-imports command is not on the PATH"
    done = subprocess.run([tool, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _circles(exclude_type_checking: bool) -> list[list[str]]:
    """Strongly connected components of more than one module in crsdata's import graph (grimp's)."""
    import grimp

    graph = grimp.build_graph(
        "crsdata", include_external_packages=False, exclude_type_checking_imports=exclude_type_checking, cache_dir=None
    )
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm; crsdata's graph is far too shallow to need iteration
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in order:
            visit(module)
    return found


def test_at_most_one_import_circle_of_at_most_three_modules() -> None:
    """Imports at run time (function-level ones included); annotations under TYPE_CHECKING are not imports."""
    circles = _circles(exclude_type_checking=True)
    assert len(circles) <= 1 and all(len(c) <= 3 for c in circles), circles

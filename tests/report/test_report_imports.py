"""The report modules import each other at module level only, one way (no cycle), and never a
private name of another module."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import hemoedge.report

REPORT = Path(hemoedge.report.__file__).parent


def _imports(path: Path) -> list[tuple[ast.ImportFrom, bool]]:
    """(import node, at module level) for every `from hemoedge.report... import` in a file."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    return [(n, id(n) in top) for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("hemoedge.report")]


def test_no_function_level_or_private_imports_between_report_modules():
    for path in sorted(REPORT.glob("*.py")):
        for node, top in _imports(path):
            assert top, f"{path.name}:{node.lineno}: function-level import of {node.module}"
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name} imports private {private} from {node.module}"


def test_report_imports_form_a_dag():
    deps = {p.stem: {n.module.rsplit(".", 1)[-1] for n, _ in _imports(p)}
            for p in REPORT.glob("*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(m: str, chain: tuple[str, ...]) -> None:
        assert m not in chain, f"import cycle: {' -> '.join((*chain, m))}"
        if m not in done:
            for d in deps.get(m, ()):
                visit(d, (*chain, m))
            done.add(m)

    for m in deps:
        visit(m, ())
    for m in deps:  # each imports on its own
        importlib.import_module(f"hemoedge.report.{m}")

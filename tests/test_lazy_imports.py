"""Importing torch and open_clip takes seconds, so the command line, the core, the server and the
registry import neither when they are imported, directly or through any module they import:
model code imports them inside the functions that build a model, or for type hints under
``TYPE_CHECKING``. Read from the package's own imports; what a text search really imports is
checked in a fresh process in tests/core/test_text_query_path.py."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "crossmodal"
HEAVY = {"torch", "open_clip", "torchaudio", "torchvision", "librosa", "transformers"}
LIGHT = ["crossmodal.cli", "crossmodal.core", "crossmodal.server", "crossmodal.demo", "crossmodal.aligner",
         "crossmodal.aligner.registry", "crossmodal.aligner.checkpoint", "crossmodal.aligner.text_only",
         "crossmodal.search.planner"]


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(path): path for path in PACKAGE.rglob("*.py")}


def _import_time_imports(body: list[ast.stmt], module: str, package: bool) -> list[str]:
    """Every module an import runs when ``module`` is imported: its top level, and inside
    top-level ``try`` and ``if`` blocks, except ``if TYPE_CHECKING:``."""
    found: list[str] = []
    for node in body:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + package]
                base = ".".join([*parts, node.module] if node.module else parts)
            found += [base, *[f"{base}.{alias.name}" for alias in node.names]]
        elif isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                found += _import_time_imports(node.body, module, package)
                found += _import_time_imports(node.orelse, module, package)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                found += _import_time_imports(block, module, package)
    return found


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def heavy_chain(start: str) -> list[str] | None:
    """The chain of imports from ``start`` to a heavy library, or None when there is none."""
    seen: set[str] = set()
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        name, chain = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        path = MODULES[name]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target in _import_time_imports(tree.body, name, path.name == "__init__.py"):
            if target.split(".")[0] in HEAVY:
                return [*chain, target]
            stack += [(m, [*chain, m]) for m in _with_parents(target) if m in MODULES and m not in seen]
    return None


def test_the_light_entry_points_import_no_torch():
    chains = {name: heavy_chain(name) for name in LIGHT}
    assert {name: chain for name, chain in chains.items() if chain} == {}


def test_the_check_sees_a_heavy_import():
    assert heavy_chain("crossmodal.aligner.model") is not None

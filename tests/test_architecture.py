"""The package's layers, read from its own imports: every import points down the stack (or
stays inside its package), and front ends reach nothing below the core API. See
docs/architecture.md for the picture."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "crossmodal"

# Which part of the stack each module belongs to (by its longest matching prefix), and each
# part's layer. An import may only go to a lower layer, or stay inside the part it is in;
# parts on the same layer are siblings and must not import each other.
PARTS: dict[str, str] = {
    "crossmodal": "base", "crossmodal.errors": "base", "crossmodal.settings": "base", "crossmodal.media": "base",
    "crossmodal.items": "base",
    "crossmodal.aligner": "aligner", "crossmodal.ingest": "ingest", "crossmodal.storage": "storage",
    "crossmodal.search": "search", "crossmodal.evaluation": "evaluation",
    "crossmodal.recommend": "recommend", "crossmodal.core": "core",
    "crossmodal.training": "training", "crossmodal.server": "server", "crossmodal.web": "server",
    "crossmodal.demo": "demo", "crossmodal.cli": "cli", "crossmodal.__main__": "cli",
}
LAYERS: dict[str, int] = {
    "base": 0, "aligner": 1, "ingest": 2, "storage": 2, "search": 3, "evaluation": 3, "recommend": 3, "core": 4,
    "training": 4, "server": 5, "demo": 5, "cli": 6,
}
FRONT_ENDS = {"server", "demo", "cli"}
BELOW_THE_CORE = {"aligner", "ingest", "storage", "search", "recommend"}

# Imports allowed against the rules above, each with the reason docs/architecture.md gives.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """The part of the stack a module belongs to."""
    names = module.split(".")
    for depth in range(len(names), 0, -1):
        part = PARTS.get(".".join(names[:depth]))
        if part is not None:
            return part
    raise AssertionError(f"{module} is in no part; add it to PARTS and to docs/architecture.md")


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported crossmodal module, line) for every import in a file, at any depth (imports
    inside functions count too)."""
    module = _module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, node.lineno))
    return [(name, line) for name, line in found if name == "crossmodal" or name.startswith("crossmodal.")]


SOURCES = sorted(PACKAGE.rglob("*.py"))


def violations(path: Path) -> list[str]:
    source = part_of(_module_name(path))
    out = []
    for target_module, line in imports(path):
        target = part_of(target_module)
        if target == source or (source, target) in EXCEPTIONS:
            continue
        where = f"{path.relative_to(PACKAGE.parent)}:{line}: {source} imports {target_module}"
        if LAYERS[target] >= LAYERS[source]:
            out.append(f"{where} (layer {LAYERS[target]} is not below {LAYERS[source]})")
        elif source in FRONT_ENDS and target in BELOW_THE_CORE:
            out.append(f"{where} (a front end reaches past the core API)")
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_point_down_the_stack(path):
    assert violations(path) == []


def test_the_checker_catches_an_upward_import(tmp_path, monkeypatch):
    """A storage module importing the planner, and the server importing the catalog, are both
    reported: the test above cannot pass by seeing nothing."""
    fake = PACKAGE / "storage" / "_probe_upward.py"
    fake.write_text("from crossmodal.search.planner import Planner\n")
    front = PACKAGE / "server" / "_probe_reach.py"
    front.write_text("def f():\n    from crossmodal.storage.catalog import Catalog\n")
    try:
        assert "layer 3 is not below 2" in violations(fake)[0]
        assert "reaches past the core" in violations(front)[0]
    finally:
        fake.unlink()
        front.unlink()


def test_every_exception_is_written_down():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    for (source, target), reason in EXCEPTIONS.items():
        assert f"{source} → {target}" in doc and reason in doc


def test_modules_stay_readable():
    """No module over about 400 lines without a reason written at its top."""
    long = []
    for path in SOURCES:
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > 420 and "Longer than 400 lines" not in "\n".join(lines[:30]):
            long.append(f"{path.relative_to(PACKAGE.parent)}: {len(lines)} lines")
    assert long == []

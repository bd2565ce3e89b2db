"""Imports point one way (docs/architecture.md): every module's imports, at module level and
inside functions, against the table of which package may import which."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tastemaker"

FOUNDATION = {"errors", "ranking", "artifacts", "threads"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "threads": set(),
    "ranking": set(),
    "artifacts": {"errors"},
    "data": FOUNDATION,
    "models": FOUNDATION | {"data"},
    "playlists": FOUNDATION | {"data", "models"},
    "evaluation": FOUNDATION | {"data", "models", "playlists"},
    "tuning": FOUNDATION | {"data", "models", "playlists", "evaluation"},
    "engines": FOUNDATION | {"data", "models"},
    "serving": FOUNDATION | {"data", "models", "playlists", "(root)"},
    "cli": None,  # everything
    "(root)": set(),
}
# Modules the service must never load: the dump readers and the ingest pipeline.
SERVING_FORBIDDEN = ("tastemaker.data.readers", "tastemaker.data.ingest")


def _package(relative: Path) -> str:
    first = relative.parts[0]
    if first == "__init__.py":
        return "(root)"
    return first.removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, name) for line, name in found if name.split(".")[0] == "tastemaker"]


def _target(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def test_the_table_names_every_package():
    packages = {_package(p.relative_to(SRC)) for p in SRC.rglob("*.py")}
    assert packages <= set(ALLOWED), sorted(packages - set(ALLOWED))


def test_imports_point_one_way():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        source = _package(path.relative_to(SRC))
        allowed = ALLOWED[source]
        for line, module in _imports(path):
            target = _target(module)
            if target == source or allowed is None:
                continue
            if target not in allowed:
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_no_module_imports_another_modules_private_name():
    """A name starting with ``_`` is its module's own; shared code gets a public name."""
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            if node.level == 0 and node.module.split(".")[0] != "tastemaker":
                continue
            private = [
                a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")
            ]
            if private:
                wrong.append(f"{path.relative_to(SRC)}:{node.lineno} imports {', '.join(private)}")
    assert not wrong, "private names shared across modules:\n" + "\n".join(wrong)


def test_serving_never_imports_the_dump_readers():
    wrong = [
        f"{path.relative_to(SRC)}:{line} imports {module}"
        for path in sorted((SRC / "serving").rglob("*.py"))
        for line, module in _imports(path)
        if module.startswith(SERVING_FORBIDDEN)
    ]
    assert not wrong, wrong


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The checker itself: a models module importing serving is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tastemaker.serving.app import create_app\n")
    assert [_target(m) for _, m in _imports(bad)] == ["serving"]
    assert "serving" not in ALLOWED["models"]

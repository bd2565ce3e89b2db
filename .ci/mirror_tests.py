#!/usr/bin/env python3
"""Tests mirror src/ (docs/architecture.md, "Where tests go"): a change's tests are found by path.

``tests/PACKAGE/test_*.py`` tests ``src/tastemaker/PACKAGE/``; ``tests/`` itself holds the tests
of the top-level modules (``ranking.py``, ``threads.py``, ...) and the cross-cutting ones named in
``ROOT``. A test file belongs with the package it tests most:

1. ``PLACED`` names its folder (where the rules below mislead, saying why); else
2. ``test_X.py`` where ``X`` is a module or package in one place of src/tastemaker: there
   (``test_splits.py`` -> ``tests/evaluation/``; ``test_threads.py`` -> ``tests/``); else
3. the package whose names its tests use most: each use, inside the ``test_*`` functions, of
   a name imported from ``tastemaker.PACKAGE...`` counts (not those of ``TOOLS``), each
   ``run_cli`` / ``invoke_cli`` call counts for ``cli``; ties go to the count over the whole
   file (fixtures included), then to the name.

    python .ci/mirror_tests.py          # misplaced test files, each with the folder it belongs in
    python .ci/mirror_tests.py --move   # ``git mv`` them there

Exit status 1 when a file is misplaced (0 after ``--move``). ``tests/test_architecture.py`` runs
the same check.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
SRC = REPO / "src" / "tastemaker"

# Test files that stay in tests/ although they are not about a top-level module: the project
# as a whole, or several layers at once.
ROOT = {
    "test_architecture.py": "the import rule and module sizes, over all of src/",
    "test_readme.py": "the README's commands, end to end",
}
# Where the rules below mislead: the folder a file goes in, and why.
PLACED = {
    "test_als_fold_in.py": ("models", "models/als: the fold-in solve against implicit's"),
    "test_browser.py": ("serving", "the service's page in Chromium"),
    "test_cli_help.py": ("cli", "every command's help"),
    "test_loadgen.py": ("serving", "bench/loadgen.py, which measures the service"),
    "test_model_loading.py": ("models", "models/validation: malformed model files refused"),
    "test_models_quality.py": ("models", "the classic models' quality floors"),
    "test_name_search.py": ("data", "data/names' matcher on real names, as CLI and service use it"),
    "test_playlist_page.py": ("serving", "the service's playlist page in Chromium"),
    "test_playlist_service.py": ("serving", "the service's playlist routes"),
    "test_tag_page.py": ("serving", "the service's page started from a tag, in Chromium"),
    "test_tags_model.py": ("models", "the tags content model (models/tags.py)"),
}
# Modules every test uses as tools, not as its subject: the error types a test expects, and
# tastemaker.testing's planted data and checks. Their names do not count.
TOOLS = {"errors", "testing"}
# The helpers that every run_cli / invoke_cli call stands for: the command line.
CLI_HELPERS = {"run_cli", "invoke_cli"}


def packages() -> set[str]:
    """The folders tests may go in: src/tastemaker's subpackages."""
    return {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}


def test_files() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def scores(path: Path, tests_only: bool = True) -> Counter[str]:
    """How much a test file (its ``test_*`` functions, or all of it) uses each part of
    tastemaker: a subpackage's name, or "" for the top-level modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    subpackages = packages()
    owner: dict[str, str] = {}  # a name bound by an import -> the part it came from
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "tastemaker":
                continue
            if len(parts) > 1 and parts[1] in TOOLS:
                continue
            for alias in node.names:
                if len(parts) == 1 and alias.name in TOOLS:
                    continue
                # `from tastemaker import data` names the package itself
                owner[alias.asname or alias.name] = _part([*parts[1:], alias.name], subpackages)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "tastemaker" and alias.asname and not set(parts[1:2]) & TOOLS:
                    owner[alias.asname] = _part(parts[1:], subpackages)
    counts: Counter[str] = Counter()
    for node in _in_tests(tree) if tests_only else ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in owner:
                counts[owner[node.id]] += 1
            elif node.id in CLI_HELPERS:
                counts["cli"] += 1
        elif (  # tastemaker.models.als.ALS written out: its innermost attribute
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "tastemaker"
            and node.attr not in TOOLS
        ):
            counts[_part([node.attr], subpackages)] += 1
    return counts


def _part(module: list[str], subpackages: set[str]) -> str:
    """The part of tastemaker a module path below ``tastemaker`` is in ("" for the top level)."""
    return module[0] if module and module[0] in subpackages else ""


def _in_tests(tree: ast.Module) -> list[ast.AST]:
    """The nodes inside the ``test_*`` functions (fixtures and helpers are set-up: they build
    data with the layers below the one under test)."""
    tests = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    ]
    return [inner for test in tests for inner in ast.walk(test)]


def named_module(name: str) -> str | None:
    """The folder for ``test_X.py`` when ``X`` names modules or packages in one folder of
    src/tastemaker only ("" for a top-level module), else None."""
    stem = name.removeprefix("test_").removesuffix(".py")
    parts = [
        path.relative_to(SRC).parts
        for path in [*SRC.rglob(f"{stem}.py"), *SRC.rglob(f"{stem}/__init__.py")]
    ]
    found = {part[0] if len(part) > 1 else "" for part in parts}
    return found.pop() if len(found) == 1 else None


def belongs_in(path: Path) -> tuple[str, str]:
    """The folder under tests/ a test file belongs in ("" for tests/ itself), and why."""
    name = path.name
    if name in ROOT:
        return "", f"ROOT: {ROOT[name]}"
    if name in PLACED:
        return PLACED[name][0], f"PLACED: {PLACED[name][1]}"
    named = named_module(name)
    if named is not None:
        return named, "named after a module of src/tastemaker/" + (named or ".")
    in_tests, whole = scores(path), scores(path, tests_only=False)
    if not whole:
        return "", "uses no tastemaker names"
    best = max(sorted(whole), key=lambda part: (in_tests[part], whole[part]))
    counts = ", ".join(f"{part or '(top-level)'} {n}" for part, n in in_tests.most_common(3))
    return best, f"uses in its tests: {counts or 'none'}; in the whole file: {dict(whole)}"


def misplaced() -> list[tuple[Path, Path, str]]:
    """(where a test file is, where it belongs, why) for every test file not where it belongs."""
    wrong = []
    for path in test_files():
        folder, why = belongs_in(path)
        target = TESTS / folder / path.name
        if path != target:
            wrong.append((path, target, why))
    return wrong


def duplicate_names() -> list[str]:
    """Test files sharing a basename: pytest (rootdir-relative, no __init__.py) cannot tell
    them apart."""
    seen = Counter(p.name for p in test_files())
    return sorted(name for name, n in seen.items() if n > 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--move", action="store_true", help="git mv misplaced files")
    args = parser.parse_args(argv)
    wrong = misplaced()
    for path, target, why in wrong:
        where, to = path.relative_to(REPO), target.relative_to(REPO)
        if args.move:
            target.parent.mkdir(exist_ok=True)
            subprocess.run(["git", "mv", str(where), str(to)], cwd=REPO, check=True)
            print(f"moved {where} -> {to}")
        else:
            print(f"{where}: belongs in {to.parent}/ ({why})")
    for name in duplicate_names():
        print(f"two test files named {name}: rename one")
    if duplicate_names():
        return 1
    return 0 if args.move or not wrong else 1


if __name__ == "__main__":
    sys.exit(main())

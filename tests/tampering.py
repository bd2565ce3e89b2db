"""Malformed artifacts with valid checksums, for the loading and service tests (issue 13).

A checksum catches accidental corruption, not content that is wrong: these helpers copy a
saved directory, change its content, and write every manifest's checksums anew, as another
version, a bug or a person could.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tastemaker.artifacts import MANIFEST, file_sha256, save_arrays


def rehash(directory: Path) -> None:
    """Rewrite the ``files`` of every manifest under ``directory`` (deepest first), keeping
    every other field as it is."""
    manifests = sorted(directory.rglob(MANIFEST), key=lambda p: -len(p.parts))
    for path in manifests:
        root = path.parent
        try:
            manifest = json.loads(path.read_text())
        except (ValueError, RecursionError):
            continue  # made unreadable on purpose
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            continue  # a manifest the test made malformed on purpose
        manifest["files"] = {
            p.relative_to(root).as_posix(): file_sha256(p)
            for p in sorted(root.rglob("*"))
            if p.is_file() and p != path
        }
        path.write_text(json.dumps(manifest))


def tampered(source: Path, target: Path, change: Callable[[Path], None]) -> Path:
    """A copy of ``source`` changed by ``change(copy)``, with checksums that match again."""
    shutil.copytree(source, target)
    change(target)
    rehash(target)
    return target


def edit_manifest(change: Callable[[dict], None], where: str = "") -> Callable[[Path], None]:
    """A ``change`` that edits the (parsed) manifest of ``where`` inside the directory."""

    def apply(directory: Path) -> None:
        path = directory / where / MANIFEST
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))

    return apply


def edit_arrays(file: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    """A ``change`` that edits the arrays of one ``.npz`` in place (``change(arrays)``)."""

    def apply(directory: Path) -> None:
        with np.load(directory / file) as npz:
            arrays = {k: npz[k] for k in npz.files}
        change(arrays)
        save_arrays(directory / file, **arrays)

    return apply

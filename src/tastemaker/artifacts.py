"""Directories written atomically, described by a manifest, and loaded without pickle.

Every artifact tastemaker writes (ingested data, trained models, reports) is a directory with a
``manifest.json`` naming its kind and format version and the SHA-256 of every file in it.
Arrays live in ``.npz`` files read with ``allow_pickle=False``; tables live in Parquet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tastemaker.errors import ArtifactError

MANIFEST = "manifest.json"


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling directory that becomes ``path`` only if the block succeeds.

    On any exception the temporary directory is removed, so no half-written output is left.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise ArtifactError(f"{target}: already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            # Move the old one aside first so the swap leaves either old or new, never neither.
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file under a temporary name and rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | Path, kind: str, format_version: int, **fields: Any) -> dict:
    """Write ``manifest.json`` with kind, version, the given fields and checksums of all files."""
    directory = Path(directory)
    files = {
        str(p.relative_to(directory)): file_sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"kind": kind, "format_version": format_version, **fields, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str))
    return manifest


def read_manifest(
    directory: str | Path,
    kind: str | None = None,
    max_version: int | None = None,
    verify: bool = True,
) -> dict:
    """Read and check a manifest: kind, format version and (optionally) every file's checksum."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: not a directory")
    if not path.is_file():
        raise ArtifactError(f"{directory}: no {MANIFEST}; not a tastemaker directory")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or "kind" not in manifest:
        raise ArtifactError(f"{path}: not a tastemaker manifest")
    if kind is not None and manifest["kind"] != kind:
        raise ArtifactError(f"{directory}: holds a {manifest['kind']!r}, expected a {kind!r}")
    version = manifest.get("format_version")
    if max_version is not None and (not isinstance(version, int) or version > max_version):
        raise ArtifactError(
            f"{directory}: format version {version} is newer than this tastemaker reads "
            f"({max_version}); upgrade tastemaker"
        )
    if verify:
        for name, expected in manifest.get("files", {}).items():
            file = directory / name
            if not file.is_file():
                raise ArtifactError(f"{directory}: file {name} listed in the manifest is missing")
            if file_sha256(file) != expected:
                raise ArtifactError(f"{file}: checksum mismatch; the directory is corrupted")
    return manifest


def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """Save named arrays to ``.npz`` (uncompressed: loading speed matters more than size)."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; it would need pickle")
    np.savez(path, **arrays)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` without pickle."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read arrays ({exc})") from None

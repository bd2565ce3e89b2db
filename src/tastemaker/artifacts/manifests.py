"""Manifests and the JSON tastemaker writes: what a directory or file says it is (its kind),
the SHA-256 of every file a directory holds, strict reading of both."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from tastemaker.errors import ArtifactError, UsageError

MANIFEST = "manifest.json"
# A manifest lists files and a few fields; anything larger is not one (and is not read whole).
MAX_MANIFEST_BYTES = 16 << 20
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# The files whose "kind" says what a directory holds: the manifest, or a synthetic dump's
# summary (a manifest would make the dump look like an ingested directory to the readers).
KIND_FILES = (MANIFEST, "synth.json")
# What a JSON file tastemaker writes says in "written_by", beside its "kind".
WRITTEN_BY = "tastemaker"
# JSON outputs are small; a larger file is not one of them (and is not read to find out).
MAX_JSON_BYTES = 16 << 20


def read_small_json(path: Path) -> Any:
    """A small JSON file's content; None when it is missing, large, unreadable or not JSON."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            return None
        return json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def output_kind(path: str | Path) -> str | None:
    """The kind of tastemaker output at ``path``: a directory's (its manifest's ``kind``, or
    a synthetic dump's) or a JSON file's; None for anything tastemaker did not write."""
    path = Path(path)
    if path.is_dir():
        for name in KIND_FILES:
            content = read_small_json(path / name)
            if not isinstance(content, dict):
                continue
            kind = content.get("kind")
            if kind is None and content.get("generator") == "tastemaker synth":
                kind = "synth"  # a dump written before synth.json named its kind
            if isinstance(kind, str):
                return kind
        return None
    content = read_parquet_tag(path) if is_parquet(path) else read_small_json(path)
    if isinstance(content, dict) and content.get("written_by") == WRITTEN_BY:
        kind = content.get("kind")
        return kind if isinstance(kind, str) else None
    return None


# A Parquet file tastemaker writes says what it is in this key of its footer's metadata.
PARQUET_TAG = b"tastemaker"


def is_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return path.is_file() and fh.read(4) == b"PAR1"
    except OSError:
        return False


def read_parquet_tag(path: Path) -> Any:
    """The JSON under ``PARQUET_TAG`` in a Parquet file's footer; None if there is none."""
    # pyarrow only when a Parquet output is looked at: every command would pay its import.
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path).metadata or {}
        tag = metadata.get(PARQUET_TAG)
        return json.loads(tag) if tag is not None and len(tag) <= MAX_JSON_BYTES else None
    except Exception:  # an untrusted file: anything pyarrow cannot read is not ours
        return None


def parquet_tag(kind: str, **fields: Any) -> dict[bytes, bytes]:
    """Footer metadata that makes a Parquet file a tastemaker output of ``kind`` (for
    ``output_kind``: a later write of the same kind may replace it)."""
    return {PARQUET_TAG: tagged_json(fields, kind)}


def _walk(directory: Path) -> Iterator[Path]:
    """Every path under ``directory``; UsageError if part of it cannot be read."""
    try:
        yield from directory.rglob("*")
    except OSError as exc:
        raise UsageError(f"{directory}: cannot be read ({exc.strerror})") from None


def unlisted_files(directory: Path) -> list[str]:
    """Files of a directory that its manifest does not list (added by someone else)."""
    manifest = read_small_json(directory / MANIFEST)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return []
    found = []
    for path in _walk(directory):
        name = path.relative_to(directory).as_posix()
        if name == MANIFEST or name in files or path.is_dir():
            continue
        if path.name == MANIFEST and output_kind(path.parent) is not None:
            continue  # a nested tastemaker folder's own manifest (a model's data/)
        found.append(name)
    return sorted(found)


def tagged_json(content: dict[str, Any], kind: str) -> bytes:
    """``content`` as JSON that says it is a tastemaker ``kind`` (so a later write may
    replace it): ``kind`` and ``written_by`` come first."""
    if "kind" in content or "written_by" in content:
        raise ValueError("content has its own 'kind' or 'written_by'")
    tagged = {"kind": kind, "written_by": WRITTEN_BY, **content}
    return (json.dumps(tagged, indent=2, default=float) + "\n").encode()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | Path, kind: str, format_version: int, **fields: Any) -> dict:
    """Write ``manifest.json`` with kind, version, the given fields and checksums of all files
    (those of nested artifacts, their manifests included)."""
    directory = Path(directory)
    files = {
        p.relative_to(directory).as_posix(): file_sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p != directory / MANIFEST
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
    """Read and check a manifest: strict types, kind, a known format version and (``verify``)
    that every file of the directory tree is listed and matches its checksum.

    Anything else is an ``ArtifactError`` naming the directory and what is wrong: a manifest
    is read before any other file, so it must be valid before its fields are trusted.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: not a directory")
    if not path.is_file() or path.is_symlink():
        raise ArtifactError(f"{directory}: no {MANIFEST}; not a tastemaker directory")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{path}: {path.stat().st_size:,} bytes; not a tastemaker manifest")
    try:
        manifest = strict_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("kind"), str):
        raise ArtifactError(f"{path}: not a tastemaker manifest (no kind)")
    if kind is not None and manifest["kind"] != kind:
        raise ArtifactError(f"{directory}: holds a {manifest['kind']!r}, expected a {kind!r}")
    version = manifest.get("format_version")
    if type(version) is not int or version < 1:
        raise ArtifactError(
            f"{path}: format_version must be a positive integer, not {short_repr(version)}"
        )
    if max_version is not None and version > max_version:
        raise ArtifactError(
            f"{directory}: format version {short_repr(version)} is newer than this tastemaker "
            f"reads ({max_version}); upgrade tastemaker"
        )
    files = _checked_file_list(path, manifest.get("files"))
    if verify:
        verify_files(directory, files)
    return manifest


def strict_json(data: bytes | str) -> Any:
    """``json.loads`` that refuses what JSON does not allow (NaN, Infinity) and raises only
    ``ValueError`` (also for numbers of over 4,300 digits and nesting too deep to parse)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(data, parse_constant=refuse)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters (error messages quote untrusted values)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else "a huge int"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _checked_file_list(path: Path, files: Any) -> dict[str, str]:
    """The manifest's ``files``: a mapping of safe relative paths to SHA-256 hex digests."""
    if not isinstance(files, dict):
        raise ArtifactError(
            f"{path}: 'files' must map each file to its SHA-256, not {short_repr(files)}"
        )
    for name, digest in files.items():
        parts = PurePosixPath(name).parts
        if (
            not name
            or name.startswith("/")
            or "\\" in name
            or any(part in ("", ".", "..") for part in parts)
            or name == MANIFEST
        ):
            raise ArtifactError(f"{path}: file name {short_repr(name)} is not a path inside it")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise ArtifactError(f"{path}: the checksum of {name} is not a SHA-256 hex digest")
    return files


def verify_files(directory: Path, files: dict[str, str]) -> None:
    """Every regular file under ``directory`` (sub-manifests too) is listed, and matches.

    Links and special files are refused: a checksum would follow them out of the directory
    (or read a device forever).
    """
    found = set()
    for root, dirs, names in os.walk(directory):
        for name in dirs + names:
            entry = Path(root, name)
            relative = entry.relative_to(directory).as_posix()
            if entry.is_symlink():
                raise ArtifactError(f"{directory}: {relative} is a link; artifacts hold files")
            if name in names:
                if not entry.is_file():
                    raise ArtifactError(f"{directory}: {relative} is not a regular file")
                found.add(relative)
    found.discard(MANIFEST)
    for name in sorted(set(files) - found):
        raise ArtifactError(f"{directory}: file {name} listed in the manifest is missing")
    for name in sorted(found - set(files)):
        raise ArtifactError(
            f"{directory}: {name} is not covered by the manifest's checksums "
            "(added after the directory was written?)"
        )
    for name, expected in files.items():
        if file_sha256(directory / name) != expected:
            raise ArtifactError(
                f"{directory / name}: checksum mismatch; the directory is corrupted"
            )

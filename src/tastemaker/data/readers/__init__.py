"""One reader per source format, chosen by ``--format`` or detected from the path.

A reader module exposes ``NAME``, ``detect(path) -> bool`` and
``read(path, options) -> SourceData``; ``SourceData.listens`` is a lazy frame in the canonical
schema of ``tastemaker.data.listens``. Readers must stream (bounded memory) and raise
``DataError`` naming the file, the row where known, and the problem.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from tastemaker.errors import DataError

# Order matters for detection: the first reader whose ``detect`` accepts the path wins.
READERS: dict[str, str] = {
    "hetrec": "tastemaker.data.readers.hetrec",
    "listenbrainz": "tastemaker.data.readers.listenbrainz",
    "listenbrainz-json": "tastemaker.data.readers.listenbrainz_json",
    "lastfm-1k": "tastemaker.data.readers.lastfm_1k",
    "lastfm-360k": "tastemaker.data.readers.lastfm_360k",
    "csv": "tastemaker.data.readers.delimited",
}


@dataclass
class ReaderOptions:
    """Options some readers take (the CSV reader's column mapping, bad-row policy, ...)."""

    columns: list[str] | None = None
    delimiter: str = ","
    header: bool = True
    on_bad_rows: str = "error"  # "error" or "skip"


@dataclass
class SourceData:
    """What a reader returns: canonical listens, plus side information where the source has it."""

    listens: pl.LazyFrame
    format: str
    paths: list[str]
    # (user, artist_id, tag) rows: who tagged which artist with what (HetRec).
    tag_assignments: pl.DataFrame | None = None
    # Rows skipped under ``on_bad_rows="skip"`` and duplicates dropped, for ``inspect``.
    stats: dict[str, Any] = field(default_factory=dict)


def reader_module(name: str):
    if name not in READERS:
        raise DataError(f"unknown format {name!r}; choose one of: {', '.join(READERS)}")
    return importlib.import_module(READERS[name])


def detect_format(path: str | Path) -> str:
    """Name of the reader that recognises ``path``; DataError when none does."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or directory", path=path)
    for name in READERS:
        try:
            module = reader_module(name)
        except ModuleNotFoundError:
            continue
        if module.detect(path):
            return name
    raise DataError(
        "cannot tell the format; pass --format (one of: " + ", ".join(READERS) + ")", path=path
    )


def read_source(
    path: str | Path, format: str | None = None, options: ReaderOptions | None = None
) -> SourceData:
    """Read one source path with the given or detected reader."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or directory", path=path)
    name = format or detect_format(path)
    return reader_module(name).read(path, options or ReaderOptions())

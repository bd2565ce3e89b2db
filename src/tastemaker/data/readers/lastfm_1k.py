"""Last.fm 1K users (Celma 2010): ``userid-timestamp-artid-artname-traid-traname.tsv``.

One scrobble per line, tab-separated, no header, no quoting (names contain ``"``):
user id, timestamp (ISO-8601 UTC, e.g. ``2009-05-04T23:08:57Z``), artist MBID, artist name,
track MBID, track name. MBIDs may be empty. Canonical mapping: ``artist_mbid`` = artist MBID
(the artist key where present, else the normalized name), ``recording_mbid`` = track MBID,
``recording_name`` = track name; there is no release. The path may be the file or the folder
holding it. Required per line: user, a timestamp in range, artist name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tastemaker.data.listens import conform
from tastemaker.data.readers import (
    ReaderOptions,
    SourceData,
    check_rows,
    required_checks,
    text_to_datetime,
    time_checks,
)
from tastemaker.data.readers.delimited import (
    explain_text,
    sample_column,
    scan_text,
    structure_checks,
)
from tastemaker.errors import DataError

NAME = "lastfm-1k"
FILE = "userid-timestamp-artid-artname-traid-traname.tsv"
COLUMNS = ["user", "timestamp", "artist_mbid", "artist_name", "recording_mbid", "recording_name"]
ISO_START = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}"


def _file(path: Path) -> Path:
    return path / FILE if path.is_dir() else path


def detect(path: Path) -> bool:
    if path.is_dir():
        return (path / FILE).is_file()
    if not path.is_file():
        return False
    if path.name == FILE:
        return True
    return path.suffix.lower() == ".tsv" and _looks_like(path)


def _looks_like(path: Path) -> bool:
    """Six tab-separated fields with an ISO timestamp second: the 1K layout."""
    try:
        with open(path, "rb") as fh:
            fields = fh.readline().decode("utf-8", "replace").rstrip("\r\n").split("\t")
    except OSError:
        return False
    return len(fields) == 6 and re.match(ISO_START, fields[1]) is not None


def read(path: Path, options: ReaderOptions) -> SourceData:
    file = _file(path)
    if path.is_dir() and not file.exists():
        raise DataError(f"no {FILE} in this folder", path=path)
    stats: dict[str, Any] = {}
    raw = scan_text(file, COLUMNS, "\t", False, None, options, stats)
    sample = sample_column(file, COLUMNS, "timestamp", "\t", False, None)
    frame = raw.with_columns(text_to_datetime("timestamp", sample).alias("listened_at"))
    checks = [
        *structure_checks(len(COLUMNS), "\t", options),
        *required_checks({"user": "user", "timestamp": "timestamp", "artist_name": "artist name"}),
        *time_checks("listened_at", "timestamp"),
    ]
    checked = check_rows(frame, checks, file, options, stats, line_offset=1)
    listens = checked.select(
        "user", "listened_at", "artist_mbid", "artist_name", "recording_mbid", "recording_name"
    )
    return SourceData(
        listens=conform(listens),
        format=NAME,
        paths=[str(file)],
        stats=stats,
        explain=explain_text(file, len(COLUMNS), "\t", None, False),
    )

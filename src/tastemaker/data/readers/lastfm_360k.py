"""Last.fm 360K users (Celma 2010): ``usersha1-artmbid-artname-plays.tsv``.

Aggregated play counts, one (user, artist) per line, tab-separated, no header, no quoting:
user SHA-1, artist MBID (may be empty), artist name, plays. Canonical mapping: one row per
line with ``count`` = plays and no timestamp; ``artist_mbid`` keys the artist where present,
else the normalized name. The path may be the file or the folder holding it. Required per
line: user, an artist (name or MBID), a positive play count.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from tastemaker.data.listens import conform
from tastemaker.data.readers import (
    ReaderOptions,
    RowCheck,
    SourceData,
    check_rows,
    count_checks,
    required_checks,
)
from tastemaker.data.readers.delimited import explain_text, scan_text, structure_checks
from tastemaker.errors import DataError

NAME = "lastfm-360k"
FILE = "usersha1-artmbid-artname-plays.tsv"
COLUMNS = ["user", "artist_mbid", "artist_name", "plays"]


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
    """Four tab-separated fields: a 40-hex user id first and an integer last."""
    try:
        with open(path, "rb") as fh:
            fields = fh.readline().decode("utf-8", "replace").rstrip("\r\n").split("\t")
    except OSError:
        return False
    return (
        len(fields) == 4
        and re.fullmatch(r"[0-9a-f]{40}", fields[0]) is not None
        and fields[3].strip().isdigit()
    )


def read(path: Path, options: ReaderOptions) -> SourceData:
    file = _file(path)
    if path.is_dir() and not file.exists():
        raise DataError(f"no {FILE} in this folder", path=path)
    stats: dict[str, Any] = {}
    raw = scan_text(file, COLUMNS, "\t", False, None, options, stats)
    frame = raw.with_columns(
        pl.col("plays").str.strip_chars().cast(pl.Float64, strict=False).alias("n")
    )
    checks = [
        *structure_checks(len(COLUMNS), "\t", options),
        *required_checks({"user": "user"}),
        RowCheck(
            pl.col("artist_name").is_null() & pl.col("artist_mbid").is_null(),
            "missing artist (neither name nor MBID)",
        ),
        *count_checks("n", "plays"),
    ]
    checked = check_rows(frame, checks, file, options, stats, line_offset=1)
    listens = checked.select(
        "user",
        pl.col("n").round(0).clip(1).cast(pl.Int64).alias("count"),
        "artist_mbid",
        pl.col("artist_name").fill_null(pl.col("artist_mbid")),
    )
    return SourceData(
        listens=conform(listens),
        format=NAME,
        paths=[str(file)],
        stats=stats,
        explain=explain_text(file, len(COLUMNS), "\t", None, False),
    )

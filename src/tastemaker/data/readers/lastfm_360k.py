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

import polars as pl

from tastemaker.data.readers import ReaderOptions, SourceData
from tastemaker.data.readers.lastfm_tsv import LastfmTsv
from tastemaker.data.readers.rows import (
    RowCheck,
    count_checks,
    count_value,
    parse_number,
    required_checks,
)

NAME = "lastfm-360k"
FILE = "usersha1-artmbid-artname-plays.tsv"
COLUMNS = ["user", "artist_mbid", "artist_name", "plays"]
DUMP = LastfmTsv(NAME, FILE, COLUMNS)


def detect(path: Path) -> bool:
    return DUMP.detect(path, _looks_like)


def _looks_like(fields: list[str]) -> bool:
    """Four tab-separated fields: a 40-hex user id first and an integer last."""
    return (
        len(fields) == 4
        and re.fullmatch(r"[0-9a-f]{40}", fields[0]) is not None
        and fields[3].strip().isdigit()
    )


def read(path: Path, options: ReaderOptions) -> SourceData:
    file, raw, stats, bad_rows = DUMP.scan(path, options)
    frame = raw.with_columns(parse_number("plays").alias("n"))
    checks = [
        *required_checks({"user": "user"}),
        RowCheck(
            pl.col("artist_name").is_null() & pl.col("artist_mbid").is_null(),
            "missing artist (neither name nor MBID)",
        ),
        *count_checks("n", "plays"),
    ]
    listens: list[str | pl.Expr] = [
        "user",
        count_value("n"),
        "artist_mbid",
        pl.col("artist_name").fill_null(pl.col("artist_mbid")),
    ]
    return DUMP.source(file, frame, checks, listens, stats, bad_rows)

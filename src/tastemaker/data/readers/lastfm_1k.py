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

from tastemaker.data.readers import ReaderOptions, SourceData
from tastemaker.data.readers.delimited import sample_column
from tastemaker.data.readers.lastfm_tsv import LastfmTsv
from tastemaker.data.readers.rows import required_checks, text_to_datetime, time_checks

NAME = "lastfm-1k"
FILE = "userid-timestamp-artid-artname-traid-traname.tsv"
COLUMNS = ["user", "timestamp", "artist_mbid", "artist_name", "recording_mbid", "recording_name"]
ISO_START = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}"
DUMP = LastfmTsv(NAME, FILE, COLUMNS)


def detect(path: Path) -> bool:
    return DUMP.detect(path, _looks_like)


def _looks_like(fields: list[str]) -> bool:
    """Six tab-separated fields with an ISO timestamp second: the 1K layout."""
    return len(fields) == 6 and re.match(ISO_START, fields[1]) is not None


def read(path: Path, options: ReaderOptions) -> SourceData:
    file, raw, stats, bad_rows = DUMP.scan(path, options)
    sample = sample_column(file, DUMP.table, "timestamp")
    frame = raw.with_columns(text_to_datetime("timestamp", sample).alias("listened_at"))
    checks = [
        *required_checks({"user": "user", "timestamp": "timestamp", "artist_name": "artist name"}),
        *time_checks("listened_at", "timestamp"),
    ]
    listens = [
        "user",
        "listened_at",
        "artist_mbid",
        "artist_name",
        "recording_mbid",
        "recording_name",
    ]
    return DUMP.source(file, frame, checks, listens, stats, bad_rows)

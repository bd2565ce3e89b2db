"""HetRec 2011 Last.fm 2K: ``user_artists.dat`` play counts, ``artists.dat`` names, tags,
and the friendship relation of ``user_friends.dat``.

Quirks handled (see the data set's SOURCE.md): tab-separated with one header line, CRLF in
most files but LF in ``artists.dat``; ``tags.dat`` is Latin-1; artist names contain ``"`` so
no quote character is honoured; ids are not contiguous; some tag assignments name artists that
are not in ``artists.dat`` (dropped).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tastemaker.data.readers import ReaderOptions, SourceData, require_file
from tastemaker.data.readers.delimited import TextTable, text_frames
from tastemaker.data.readers.rows import (
    BadRows,
    check_rows,
    count_checks,
    count_value,
    parse_number,
)
from tastemaker.data.readers.streams import first_line
from tastemaker.data.schema import conform
from tastemaker.errors import DataError

NAME = "hetrec"
PLAYS = "user_artists.dat"
FRIENDS = "user_friends.dat"


def detect(path: Path) -> bool:
    return path.is_dir() and (path / PLAYS).is_file()


def read_tsv(
    path: Path,
    columns: list[str],
    options: ReaderOptions,
    bad_rows: BadRows,
    encoding: str = "utf8",
) -> pl.DataFrame:
    """The named columns of one tab-separated file with a header line, as text (``_row``:
    0-based line index), through the checked, line-bounded reading of ``scan_text``."""
    require_file(path)
    line = first_line(path, options.max_line_bytes, strict=True)
    header = (line or b"").decode(encoding, "replace").rstrip("\r").split("\t")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"missing columns {missing}; found {header}", path=path)
    table = TextTable(tuple(header), "\t", None, header=True, encoding=encoding)
    frames = list(text_frames(path, table, options, bad_rows))
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=table.schema | {"_row": pl.Int64})
    return frame.select(*columns, "_row")


def read(path: Path, options: ReaderOptions) -> SourceData:
    stats: dict = {}
    bad_rows = BadRows(options, stats)
    raw_plays = read_tsv(path / PLAYS, ["userID", "artistID", "weight"], options, bad_rows)
    plays = check_rows(
        raw_plays.lazy().with_columns(parse_number("weight").alias("n")),
        count_checks("n", "weight"),
        path / PLAYS,
        bad_rows,
    )
    artists = read_tsv(path / "artists.dat", ["id", "name"], options, bad_rows)
    listens = plays.join(
        artists.lazy().select("id", "name"),
        left_on="artistID",
        right_on="id",
        how="left",
        maintain_order="left",
    ).select(
        pl.col("userID").alias("user"),
        count_value("n"),
        pl.col("artistID").alias("artist_id"),
        pl.col("name").fill_null(pl.col("artistID")).alias("artist_name"),
    )
    tag_assignments = None
    tagged_path = path / "user_taggedartists.dat"
    if tagged_path.is_file() and (path / "tags.dat").is_file():
        tags = read_tsv(path / "tags.dat", ["tagID", "tagValue"], options, bad_rows, "latin1")
        tagged = read_tsv(tagged_path, ["userID", "artistID", "tagID"], options, bad_rows)
        tag_assignments = (
            tagged.join(tags, on="tagID", how="inner")
            .join(artists.select("id"), left_on="artistID", right_on="id", how="semi")
            .filter(pl.col("tagValue").is_not_null())
            .select(
                pl.col("userID").alias("user"),
                pl.col("artistID").alias("artist_id"),
                pl.col("tagValue").alias("tag"),
            )
        )
    friends = None
    if (path / FRIENDS).is_file():
        raw = read_tsv(path / FRIENDS, ["userID", "friendID"], options, bad_rows)
        friends = raw.select(pl.col("userID").alias("user"), pl.col("friendID").alias("friend"))
    return SourceData(
        listens=conform(listens),
        format=NAME,
        paths=[str(path)],
        tag_assignments=tag_assignments,
        friends=friends,
        stats=stats,
    )

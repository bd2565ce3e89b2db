"""HetRec 2011 Last.fm 2K: ``user_artists.dat`` play counts, ``artists.dat`` names, tags.

Quirks handled (see the data set's SOURCE.md): tab-separated with one header line, CRLF in
most files but LF in ``artists.dat``; ``tags.dat`` is Latin-1; artist names contain ``"`` so
no quote character is honoured; ids are not contiguous; some tag assignments name artists that
are not in ``artists.dat`` (dropped).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tastemaker.data.listens import conform
from tastemaker.data.readers import ReaderOptions, SourceData, first_line, require_file
from tastemaker.errors import DataError

NAME = "hetrec"
PLAYS = "user_artists.dat"


def detect(path: Path) -> bool:
    return path.is_dir() and (path / PLAYS).is_file()


def _read_tsv(path: Path, columns: dict[str, pl.DataType], encoding: str = "utf8") -> pl.DataFrame:
    require_file(path)
    try:
        frame = pl.read_csv(
            path,
            separator="\t",
            has_header=True,
            quote_char=None,
            encoding=encoding,
            schema_overrides=columns,
            truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError as exc:
        if "utf-8" in str(exc).lower() or "utf8" in str(exc).lower():
            from tastemaker.data.readers.delimited import utf8_problem

            problem = utf8_problem(path)
            if problem is not None:
                line, column, byte = problem
                raise DataError(
                    f"not valid UTF-8 (byte 0x{byte:02x} at column {column})", path, line
                ) from None
        raise DataError(f"cannot parse ({first_line(exc)})", path=path) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"missing columns {missing}; found {frame.columns}", path=path)
    # CRLF files leave a trailing \r on the last column.
    return frame.with_columns(pl.col(pl.Utf8).str.strip_chars_end("\r"))


def read(path: Path, options: ReaderOptions) -> SourceData:
    plays = _read_tsv(path / PLAYS, {"userID": pl.Utf8, "artistID": pl.Utf8, "weight": pl.Utf8})
    weight = plays["weight"].cast(pl.Float64, strict=False)
    bad = (weight.is_null() | weight.is_nan() | (weight <= 0)).arg_true()
    if len(bad):
        row = int(bad[0]) + 2  # 1-based, after the header line
        value = plays["weight"][int(bad[0])]
        if options.on_bad_rows != "skip":
            raise DataError(f"play count {value!r} is not a positive number", path / PLAYS, row)
    plays = plays.with_columns(weight=weight).filter(
        pl.col("weight").is_not_null() & ~pl.col("weight").is_nan() & (pl.col("weight") > 0)
    )
    artists = _read_tsv(path / "artists.dat", {"id": pl.Utf8, "name": pl.Utf8})
    listens = (
        plays.join(artists.select("id", "name"), left_on="artistID", right_on="id", how="left")
        .select(
            pl.col("userID").alias("user"),
            pl.col("weight").round().cast(pl.Int64).alias("count"),
            pl.col("artistID").alias("artist_id"),
            pl.col("name").fill_null(pl.col("artistID")).alias("artist_name"),
        )
        .lazy()
    )
    tag_assignments = None
    tagged_path = path / "user_taggedartists.dat"
    if tagged_path.is_file() and (path / "tags.dat").is_file():
        tags = _read_tsv(path / "tags.dat", {"tagID": pl.Utf8, "tagValue": pl.Utf8}, "latin1")
        tagged = _read_tsv(tagged_path, {"userID": pl.Utf8, "artistID": pl.Utf8, "tagID": pl.Utf8})
        tag_assignments = (
            tagged.join(tags, on="tagID", how="inner")
            .join(artists.select("id"), left_on="artistID", right_on="id", how="semi")
            .select(
                pl.col("userID").alias("user"),
                pl.col("artistID").alias("artist_id"),
                pl.col("tagValue").alias("tag"),
            )
        )
    return SourceData(
        listens=conform(listens),
        format=NAME,
        paths=[str(path)],
        tag_assignments=tag_assignments,
        stats={"skipped_rows": len(bad) if options.on_bad_rows == "skip" else 0},
    )

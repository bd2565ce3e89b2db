"""The canonical listens table: the schema every reader produces and ingest reduces.

Every reader produces a polars LazyFrame with exactly ``LISTENS_SCHEMA``: one row per listen,
or per (user, item) with a play count where the source only has counts (HetRec, Last.fm 360K).
The table is written as ``listens.parquet`` in an ingested directory.

| column          | type                 | meaning                                                     |
|-----------------|----------------------|-------------------------------------------------------------|
| user            | str, required        | the source's own user id (as a string)                      |
| listened_at     | datetime[ms, UTC]    | when the listen happened; null where only counts are known  |
| count           | int64, >= 1          | plays this row stands for (1 for a single listen)           |
| artist_id       | str                  | the source's own artist id (HetRec id, MBID), if it has one |
| artist_name     | str, required        | artist (credit) name                                        |
| artist_mbid     | str                  | MusicBrainz artist id (first of the credit)                 |
| release_name    | str                  | release (album) name                                        |
| release_mbid    | str                  | MusicBrainz release id                                      |
| recording_name  | str                  | track title                                                 |
| recording_mbid  | str                  | MusicBrainz recording id                                    |
| recording_msid  | str                  | ListenBrainz MessyBrainz id (deduplication key)             |

The reduction to ``Interactions`` lives in ``tastemaker.data.listens``; readers need only this
module.
"""

from __future__ import annotations

import polars as pl

LISTENS_SCHEMA: dict[str, pl.DataType] = {
    "user": pl.Utf8(),
    "listened_at": pl.Datetime("ms", "UTC"),
    "count": pl.Int64(),
    "artist_id": pl.Utf8(),
    "artist_name": pl.Utf8(),
    "artist_mbid": pl.Utf8(),
    "release_name": pl.Utf8(),
    "release_mbid": pl.Utf8(),
    "recording_name": pl.Utf8(),
    "recording_mbid": pl.Utf8(),
    "recording_msid": pl.Utf8(),
}


def conform(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Add missing canonical columns as nulls, cast, and order the columns canonically."""
    present = set(frame.collect_schema().names())
    exprs = []
    for name, dtype in LISTENS_SCHEMA.items():
        if name in present:
            exprs.append(pl.col(name).cast(dtype))
        elif name == "count":
            exprs.append(pl.lit(1, dtype=pl.Int64).alias(name))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(exprs)


def display_name(level: str) -> pl.Expr:
    """An item's display name at ``level``: the artist, or "artist – release / title"."""
    if level == "artist":
        return pl.col("artist_name")
    column = "release_name" if level == "release" else "recording_name"
    return pl.concat_str([pl.col("artist_name"), pl.col(column).fill_null("?")], separator=" – ")


MBID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

# The columns each level keys items by: the id when the source has one, else these names.
LEVEL_IDS = {
    "artist": lambda: pl.coalesce("artist_id", "artist_mbid"),
    "release": lambda: pl.col("release_mbid"),
    "recording": lambda: pl.col("recording_mbid"),
}
LEVEL_NAMES = {
    "artist": ("artist_name",),
    "release": ("artist_name", "release_name"),
    "recording": ("artist_name", "recording_name"),
}

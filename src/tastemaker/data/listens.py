"""The canonical listens table and its reduction to ``Interactions``.

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
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from tastemaker.data.interactions import (
    LEVELS,
    UNKNOWN_TIME,
    Interactions,
    ListenEvents,
    Vocabulary,
)

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


def normalize_name(expr: pl.Expr) -> pl.Expr:
    """Case-fold, trim and collapse whitespace: 'The  Beatles ' and 'the beatles' are one key."""
    return expr.str.to_lowercase().str.strip_chars().str.replace_all(r"\s+", " ")


def item_key(level: str) -> pl.Expr:
    """The item id at a level: the source's id / MBID when known, else normalized names.

    artist: ``artist_id`` or ``artist_mbid``, else the normalized artist name;
    release: ``release_mbid``, else normalized "artist | release";
    recording: ``recording_mbid``, else normalized "artist | title".
    """
    artist = normalize_name(pl.col("artist_name"))
    if level == "artist":
        return pl.coalesce("artist_id", "artist_mbid", artist)
    if level == "release":
        return pl.coalesce(
            "release_mbid",
            pl.concat_str([artist, normalize_name(pl.col("release_name"))], separator=" | "),
        )
    if level == "recording":
        return pl.coalesce(
            "recording_mbid",
            pl.concat_str([artist, normalize_name(pl.col("recording_name"))], separator=" | "),
        )
    raise ValueError(f"level must be one of {LEVELS}, not {level!r}")


def display_name(level: str) -> pl.Expr:
    if level == "artist":
        return pl.col("artist_name")
    column = "release_name" if level == "release" else "recording_name"
    return pl.concat_str([pl.col("artist_name"), pl.col(column).fill_null("?")], separator=" – ")


def interactions_from_listens(
    listens: pl.LazyFrame,
    level: str = "artist",
    keep_events: bool = True,
    source: dict | None = None,
) -> Interactions:
    """Reduce canonical listens to an ``Interactions`` at the given level.

    One streaming group-by over (user, item) gives play counts and last-listened times; a
    second small group-by gives item metadata. Users and items are indexed in sorted id order,
    so the result is deterministic whatever the order of the input files.
    """
    keyed = listens.with_columns(item=item_key(level))
    pairs = (
        keyed.group_by("user", "item")
        .agg(
            pl.col("count").sum().alias("count"),
            pl.col("listened_at").max().alias("last"),
        )
        .collect(engine="streaming")
    )
    items_meta = (
        keyed.group_by("item")
        .agg(
            display_name(level).drop_nulls().first().alias("name"),
            pl.col("artist_name").drop_nulls().first(),
            pl.col("release_name").drop_nulls().first(),
            pl.col("recording_name").drop_nulls().first(),
            pl.col("artist_mbid").drop_nulls().first(),
            pl.col("release_mbid").drop_nulls().first(),
            pl.col("recording_mbid").drop_nulls().first(),
        )
        .sort("item")
        .collect(engine="streaming")
    )
    users = pairs.select(pl.col("user").unique().sort())
    user_index = users.with_row_index("u")
    item_index = items_meta.select("item").with_row_index("i")
    indexed = pairs.join(user_index, on="user").join(item_index, on="item")
    rows = indexed["u"].to_numpy().astype(np.int64)
    cols = indexed["i"].to_numpy().astype(np.int64)
    counts = indexed["count"].to_numpy().astype(np.float32)
    shape = (users.height, items_meta.height)
    order = np.lexsort((cols, rows))
    rows, cols, counts = rows[order], cols[order], counts[order]
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    matrix = sp.csr_matrix((counts, cols.astype(np.int32), indptr), shape=shape)

    last = indexed["last"]
    last_listened = None
    if last.null_count() < len(last):
        epoch = last.dt.epoch("s").fill_null(UNKNOWN_TIME).to_numpy().astype(np.int64)
        last_listened = epoch[order]

    events = None
    if keep_events and last_listened is not None:
        ev = (
            keyed.filter(pl.col("listened_at").is_not_null())
            .select("user", "item", pl.col("listened_at").dt.epoch("s").alias("t"))
            .join(user_index.lazy(), on="user")
            .join(item_index.lazy(), on="item")
            .select(pl.col("u").cast(pl.Int32), pl.col("i").cast(pl.Int32), "t")
            .sort("u", "t", "i")
            .collect(engine="streaming")
        )
        events = ListenEvents(ev["u"].to_numpy(), ev["i"].to_numpy(), ev["t"].to_numpy())

    return Interactions(
        matrix,
        Vocabulary(users["user"]),
        Vocabulary(items_meta["item"]),
        items_meta.select(
            "item",
            "name",
            "artist_name",
            "release_name",
            "recording_name",
            "artist_mbid",
            "release_mbid",
            "recording_mbid",
        ),
        level=level,
        last_listened=last_listened,
        events=events,
        source=source or {},
    )

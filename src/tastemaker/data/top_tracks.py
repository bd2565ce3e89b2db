"""Builds ``TrackData`` (``tastemaker.data.tracks``) from canonical listens at ingest.

Two grouped passes over the listens (polars' streaming engine): plays per (item, recording)
and per (user, recording). Memory follows the distinct pairs; what is kept is the top
``TRACKS_PER_ITEM`` recordings per item and ``FAVOURITES_PER_USER`` per user, so the files
grow with the catalogue and the listeners, never with the listens. Items and users are the
``Interactions``' own (after filters): a recording of an item the filters removed is dropped.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from tastemaker.data.interactions import Interactions
from tastemaker.data.listens import key_listens
from tastemaker.data.tracks import (
    FAVOURITE_COLUMNS,
    FAVOURITES_PER_USER,
    ITEM_TAG_COLUMNS,
    TAGS_PER_ITEM,
    TRACK_COLUMNS,
    TRACKS_PER_ITEM,
    TrackData,
    empty_frame,
)

DESCRIPTION = ("title", "artist", "release", "recording_mbid")


def build_track_data(
    listens: pl.LazyFrame,
    interactions: Interactions,
    per_item: int = TRACKS_PER_ITEM,
    per_user: int = FAVOURITES_PER_USER,
) -> TrackData:
    """Top recordings per item and per user of ``listens``, in ``interactions``' index space."""
    level = interactions.level
    # Keyed as ingest keys items (the identity rule over these same listens): a name-only
    # listen of an artist with an MBID counts towards that artist's item. The rule is decided
    # before the filter below, over every listen, as encode_listens decides it.
    # Each listen's place in the source's order: "the last spelling" must not depend on the
    # order the streaming engine's threads happen to deliver rows in (it made runs differ).
    keyed = key_listens(listens.with_row_index("_row"), (level, "recording"))
    frame = keyed.filter(
        pl.col("recording_name").is_not_null() & (pl.col("recording_name").str.len_bytes() > 0)
    ).select(
        pl.col("user"),
        pl.col(f"{level}_key").alias("item_id"),
        pl.col("recording_key").alias("recording"),
        pl.col("recording_name").alias("title"),
        pl.col("artist_name").alias("artist"),
        pl.col("release_name").alias("release"),
        pl.col("recording_mbid"),
        pl.col("count"),
        pl.col("listened_at").dt.epoch("s").alias("time"),
        pl.col("_row"),
    )
    items = pl.LazyFrame(
        {
            "item_id": interactions.items.ids,
            "item": pl.int_range(0, interactions.n_items, eager=True),
        }
    ).with_columns(pl.col("item").cast(pl.Int32))
    described = [pl.col(c).sort_by("_row").drop_nulls().last().alias(c) for c in DESCRIPTION]
    per_track = (
        frame.group_by("item_id", "recording")
        .agg(pl.col("count").sum().alias("plays"), *described)
        .join(items, on="item_id", how="inner")
        .sort(["item", "plays", "recording"], descending=[False, True, False])
        .group_by("item", maintain_order=True)
        .head(per_item)
        .select(list(TRACK_COLUMNS))
        .cast(TRACK_COLUMNS)
        .collect(engine="streaming")
    )
    users = pl.LazyFrame(
        {
            "user": interactions.users.ids,
            "user_index": pl.int_range(0, interactions.n_users, eager=True),
        }
    )
    favourites = (
        frame.group_by("user", "recording")
        .agg(
            pl.col("count").sum().alias("plays"),
            pl.col("time").max().alias("last_heard"),
            pl.col("item_id").sort_by("_row").last(),
            *described,
        )
        .join(users, on="user", how="inner")
        .join(items, on="item_id", how="inner")
        .drop("user")
        .rename({"user_index": "user"})
        .select(list(FAVOURITE_COLUMNS))
        .cast(FAVOURITE_COLUMNS)
        .collect(engine="streaming")
    )
    favourites = most_played_and_latest(favourites, per_user)
    return TrackData(per_track, favourites, item_tags(interactions))


def most_played_and_latest(pairs: pl.DataFrame, per_user: int) -> pl.DataFrame:
    """Per user the ``per_user`` most played recordings and the ``per_user`` heard last
    (so "not heard recently" is known for everything heard lately), most played first."""
    most_played = pairs.sort(["user", "plays", "recording"], descending=[False, True, False])
    latest = pairs.sort(["user", "last_heard", "recording"], descending=[False, True, False])
    kept = pl.concat(
        [
            frame.group_by("user", maintain_order=True).head(per_user)
            for frame in (most_played, latest)
        ]
    )
    return kept.unique(["user", "recording"]).sort(
        ["user", "plays", "recording"], descending=[False, True, False]
    )


def item_tags(interactions: Interactions, per_item: int = TAGS_PER_ITEM) -> pl.DataFrame:
    """Each item's most used tags, heaviest first: per-user tag assignments (HetRec's) counted,
    else the item metadata's weights (MusicBrainz, CSV; rounded, at least 1)."""
    tags, meta = interactions.tags, interactions.metadata
    if tags is not None and len(tags.item):
        weighted = (
            pl.DataFrame({"item": tags.item, "tag_index": tags.tag})
            .group_by("item", "tag_index")
            .agg(pl.len().alias("weight"))
        )
        names = tags.tags.ids
    elif meta is not None and meta.item_tags.nnz:
        cells = meta.item_tags.tocoo()
        weighted = pl.DataFrame(
            {
                "item": cells.row.astype(np.int32),
                "tag_index": cells.col.astype(np.int64),
                "weight": np.maximum(np.rint(cells.data), 1).astype(np.int64),
            }
        )
        names = pl.Series(meta.tags, dtype=pl.Utf8)
    else:
        return empty_frame(ITEM_TAG_COLUMNS)
    return (
        weighted.with_columns(tag=pl.lit(names).gather(pl.col("tag_index")))
        .sort(["item", "weight", "tag"], descending=[False, True, False])
        .group_by("item", maintain_order=True)
        .head(per_item)
        .select(list(ITEM_TAG_COLUMNS))
        .cast(ITEM_TAG_COLUMNS)
    )


def recording_level_tracks(interactions: Interactions) -> pl.DataFrame:
    """At recording level every item is a track: its metadata and total plays."""
    meta = interactions.item_metadata
    plays = interactions.user_items.sum(axis=0).A1.round().astype("int64")
    return pl.DataFrame(
        {
            "item": pl.int_range(0, interactions.n_items, eager=True).cast(pl.Int32),
            "recording": meta["item"],
            "title": meta["recording_name"].fill_null(meta["name"]),
            "artist": meta["artist_name"],
            "release": meta["release_name"],
            "recording_mbid": meta["recording_mbid"],
            "plays": plays,
        }
    ).cast(TRACK_COLUMNS)


def attach_tracks(listens: pl.LazyFrame, interactions: Interactions) -> Interactions:
    """``interactions`` with its ``TrackData`` (the ingest hook)."""
    data = build_track_data(listens, interactions)
    if interactions.level == "recording":
        data = dataclasses.replace(data, tracks=recording_level_tracks(interactions))
    return dataclasses.replace(interactions, tracks=data)


__all__ = ["DESCRIPTION", "attach_tracks", "build_track_data", "most_played_and_latest"]

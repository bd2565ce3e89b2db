"""The top-track tables built from ingest's integer codes (``data/top_tracks.py``) are those of
the string builder they replaced, byte for byte: the oracle below is that builder (keys from
``key_listens``, string group-bys, "the last spelling" by the source's row order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tastemaker.data import top_tracks
from tastemaker.data.filters import k_core_subset
from tastemaker.data.interactions import Interactions
from tastemaker.data.listens import interactions_from_listens, key_listens
from tastemaker.data.readers import read_sources
from tastemaker.data.synth import synthetic_listens
from tastemaker.data.top_tracks import (
    DESCRIPTION,
    attach_tracks,
    build_track_data,
    item_tags,
    most_played_and_latest,
)
from tastemaker.data.tracks import (
    FAVOURITE_COLUMNS,
    FAVOURITES_FILE,
    ITEM_TAGS_FILE,
    TRACK_COLUMNS,
    TRACKS_FILE,
    TrackData,
)

FILES = (TRACKS_FILE, FAVOURITES_FILE, ITEM_TAGS_FILE)


def oracle(listens: pl.LazyFrame, interactions: Interactions, per_item: int, per_user: int):
    """The string builder ingest ran before (main at 5d0f024), kept here as the oracle."""
    level = interactions.level
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


def roughened(seed: int) -> pl.DataFrame:
    """Synthetic listens with what the rule and "the last spelling" must get right: names
    only (40 %), titles missing or empty, releases and times missing, play counts, an MBID
    with no artist name, and spellings of one recording that differ between listens."""
    frame = synthetic_listens(users=70, artists=90, listens=9_000, seed=seed, mbid_share=0.6)
    rng = np.random.default_rng(seed)
    n = frame.height

    def some(share: float) -> pl.Series:
        return pl.Series(rng.random(n) < share)

    return frame.with_columns(
        recording_name=pl.when(some(0.03))
        .then(None)
        .when(some(0.03))
        .then(pl.lit(""))
        .when(some(0.1))
        .then(pl.col("recording_name").str.to_uppercase())
        .otherwise(pl.col("recording_name")),
        release_name=pl.when(some(0.2)).then(None).otherwise(pl.col("release_name")),
        listened_at=pl.when(some(0.05)).then(None).otherwise(pl.col("listened_at")),
        count=pl.Series(rng.integers(1, 4, n)),
        artist_name=pl.when(some(0.01) & pl.col("recording_mbid").is_not_null())
        .then(None)
        .otherwise(pl.col("artist_name")),
    )


def assert_same_bytes(new: TrackData, old: TrackData, tmp_path: Path) -> None:
    for name, data in (("new", new), ("old", old)):
        (tmp_path / name).mkdir()
        data.write_into(tmp_path / name)
    for file in FILES:
        assert (tmp_path / "new" / file).read_bytes() == (tmp_path / "old" / file).read_bytes(), (
            file
        )


@pytest.mark.parametrize("level", ["artist", "release", "recording"])
@pytest.mark.parametrize("seed", [1, 2])
def test_integer_builder_matches_the_string_builder_on_synth(level, seed, tmp_path, monkeypatch):
    if seed == 2:  # the multi-column sort taken where the packed sort keys would not fit
        monkeypatch.setattr(top_tracks, "KEY_BITS", 0)
    listens = roughened(seed).lazy()
    interactions = interactions_from_listens(listens, level=level)
    # Filtered as ingest may filter: some items and users are gone from the index space.
    interactions, _, _, _ = k_core_subset(interactions, 3, 3)
    # Small heads, so that ties and the cut-offs are exercised.
    new = build_track_data(listens, interactions, per_item=3, per_user=4)
    old = oracle(listens, interactions, per_item=3, per_user=4)
    assert new.tracks.height > 50 and new.favourites.height > 100
    assert new.favourites["last_heard"].null_count()  # listens without a time, kept apart
    assert_same_bytes(new, old, tmp_path)


@pytest.mark.parametrize("level", ["artist", "release", "recording"])
def test_integer_builder_matches_the_string_builder_on_listenbrainz(
    listenbrainz_path, level, tmp_path
):
    listens = read_sources([listenbrainz_path]).listens.collect().lazy()
    interactions = interactions_from_listens(listens, level=level)
    new = attach_tracks(listens, interactions).tracks
    assert new is not None and new.favourites.height
    old = oracle(listens, interactions, per_item=20, per_user=100)
    if level == "recording":
        assert new.tracks.height == interactions.n_items
        old = TrackData(new.tracks, old.favourites, old.item_tags)
    assert_same_bytes(new, old, tmp_path)

"""Top tracks of a spilled ingest (``data.spill``): ``top_tracks.build_track_data``, a
partition of the runs at a time, with the same result byte for byte.

The spilling pass keeps each distinct combination of the columns that key and describe a
track (``TRACK_KEY_COLUMNS``: the ids and names both levels' keys come from, and the release
name); every run row carries its combination's hash and its global row index. Then:

* the item and recording keys come from ``listens.key_listens`` over the distinct
  combinations (the identity rule only looks at distinct names: the same keys as over every
  listen);
* each partition's rows are first reduced to one per (user, track combination): plays, last
  time, latest row (integers only; the described columns are the combination's own);
* per user (each in one partition) the favourites are those of the in-memory path, each
  described column taken from the latest (user, combination) that has it;
* per (item, recording), the plays of its combinations summed over the partitions, each
  described column from its latest combination: the in-memory "last non-null value in
  the source's order".
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import polars as pl

from tastemaker.data.interactions import Interactions
from tastemaker.data.listens import key_listens
from tastemaker.data.top_tracks import (
    DESCRIPTION,
    item_tags,
    most_played_and_latest,
    recording_level_tracks,
)
from tastemaker.data.tracks import (
    FAVOURITE_COLUMNS,
    FAVOURITES_PER_USER,
    TRACK_COLUMNS,
    TRACKS_PER_ITEM,
    TrackData,
)
from tastemaker.errors import DataError

TRACK_KEY_COLUMNS = [
    "artist_id",
    "artist_mbid",
    "artist_name",
    "release_mbid",
    "release_name",
    "recording_mbid",
    "recording_name",
]


def progress_bar(console: Any | None) -> Any:
    """A transient rich progress bar on ``console`` (a null context without one)."""
    if console is None:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


class TrackCombinations:
    """The distinct track combinations seen while spilling (``add`` per batch)."""

    def __init__(self) -> None:
        self._frames: list[pl.DataFrame] = []

    def add(self, batch: pl.DataFrame) -> None:
        """A batch with ``TRACK_KEY_COLUMNS``, ``track`` and ``check_track`` (a second hash)."""
        frame = batch.select("track", "check_track", *TRACK_KEY_COLUMNS)
        self._frames.append(_distinct(frame))
        if len(self._frames) >= 4:
            self._frames = [_distinct(pl.concat(self._frames))]

    def _keys(self, level: str) -> pl.DataFrame:
        """Per combination hash: item key, recording key and the described columns."""
        if not self._frames:
            frame = pl.DataFrame(
                schema={"track": pl.UInt64, **dict.fromkeys(TRACK_KEY_COLUMNS, pl.Utf8)}
            )
            frame = frame.with_columns(
                pl.lit(0, pl.UInt64).alias("check_lo"), pl.lit(0, pl.UInt64).alias("check_hi")
            )
        else:
            frame = _distinct(pl.concat(self._frames))
        self._frames = []
        if (frame.get_column("check_lo") != frame.get_column("check_hi")).any():
            raise DataError(
                "two distinct track spellings hashed alike while spilling; ingest again with "
                "a larger --memory-limit"
            )
        keyed = key_listens(frame.drop("check_lo", "check_hi").lazy(), (level, "recording"))
        return (
            keyed.filter(
                pl.col("recording_name").is_not_null()
                & (pl.col("recording_name").str.len_bytes() > 0)
            )
            .select(
                "track",
                pl.col(f"{level}_key").alias("item_id"),
                pl.col("recording_key").alias("recording"),
                pl.col("recording_name").alias("title"),
                pl.col("artist_name").alias("artist"),
                pl.col("release_name").alias("release"),
                pl.col("recording_mbid"),
            )
            .collect()
        )

    def attach(
        self, folders: list[Path], interactions: Interactions, console: Any | None = None
    ) -> Interactions:
        """``interactions`` with the ``TrackData`` of the runs in ``folders``."""
        keys = self._keys(interactions.level).lazy()
        items = pl.LazyFrame(
            {
                "item_id": interactions.items.ids,
                "item": pl.int_range(0, interactions.n_items, eager=True),
            }
        ).with_columns(pl.col("item").cast(pl.Int32))
        users = pl.LazyFrame(
            {
                "user": interactions.users.ids,
                "user_index": pl.int_range(0, interactions.n_users, eager=True),
            }
        )
        totals, favourites = [], []
        with progress_bar(console) as progress:
            task = progress and progress.add_task("top tracks", total=len(folders))
            for folder in folders:
                # Integers first: one row per (user, track combination), whose described
                # columns are the combination's own, so its latest row is all that counts.
                by_user = (
                    pl.scan_parquet(folder / "*.parquet")
                    .group_by("user", "track")
                    .agg(
                        pl.col("count").sum().alias("plays"),
                        pl.col("time").max().alias("last_heard"),
                        pl.col("row").max(),
                    )
                    .collect()
                )
                totals.append(
                    by_user.group_by("track").agg(pl.col("plays").sum(), pl.col("row").max())
                )
                favourites.append(_favourites(by_user.lazy().join(keys, on="track"), users, items))
                del by_user
                if progress:
                    progress.advance(task)
        per_track = (
            _totals(totals)
            .lazy()
            .join(keys, on="track", how="inner")
            .group_by("item_id", "recording")
            .agg(pl.col("plays").sum(), *_latest())
            .join(items, on="item_id", how="inner")
            .sort(["item", "plays", "recording"], descending=[False, True, False])
            .group_by("item", maintain_order=True)
            .head(TRACKS_PER_ITEM)
            .select(list(TRACK_COLUMNS))
            .cast(TRACK_COLUMNS)
            .collect()
        )
        chosen = pl.concat(favourites) if favourites else _favourites(_empty(), users, items)
        chosen = chosen.sort(["user", "plays", "recording"], descending=[False, True, False])
        data = TrackData(per_track, chosen, item_tags(interactions))
        if interactions.level == "recording":
            data = dataclasses.replace(data, tracks=recording_level_tracks(interactions))
        return dataclasses.replace(interactions, tracks=data)


def _distinct(frame: pl.DataFrame) -> pl.DataFrame:
    check = (
        [
            pl.col("check_track").min().alias("check_lo"),
            pl.col("check_track").max().alias("check_hi"),
        ]
        if "check_track" in frame.columns
        else [pl.col("check_lo").min(), pl.col("check_hi").max()]
    )
    return frame.group_by("track").agg(*[pl.col(c).first() for c in TRACK_KEY_COLUMNS], *check)


def _latest() -> list[pl.Expr]:
    """Per described column, the value of the latest (user, track) row where it is known."""
    return [pl.col(c).sort_by("row").drop_nulls().last().alias(c) for c in DESCRIPTION]


def _totals(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Plays and latest row per track combination, over every partition."""
    if not frames:
        return pl.DataFrame(schema={"track": pl.UInt64, "plays": pl.Int64, "row": pl.Int64})
    return pl.concat(frames).group_by("track").agg(pl.col("plays").sum(), pl.col("row").max())


def _favourites(pairs: pl.LazyFrame, users: pl.LazyFrame, items: pl.LazyFrame) -> pl.DataFrame:
    """``build_track_data``'s favourites from (user, track combination) rows with their keys."""
    chosen = (
        pairs.group_by("user", "recording")
        .agg(
            pl.col("plays").sum(),
            pl.col("last_heard").max(),
            pl.col("item_id").sort_by("row").last(),
            *_latest(),
        )
        .join(users, on="user", how="inner")
        .join(items, on="item_id", how="inner")
        .drop("user")
        .rename({"user_index": "user"})
        .select(list(FAVOURITE_COLUMNS))
        .cast(FAVOURITE_COLUMNS)
        .collect()
    )
    return most_played_and_latest(chosen, FAVOURITES_PER_USER)


def _empty() -> pl.LazyFrame:
    schema = {
        "user": pl.Utf8,
        "plays": pl.Int64,
        "last_heard": pl.Int64,
        "row": pl.Int64,
        "item_id": pl.Utf8,
        "recording": pl.Utf8,
        **dict.fromkeys(DESCRIPTION, pl.Utf8),
    }
    return pl.LazyFrame(schema=schema)


__all__ = ["TRACK_KEY_COLUMNS", "TrackCombinations", "progress_bar"]

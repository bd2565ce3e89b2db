"""Top tracks of a spilled ingest (``data.spill``): ``top_tracks.build_track_data``, a
partition of the runs at a time, with the same result byte for byte.

The spilling pass keeps each distinct combination of the columns that key and describe a
track (``TRACK_KEY_COLUMNS``: the ids and names both levels' keys come from, and the release
name); every run row carries its combination's hash and its global row index. Then:

* the item and recording keys come from ``listens.key_listens`` over the distinct
  combinations (the identity rule only looks at distinct names: the same keys as over every
  listen), and become integers (``_Codes``): per combination hash its index, recording code
  (into the sorted recording keys), item index and which described columns it has;
* each partition's rows are first reduced to one per (user, track combination): plays, last
  time, latest row (the described columns are the combination's own), then joined to those
  integers once; from there on nothing but integer group-bys;
* per user (each in one partition) the favourites are those of the in-memory path
  (``top_tracks.favourite_rows``), each described column the combination of the latest
  (user, combination) that has it (latest row and combination packed in one int64);
* per (item, recording), the plays of its combinations summed over the partitions, each
  described column from its latest combination: the in-memory "last non-null value in
  the source's order". Strings are decoded for the rows kept only.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tastemaker.data.interactions import Interactions
from tastemaker.data.listens import key_listens
from tastemaker.data.top_tracks import (
    DESCRIPTION,
    decoded,
    favourite_rows,
    index_of,
    item_tags,
    recording_level_tracks,
    top_track_rows,
)
from tastemaker.data.tracks import (
    FAVOURITE_COLUMNS,
    FAVOURITES_PER_USER,
    TRACK_COLUMNS,
    TRACKS_PER_ITEM,
    TrackData,
)
from tastemaker.errors import DataError

# Described columns that may be null on a listen that has a title.
_NULLABLE = tuple(c for c in DESCRIPTION if c != "title")

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
        codes = _Codes(self._keys(interactions.level), interactions)
        users = pl.DataFrame(
            {
                "user": interactions.users.ids,
                "user_index": pl.int_range(0, interactions.n_users, eager=True, dtype=pl.Int32),
            }
        )
        totals, favourites = [], []
        with progress_bar(console) as progress:
            task = progress and progress.add_task("top tracks", total=len(folders))
            for folder in folders:
                # One row per (user, track combination), whose described columns are the
                # combination's own, so its latest row is all that counts; then integers.
                by_user = (
                    pl.scan_parquet(folder / "*.parquet")
                    .group_by("user", "track")
                    .agg(
                        pl.col("count").sum().alias("plays"),
                        pl.col("time").max().alias("last_heard"),
                        pl.col("row").max(),
                    )
                    .join(codes.table.lazy(), on="track", how="inner")
                    .drop("track")
                    .collect()
                )
                # Every user's listens count for the items' tracks, kept users' for theirs.
                totals.append(
                    by_user.group_by("combo").agg(pl.col("plays").sum(), pl.col("row").max())
                )
                kept = by_user.join(users, on="user", how="inner").drop("user")
                kept = kept.rename({"user_index": "user"})
                favourites.append(favourite_rows(codes.pairs(kept, "user"), FAVOURITES_PER_USER))
                del kept, by_user
                if progress:
                    progress.advance(task)
        per_combo = (
            pl.concat(totals).group_by("combo").agg(pl.col("plays").sum(), pl.col("row").max())
            if totals
            else pl.DataFrame(schema={"combo": pl.Int32, "plays": pl.Int64, "row": pl.Int64})
        )
        per_item = codes.pairs(per_combo.join(codes.table, on="combo"), "item")
        tracks = decoded(top_track_rows(per_item, TRACKS_PER_ITEM), TRACK_COLUMNS, *codes.strings)
        chosen = pl.concat(favourites) if favourites else codes.pairs(_empty(), "user")
        chosen = chosen.sort("user", maintain_order=True)  # users are in one partition each
        data = TrackData(
            tracks, decoded(chosen, FAVOURITE_COLUMNS, *codes.strings), item_tags(interactions)
        )
        if interactions.level == "recording":
            data = dataclasses.replace(data, tracks=recording_level_tracks(interactions))
        return dataclasses.replace(interactions, tracks=data)


class _Codes:
    """The track combinations as integers: per hash its combination index, recording code
    (into the sorted recording keys), item index (-1: not an item of the ``Interactions``)
    and which described columns it has; and per combination the described strings."""

    def __init__(self, keys: pl.DataFrame, interactions: Interactions) -> None:
        recordings = keys.get_column("recording").drop_nulls().unique().sort()
        self.size = keys.height
        self.table = pl.DataFrame(
            {
                "track": keys.get_column("track"),
                "combo": np.arange(keys.height, dtype=np.int32),
                "recording": index_of(keys.get_column("recording"), recordings)[:-1],
                "item": index_of(keys.get_column("item_id"), interactions.items.ids)[:-1],
                **{f"known_{c}": keys.get_column(c).is_not_null() for c in _NULLABLE},
            }
        )
        self.strings = recordings, {c: keys.get_column(c) for c in DESCRIPTION}

    def pairs(self, frame: pl.DataFrame, by: str) -> pl.DataFrame:
        """Rows per (``by``, recording) from rows per combination with ``plays``, ``row``
        (its latest; global) and ``last_heard`` where ``by`` is the user: plays summed, the
        item and title of the latest row, each nullable described column of the latest row
        that has it: combination codes, as ``top_tracks.track_pairs`` gives them. Rows of
        no item (or user) are left out."""
        # The latest row and its combination packed in one int64: a plain max.
        rows = frame.get_column("row")
        if len(rows) and int(rows.max()) >= (1 << 62) // max(self.size, 1):  # type: ignore[arg-type]
            raise DataError("too many listens to rank the top tracks of a spilled ingest")
        latest = pl.col("row").cast(pl.Int64) * self.size + pl.col("combo")
        aggregations = [
            pl.col("plays").sum().cast(pl.Int64),
            latest.max().alias("title"),
            *[pl.when(pl.col(f"known_{c}")).then(latest).max().alias(c) for c in _NULLABLE],
        ]
        if by == "user":
            aggregations.append(pl.col("last_heard").max().cast(pl.Int64))
        grouped = frame.group_by(by, "recording").agg(aggregations)
        combo = {c: (pl.col(c) % self.size).fill_null(-1).cast(pl.Int32) for c in DESCRIPTION}
        grouped = grouped.with_columns(**combo)
        if by == "user":
            item = self.table.get_column("item").to_numpy()
            grouped = grouped.with_columns(item=item[grouped.get_column("title").to_numpy()])
        return grouped.filter(
            (pl.col(by) >= 0) & (pl.col("item") >= 0) if by == "user" else pl.col(by) >= 0
        )


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


def _empty() -> pl.DataFrame:
    schema = {
        "user": pl.Int32,
        "recording": pl.Int32,
        "plays": pl.Int64,
        "last_heard": pl.Int64,
        "row": pl.Int64,
        "combo": pl.Int32,
        "item": pl.Int32,
        **{f"known_{c}": pl.Boolean for c in _NULLABLE},
    }
    return pl.DataFrame(schema=schema)


__all__ = ["TRACK_KEY_COLUMNS", "TrackCombinations", "progress_bar"]

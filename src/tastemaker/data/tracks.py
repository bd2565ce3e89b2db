"""Track data beside the matrix: what a playlist needs to turn ranked items into tracks.

An artist-level (or release-level) model ranks artists; a listener presses play on
recordings. Ingest keeps, at a size that grows with items and users but not with listens
(``tastemaker.data.top_tracks`` builds it):

- ``tracks.parquet``: per item its most played recordings (up to ``TRACKS_PER_ITEM``) with
  play counts, titles, release names and recording MBIDs; at recording level, one row per
  item (the item is the track);
- ``favourite_tracks.parquet``: per user their most played recordings and the recordings they
  heard last (up to ``FAVOURITES_PER_USER`` of each), with plays and the last time heard: the
  user's own favourites for "jams", and what they heard recently for freshness rules;
- ``item_tags.parquet``: per item its most used tags (HetRec tags today), for radio terms.

Data with no recordings at all (HetRec has artists only) has empty track tables:
``has_recordings`` is False and playlists fall back to artist lists, saying so. Every file is
untrusted when read back: columns, types and index ranges are checked before use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

TRACKS_FILE = "tracks.parquet"
FAVOURITES_FILE = "favourite_tracks.parquet"
ITEM_TAGS_FILE = "item_tags.parquet"
TRACKS_PER_ITEM = 20
FAVOURITES_PER_USER = 100
TAGS_PER_ITEM = 10

# Column name -> dtype. Keys typed Any: polars' cast takes a Mapping keyed by names or
# selectors, and a Mapping's key type is invariant.
Columns = dict[Any, pl.DataType]
TRACK_COLUMNS: Columns = {
    "item": pl.Int32(),
    "recording": pl.Utf8(),  # the recording's key: its MBID, else normalised "artist | title"
    "title": pl.Utf8(),
    "artist": pl.Utf8(),
    "release": pl.Utf8(),
    "recording_mbid": pl.Utf8(),
    "plays": pl.Int64(),
}
FAVOURITE_COLUMNS: Columns = {
    "user": pl.Int32(),
    **TRACK_COLUMNS,
    "last_heard": pl.Int64(),  # epoch seconds; null where unknown
}
ITEM_TAG_COLUMNS: Columns = {
    "item": pl.Int32(),
    "tag": pl.Utf8(),
    "weight": pl.Int64(),
}


def empty_frame(columns: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=columns)


@dataclass(frozen=True, eq=False)
class TrackData:
    """The three track tables in index space (items / users of the ``Interactions``)."""

    tracks: pl.DataFrame
    favourites: pl.DataFrame = field(default_factory=lambda: empty_frame(FAVOURITE_COLUMNS))
    item_tags: pl.DataFrame = field(default_factory=lambda: empty_frame(ITEM_TAG_COLUMNS))

    @property
    def has_recordings(self) -> bool:
        """False for data that names artists only (HetRec): playlists become artist lists."""
        return self.tracks.height > 0

    # -- lookups -------------------------------------------------------------------------------
    @cached_property
    def _track_offsets(self) -> np.ndarray:
        items = self.tracks["item"].to_numpy()
        size = int(items.max()) + 2 if len(items) else 1
        return np.searchsorted(items, np.arange(size)).astype(np.int64)

    def offsets(self, n_items: int) -> np.ndarray:
        """Row offsets per item: item i's tracks are rows ``offsets[i]:offsets[i + 1]``."""
        items = self.tracks["item"].to_numpy()
        return np.searchsorted(items, np.arange(n_items + 1)).astype(np.int64)

    def item_tracks(self, item: int) -> pl.DataFrame:
        """The item's recordings, most played first (empty when none is known)."""
        offsets = self._track_offsets
        if item + 1 >= len(offsets):
            return self.tracks.clear()
        return self.tracks.slice(int(offsets[item]), int(offsets[item + 1] - offsets[item]))

    @cached_property
    def _favourites_by_user(self) -> dict[int, pl.DataFrame]:
        return {
            int(key[0]): frame
            for key, frame in self.favourites.partition_by("user", as_dict=True).items()
        }

    @cached_property
    def _no_favourites(self) -> pl.DataFrame:
        return self.favourites.clear()

    def user_favourites(self, user: int) -> pl.DataFrame:
        """The user's most played recordings, most played first (empty when none: one empty
        frame for every such user, not a new one per call)."""
        return self._favourites_by_user.get(user, self._no_favourites)

    @cached_property
    def tag_items(self) -> dict[str, pl.DataFrame]:
        """Lower-cased tag -> (item, weight) rows, heaviest first."""
        frame = self.item_tags.with_columns(pl.col("tag").str.to_lowercase())
        return {
            str(key[0]): part.sort("weight", descending=True)
            for key, part in frame.partition_by("tag", as_dict=True).items()
        }

    def item_tag_names(self, item: int) -> list[str]:
        return self.item_tags.filter(pl.col("item") == item)["tag"].to_list()

    # -- persistence ---------------------------------------------------------------------------
    def write_into(self, directory: Path) -> None:
        """Write the three tables into a (temporary) directory whose manifest lists them.

        Rechunked first: polars cuts row groups along a frame's chunks, which the streaming
        engine leaves wherever its threads did, so the same rows gave other bytes."""
        self.tracks.rechunk().write_parquet(directory / TRACKS_FILE)
        self.favourites.rechunk().write_parquet(directory / FAVOURITES_FILE)
        self.item_tags.rechunk().write_parquet(directory / ITEM_TAGS_FILE)

    @classmethod
    def read(cls, directory: Path, n_users: int, n_items: int) -> TrackData | None:
        """The tables of ``directory`` (None when it has none), checked; ValueError naming
        the file and what is wrong."""
        if not (directory / TRACKS_FILE).exists():
            return None
        bounds = {"item": n_items, "user": n_users}
        tracks = _checked(directory / TRACKS_FILE, TRACK_COLUMNS, bounds)
        favourites = _checked(directory / FAVOURITES_FILE, FAVOURITE_COLUMNS, bounds)
        tags = _checked(directory / ITEM_TAGS_FILE, ITEM_TAG_COLUMNS, bounds)
        if not tracks["item"].is_sorted():
            raise ValueError(f"{TRACKS_FILE} must be sorted by item")
        return cls(tracks, favourites, tags)


def _checked(path: Path, columns: dict[str, pl.DataType], bounds: dict[str, int]) -> pl.DataFrame:
    frame = pl.read_parquet(path)
    if frame.schema != pl.Schema(columns):
        raise ValueError(f"{path.name} must have the columns {dict(columns)}, not {frame.schema}")
    for column, size in bounds.items():
        if column in frame.columns and frame.height:
            low, high = frame[column].min(), frame[column].max()
            if frame[column].null_count() or low is None or low < 0 or high >= size:  # type: ignore[operator]
                raise ValueError(
                    f"{path.name}: column {column} holds an index outside 0..{size - 1}"
                )
    for column in ("plays", "weight"):
        if column in frame.columns and frame.height and (frame[column].min() or 0) < 0:  # type: ignore[operator]
            raise ValueError(f"{path.name}: column {column} holds a negative value")
    return frame

"""Builds ``TrackData`` (``tastemaker.data.tracks``) from the integer codes ingest encodes.

``encode_listens`` hands over every listen's user, item and recording as codes (keyed by the
identity rule it ran: one rule per ingest) and the described columns as categorical codes
(``listens.TrackCodes``); ``track_pairs`` reduces them at once, on integers only, to plays
per (item, recording) and per (user, recording), with each described column's code from the
group's last listen in the source's order that has it ("the last spelling"), and the
(user, recording)'s item from its last listen. Memory follows the distinct pairs. Once the
filters have run, ``TrackPairs.track_data`` keeps the top ``TRACKS_PER_ITEM`` recordings per
item and the ``FAVOURITES_PER_USER`` most played and heard last per user (integer sorts;
recording codes order as their keys do), and decodes strings for those rows only. Items and
users are the ``Interactions``' own (after filters): a recording of an item the filters
removed is dropped.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from tastemaker.data.interactions import UNKNOWN_TIME, Interactions
from tastemaker.data.listens import TrackCodes, encode_listens, gather_strings
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
# Described columns that may be null on a listen that has a title: the last listen that has
# each one describes the group.
_NULLABLE = ("artist", "release", "recording_mbid")
# Sort keys packed into one int64 when they fit in this many bits (else a multi-column sort).
KEY_BITS = 63


@dataclasses.dataclass
class TrackPairs:
    """Plays per (item, recording) and per (user, recording) as codes (``track_pairs``), with
    the vocabularies the codes index: sorted item, user and recording keys, described strings.
    """

    per_track: pl.DataFrame  # item, recording, plays, then a code per DESCRIPTION column
    per_user: pl.DataFrame  # user, recording, plays, last_heard, item, codes per DESCRIPTION
    items: pl.Series
    users: pl.Series
    recordings: pl.Series
    strings: dict[str, pl.Series]

    def track_data(
        self,
        interactions: Interactions,
        per_item: int = TRACKS_PER_ITEM,
        per_user: int = FAVOURITES_PER_USER,
    ) -> TrackData:
        """Top recordings per item and per user, in ``interactions``' index space."""
        item_index = index_of(self.items, interactions.items.ids)
        user_index = index_of(self.users, interactions.users.ids)
        tracks = self.per_track.with_columns(item=item_index[self.per_track["item"].to_numpy()])
        tracks = tracks.filter(pl.col("item") >= 0)
        pairs = self.per_user.with_columns(
            user=user_index[self.per_user["user"].to_numpy()],
            item=item_index[self.per_user["item"].to_numpy()],
        ).filter((pl.col("user") >= 0) & (pl.col("item") >= 0))
        codes = self.recordings, self.strings
        return TrackData(
            decoded(top_track_rows(tracks, per_item), TRACK_COLUMNS, *codes),
            decoded(favourite_rows(pairs, per_user), FAVOURITE_COLUMNS, *codes),
            item_tags(interactions),
        )


def top_track_rows(tracks: pl.DataFrame, per_item: int = TRACKS_PER_ITEM) -> pl.DataFrame:
    """Per item (index space) its ``per_item`` most played recordings, most played first."""
    order, first = _ranked(tracks, "item", "plays", per_item)
    return tracks[order[first[order]]]


def favourite_rows(pairs: pl.DataFrame, per_user: int = FAVOURITES_PER_USER) -> pl.DataFrame:
    """``most_played_and_latest`` on codes (index space): per user the most played and the
    heard last, most played first."""
    order, played = _ranked(pairs, "user", "plays", per_user)
    _, recent = _ranked(pairs, "user", "last_heard", per_user)
    return pairs[order[(played | recent)[order]]]


def decoded(
    frame: pl.DataFrame, columns: dict, recordings: pl.Series, strings: dict[str, pl.Series]
) -> pl.DataFrame:
    """``frame``'s codes as strings (only its rows are decoded), in ``columns``' types:
    ``recording`` into ``recordings``, each ``DESCRIPTION`` column into its ``strings``."""
    values = {
        "recording": gather_strings(recordings, frame["recording"].to_numpy()),
        **{c: gather_strings(strings[c], frame[c].to_numpy()) for c in DESCRIPTION},
    }
    frame = frame.with_columns(**{c: s.alias(c) for c, s in values.items()})
    return frame.select(list(columns)).cast(columns)


def _ranked(frame: pl.DataFrame, group: str, by: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows in order of ``group``, then ``by`` descending (null first, as polars sorts a
    null), then recording code (the keys' order; code -1, no key, first), and which rows are
    among the first ``size`` of their group in that order. One sort of a packed int64 key
    where the three fit in 63 bits (a multi-column sort is several times slower)."""
    groups = frame[group].to_numpy().astype(np.int64)
    recording = frame["recording"].to_numpy().astype(np.int64) + 1
    known = frame[by].is_not_null().to_numpy()
    raw = frame[by].fill_null(0).to_numpy().astype(np.int64)
    # Descending, nulls first: null 0, the greatest value 1, the least high - low + 1.
    high, low = (int(raw[known].max()), int(raw[known].min())) if known.any() else (0, 0)
    value = np.where(known, high - raw + 1, 0)
    bits = [int(x.max()).bit_length() if len(x) else 0 for x in (groups, recording)]
    spread = (high - low + 1).bit_length()
    if sum(bits) + spread <= KEY_BITS:
        key = (groups << np.int64(spread + bits[1])) | (value << np.int64(bits[1])) | recording
        order = pl.Series(key).arg_sort().to_numpy()
    else:
        columns = pl.DataFrame({"g": groups, "v": value, "r": recording})
        order = columns.select(pl.arg_sort_by("g", "v", "r")).to_series().to_numpy()
    ordered = groups[order]
    rank = np.arange(len(order)) - np.searchsorted(ordered, ordered)
    first = np.zeros(len(order), dtype=bool)
    first[order] = rank < size
    return order, first


def index_of(keys: pl.Series, ids: pl.Series) -> np.ndarray:
    """Per key (by code) its index in ``ids`` (-1: not there), with a last slot for code -1."""
    index = pl.DataFrame({"key": ids, "index": np.arange(len(ids), dtype=np.int32)})
    joined = keys.rename("key").to_frame().join(index, on="key", how="left", maintain_order="left")
    found = joined.get_column("index").fill_null(-1).to_numpy().astype(np.int32)
    return np.append(found, np.int32(-1))


def track_pairs(codes: TrackCodes) -> TrackPairs:
    """Reduce a listen's ``TrackCodes`` to ``TrackPairs``: listens without a title (null or
    empty) are left out; the group-bys run on integer columns only."""
    title_codes, titles = codes.described["title"]
    titled = np.append((titles.str.len_bytes() > 0).fill_null(False).to_numpy(), False)
    columns = {
        "user": codes.user,
        "item": codes.item,
        "recording": codes.recording,
        **{c: codes.described[c][0] for c in _NULLABLE},
        "titled": titled[title_codes],
    }
    if codes.count is not None:
        columns["count"] = codes.count
    if codes.time is not None:
        columns["time"] = codes.time
    # Per nullable column the row where it is known (null elsewhere): plain max aggregations.
    listens = (
        pl.DataFrame(columns)
        .lazy()
        .with_row_index("row")
        .filter(pl.col("titled"))
        .with_columns(pl.when(pl.col(c) >= 0).then(pl.col("row")).alias(c) for c in _NULLABLE)
    )
    plays = (pl.col("count").sum() if codes.count is not None else pl.len()).cast(pl.Int64)
    last = [pl.col("row").max().alias("last")] + [pl.col(c).max() for c in _NULLABLE]
    heard = pl.lit(None, pl.Int64)
    if codes.time is not None:  # null where no listen of the pair has a time
        heard = pl.when(pl.col("time").max() != UNKNOWN_TIME).then(pl.col("time").max())
    # One int64 key per pair (recording code + 1 in the low digits): a faster group-by.
    width = len(codes.recordings) + 1

    def pairs(by: str, *more: pl.Expr) -> pl.DataFrame:
        key = pl.col(by).cast(pl.Int64) * width + pl.col("recording") + 1
        grouped = (
            listens.filter(pl.col(by) >= 0)
            .group_by(key.alias("key"))
            .agg(plays.alias("plays"), *more, *last)
            .collect(engine="streaming")
        )
        key_values = grouped.get_column("key")
        return grouped.select(
            (key_values // width).cast(pl.Int32).alias(by),
            (key_values % width - 1).cast(pl.Int32).alias("recording"),
            pl.exclude("key"),
        )

    per_track = pairs("item")
    per_user = pairs("user", heard.cast(pl.Int64).alias("last_heard"))
    return TrackPairs(
        _described(per_track, codes),
        _described(per_user, codes, with_item=True),
        codes.items,
        codes.users,
        codes.recordings,
        {c: strings for c, (_, strings) in codes.described.items()},
    )


def _described(frame: pl.DataFrame, codes: TrackCodes, with_item: bool = False) -> pl.DataFrame:
    """Rows of the group-bys -> codes: each described column's code at its last listen."""

    def at(values: np.ndarray, rows: pl.Series) -> np.ndarray:
        known = rows.is_not_null().to_numpy()
        return np.where(known, values[rows.fill_null(0).to_numpy()], -1).astype(values.dtype)

    last = frame["last"]
    frame = frame.with_columns(
        title=at(codes.described["title"][0], last),
        **{c: at(codes.described[c][0], frame[c]) for c in _NULLABLE},
    )
    if with_item:
        frame = frame.with_columns(item=at(codes.item, last))
    return frame.drop("last")


class TrackCollector:
    """Collects the ``TrackPairs`` of an ``encode_listens`` pass (``add`` is its ``tracks``
    callback) for ``attach`` once the filters have run."""

    def __init__(self) -> None:
        self.pairs: TrackPairs | None = None

    def add(self, codes: TrackCodes) -> None:
        self.pairs = track_pairs(codes)

    def attach(self, interactions: Interactions) -> Interactions:
        """``interactions`` with its ``TrackData`` (the ingest hook)."""
        if self.pairs is None:
            raise RuntimeError("no listens were encoded for the track tables")
        data = self.pairs.track_data(interactions)
        if interactions.level == "recording":
            data = dataclasses.replace(data, tracks=recording_level_tracks(interactions))
        return dataclasses.replace(interactions, tracks=data)


def build_track_data(
    listens: pl.LazyFrame,
    interactions: Interactions,
    per_item: int = TRACKS_PER_ITEM,
    per_user: int = FAVOURITES_PER_USER,
) -> TrackData:
    """Top recordings per item and per user of ``listens``, in ``interactions``' index space
    (one encoding pass of ``listens`` at the interactions' level)."""
    collector = TrackCollector()
    encode_listens(listens, interactions.level, tracks=collector.add)
    assert collector.pairs is not None
    return collector.pairs.track_data(interactions, per_item, per_user)


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
    """``interactions`` with the ``TrackData`` of ``listens`` (encoded once more; ingest
    collects the codes of its own pass instead: ``TrackCollector``)."""
    collector = TrackCollector()
    encode_listens(listens, interactions.level, tracks=collector.add)
    return collector.attach(interactions)


__all__ = [
    "DESCRIPTION",
    "TrackCollector",
    "TrackPairs",
    "attach_tracks",
    "build_track_data",
    "decoded",
    "favourite_rows",
    "index_of",
    "most_played_and_latest",
    "top_track_rows",
    "track_pairs",
]

"""The catalogue's tracks as arrays, built once per model: what a request reads them through.

``tracks.parquet`` (``data/tracks.py``) is sorted by item, so item i's recordings are rows
``offsets[i]:offsets[i + 1]``, most played first. A playlist scores hundreds of candidate
tracks and keeps a few dozen, so scoring works on numpy arrays (plays, each item's total and
its least played track) and ``Track`` objects are made only for the rows a playlist looks at,
a gather of those rows at a time (``tracks``: an Arrow ``take``, several times faster than a
polars row gather of the frame). The keys the rules compare (``Track.recording`` or the item,
``Track.song_key``) are kept per row as 64-bit hashes (``recording_hash``, ``song_hash``), so
a playlist can apply the rules before it makes any object (``playlists.picking``); equal keys
have equal hashes, and a hash match is confirmed on the keys themselves.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tastemaker.data.tracks import TrackData
from tastemaker.playlists.playlist import Track, normalised

_new = object.__new__
# Rows kept as Python values between requests (cleared when full): popular artists' tracks
# come up in most playlists, and reading them out of Arrow is most of what making one costs.
ROW_CACHE_ROWS = 200_000
# The columns a ``Track`` is made of, in this order (``make``).
_FIELDS = ("artist", "title", "release", "recording_mbid", "recording", "plays")
# Rows hashed at a time when the table is built (bounds the Python strings alive at once).
HASH_CHUNK = 1 << 18
_WORD = (1 << 64) - 1
_MIX = 0x9E3779B97F4A7C15  # an odd 64-bit constant: a song's hash is artist * _MIX ^ title


def song_hash(artist_key: str, title_key: str) -> int:
    """The hash of a song key ``(artist_key, title_key)`` (``Track.song_key``), as a signed
    64-bit integer: what ``TrackTable.song_hash`` holds per row."""
    value = ((hash(artist_key) & _WORD) * _MIX & _WORD) ^ (hash(title_key) & _WORD)
    return value - (1 << 64) if value >= 1 << 63 else value


def recording_hash(recording: str | None, item: int) -> int:
    """The hash of the key the rules tell recordings apart by (the recording, else the item)."""
    return hash(recording if recording is not None else f"item:{item}")


class TrackTable:
    """Offsets, plays and per-item totals of the catalogue's tracks; ``Track``s on demand."""

    def __init__(
        self,
        track_data: TrackData,
        item_artist: list[str],
        n_items: int,
        item_artist_key: list[str] | None = None,
    ) -> None:
        frame = track_data.tracks
        # One Arrow record batch of single-chunk columns: one ``take`` per gather.
        self._batch = pa.RecordBatch.from_arrays(
            [frame[name].rechunk().to_arrow() for name in _FIELDS], names=list(_FIELDS)
        )
        self._item_artist = item_artist
        self._rows: dict[int, tuple] = {}  # row -> its values (``ROW_CACHE_ROWS`` at most)
        # The rules' artist keys (``Track.artist_key``), set on each track made: no renormalising.
        self._item_artist_key = item_artist_key or [normalised(a) for a in item_artist]
        self.offsets = track_data.offsets(n_items)
        self.plays = track_data.tracks["plays"].to_numpy().astype(np.int64)
        self.counts = np.diff(self.offsets)
        starts = self.offsets[:-1]
        has = self.counts > 0
        # Sum and least plays per item: reduceat over the items that have rows.
        self.total = np.zeros(n_items, np.float64)
        self.least = np.zeros(n_items, np.int64)
        if has.any():
            self.total[has] = np.add.reduceat(self.plays, starts[has])
            self.least[has] = np.minimum.reduceat(self.plays, starts[has])
        # As a playlist divides by them: an item with no plays counts 1 (and least 0 -> 1).
        self.total[self.total == 0] = 1.0
        self.least[self.least == 0] = 1
        self.recording_hash, self.song_hash = self._key_hashes(track_data)

    def _key_hashes(self, track_data: TrackData) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the hashes of its recording key and its song key (``song_hash``), a chunk
        of rows at a time; titles are normalised once each."""
        frame = track_data.tracks
        artist = np.asarray([hash(k) for k in self._item_artist_key], np.int64).view(np.uint64)
        recordings = np.empty(frame.height, np.int64)
        songs = np.empty(frame.height, np.uint64)
        titles: dict[str | None, int] = {}
        for start in range(0, frame.height, HASH_CHUNK):
            part = frame.slice(start, HASH_CHUNK)
            items = part["item"].to_list()
            stop = start + len(items)
            recordings[start:stop] = [
                recording_hash(r, i)
                for r, i in zip(part["recording"].to_list(), items, strict=True)
            ]
            keys = []
            for title, item in zip(part["title"].to_list(), items, strict=True):
                if not title:  # Track.song_key of an untitled track: the item
                    keys.append(hash(f"#{item}"))
                    continue
                code = titles.get(title)
                if code is None:
                    code = titles[title] = hash(normalised(title))
                keys.append(code)
            with np.errstate(over="ignore"):
                songs[start:stop] = (artist[np.asarray(items, np.int64)] * np.uint64(_MIX)) ^ (
                    np.asarray(keys, np.int64).view(np.uint64)
                )
        return recordings, songs.view(np.int64)

    def rows_of(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every row of each item, in item order: ``(position, within, row)`` per row, where
        ``position`` indexes ``items``; an item with no rows gets one with row -1 (an artist
        entry)."""
        items = np.asarray(items, dtype=np.int64)
        counts = self.counts[items]
        sizes = np.maximum(counts, 1)
        position = np.repeat(np.arange(len(items)), sizes)
        within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        rows = np.where(counts[position] > 0, self.offsets[items][position] + within, -1)
        return position, within, rows

    def plays_of(self, rows: np.ndarray) -> np.ndarray:
        """Everyone's plays of each row (0 for an artist entry, row -1)."""
        played = np.zeros(len(rows), np.int64)
        known = rows >= 0
        played[known] = self.plays[rows[known]]
        return played

    def recordings(self, item: int) -> list[str | None]:
        """The item's recording keys, most played first."""
        start, stop = int(self.offsets[item]), int(self.offsets[item + 1])
        return self._batch.column(_FIELDS.index("recording")).slice(start, stop - start).to_pylist()

    def tracks(
        self, items: np.ndarray, rows: np.ndarray, reasons: list[str], new: list[bool]
    ) -> list[Track]:
        """One ``Track`` per (item, row), with its reason and discovery flag; row -1 is the
        item as an artist entry."""
        known = rows >= 0
        values = iter(self.values(rows[known]))
        out = []
        for item, has, reason, discovery in zip(
            items.tolist(), known.tolist(), reasons, new, strict=True
        ):
            if has:
                out.append(self.make(item, next(values), reason, discovery))
            else:
                track = Track(item, self._item_artist[item], None, reason=reason,
                              discovery=discovery)  # fmt: skip
                track.__dict__["artist_key"] = self._item_artist_key[item]
                out.append(track)
        return out

    def values(self, rows: np.ndarray) -> list[tuple]:
        """Each row's values (``_FIELDS``): from the cache, the rest in one Arrow ``take``."""
        cache = self._rows
        wanted = rows.tolist()
        missing = [r for r in wanted if r not in cache]
        if missing:
            if len(cache) + len(missing) > ROW_CACHE_ROWS:
                cache.clear()  # bounded: a large catalogue is never held whole
            taken = self._batch.take(np.asarray(missing, np.int64))  # no Arrow array first
            columns = [column.to_pylist() for column in taken.columns]
            cache.update(zip(missing, zip(*columns, strict=True), strict=True))
        return [cache[r] for r in wanted]

    def item_tracks(self, item: int) -> list[Track]:
        """The item's tracks, most played first (an artist entry where none is known)."""
        start, stop = int(self.offsets[item]), int(self.offsets[item + 1])
        if start == stop:
            return [Track(item=item, artist=self._item_artist[item], title=None)]
        rows = self._batch.slice(start, stop - start)
        columns = [column.to_pylist() for column in rows.columns]
        return [self.make(item, values) for values in zip(*columns, strict=True)]

    def make(self, item: int, values: tuple, reason: str = "", discovery: bool = False) -> Track:
        credit, title, release, mbid, recording, plays = values
        artist = self._item_artist[item]
        # What ``Track(...)`` sets, written at once: a frozen dataclass's ``__init__`` sets
        # its 11 fields one ``object.__setattr__`` at a time, most of what making one costs.
        track = _new(Track)
        track.__dict__.update(
            item=item,
            artist=artist,
            title=title,
            release=release,
            recording_mbid=mbid,
            recording=recording,
            reason=reason,
            score=0.0,
            discovery=discovery,
            credit=credit if credit not in (None, artist) else None,
            plays=plays,
            artist_key=self._item_artist_key[item],  # the cached property's slot
        )
        return track

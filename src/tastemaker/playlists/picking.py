"""A personal playlist's tracks chosen on arrays: candidates as rows, the rules on their keys.

A 50-track playlist looks at about 80 of the ~2,000 tracks of its candidate artists and keeps
50. ``weighted_pool`` weighs every candidate on the track table's arrays, sorts them and keeps
per candidate what the rules compare: the recording and song keys as the track table's
hashes (``TrackTable.recording_hash`` / ``song_hash``), the artist key and the freshness
verdict. ``Picker`` applies the rules of ``constraints.Selection`` to candidates by position
(the same checks in the same order, the same refusal counts), and ``Track`` objects are made
only for the tracks picked, in one gather (``picked_tracks``). A hash match is confirmed on
the keys themselves (``Pool.keys``): a collision never refuses a track.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from tastemaker.playlists.constraints import Freshness, Rules, describe_shortfall, recording_key
from tastemaker.playlists.playlist import Track, normalised
from tastemaker.playlists.track_table import recording_hash, song_hash

if TYPE_CHECKING:
    from tastemaker.playlists.candidates import Ranked
    from tastemaker.playlists.library import Library, Listener

DAILY_NOISE = 0.15
# A favourite of the listener's counts this much more than its share of everyone's plays.
FAVOURITE_BOOST = 1.5
# Row marks of favourites among the candidates (rows >= 0 are track table rows, -1 artist entries).
FAVOURITE_ROW = -2
# Candidates a pool first turns into Python values (then as many again each time: 32, 64, ...).
FIRST_CHUNK = 32


class Pool:
    """One pool's candidate tracks, best first: numpy arrays of the whole pool, and as
    Python lists (what the rules read, one candidate at a time) the front of it, extended a
    chunk at a time as a playlist reads on (``extend``): a playlist reads ~60 of ~1,200."""

    def __init__(
        self,
        library: Library,
        listener: Listener,
        freshness: Freshness,
        arrays: tuple[np.ndarray, np.ndarray] | None = None,
        favourites: list[Track] | None = None,
    ) -> None:
        self.table = table = library.table
        self._artist_keys = library.item_artist_key
        self._known = listener.known
        self._freshness = freshness
        self.favourites = favourites or []  # the listener's, by FAVOURITE_ROW - k
        items, rows = arrays if arrays is not None else (np.zeros(0, np.int64),) * 2
        self.size = len(rows)
        is_row = rows >= 0
        self._arrays = (items, rows, np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64))
        self._arrays[2][is_row] = table.recording_hash[rows[is_row]]
        self._arrays[3][is_row] = table.song_hash[rows[is_row]]
        recent = freshness.recent if freshness.rule == "not-recent" else frozenset()
        self._recent = np.fromiter((hash(r) for r in recent), np.int64, len(recent))
        self.items: list[int] = []
        self.rows: list[int] = []  # -1: an artist entry; FAVOURITE_ROW - k: favourite k
        self.recording: list[int] = []  # hashes of the rules' keys
        self.song: list[int] = []
        self.artist: list[str] = []  # Track.artist_key
        self.discovery: list[bool] = []  # an artist the listener never played
        self.stale: list[bool] = []  # the freshness rule refuses it

    def __len__(self) -> int:
        return self.size

    def extend(self, upto: int) -> None:
        """Have the lists hold at least the first ``upto`` candidates (a chunk at a time)."""
        while len(self.rows) < min(upto, self.size):
            start = len(self.rows)
            self._convert(start, min(start + max(FIRST_CHUNK, start), self.size))

    def _convert(self, start: int, stop: int) -> None:
        items, rows, recording, song = (a[start:stop].tolist() for a in self._arrays)
        artist = [self._artist_keys[i] for i in items]
        discovery = [a not in self._known for a in artist]
        rule = self._freshness.rule
        stale = [a in self._freshness.known for a in artist] if rule == "new-artists" else []
        stale = stale or [False] * len(rows)
        self.items += items
        self.rows += rows
        self.recording += recording
        self.song += song
        self.artist += artist
        self.discovery += discovery
        self.stale += stale
        if len(self._recent):  # hashes of recent recordings: confirmed on the recordings
            hits = np.isin(self._arrays[2][start:stop], self._recent)
            for i in (start + np.flatnonzero(hits)).tolist():
                self.stale[i] = self.rows[i] >= 0 and self.recording_of(i) in self._freshness.recent
        for i in (start + np.flatnonzero(self._arrays[1][start:stop] < 0)).tolist():
            self._own_keys(i)

    def _own_keys(self, i: int) -> None:
        """The keys of an artist entry (no recording, no title) or a favourite (its own)."""
        track = self.favourite(i)
        if track is None:
            item = self.items[i]
            self.recording[i] = recording_hash(None, item)
            self.song[i] = song_hash(self.artist[i], f"#{item}")
            return
        self.recording[i] = recording_hash(track.recording, track.item)
        self.song[i] = song_hash(*track.song_key)
        self.artist[i] = track.artist_key
        self.discovery[i] = track.discovery
        self.stale[i] = not self._freshness.allows(track)

    def favourite(self, i: int) -> Track | None:
        row = self.rows[i]
        return self.favourites[FAVOURITE_ROW - row] if row <= FAVOURITE_ROW else None

    def recording_of(self, i: int) -> str | None:
        """The candidate's recording key of the track tables (None for an artist entry)."""
        track, row = self.favourite(i), self.rows[i]
        if track is not None:
            return track.recording
        return None if row < 0 else self.table.values(np.asarray([row]))[0][4]

    def keys(self, i: int) -> tuple[str, tuple[str, str]]:
        """The recording and song keys the candidate's hashes stand for (``Track``'s)."""
        track = self.favourite(i)
        if track is not None:
            return recording_key(track), track.song_key
        item, row = self.items[i], self.rows[i]
        title = None if row < 0 else self.table.values(np.asarray([row]))[0][1]
        recording = self.recording_of(i)
        return (
            recording if recording is not None else f"item:{item}",
            (self.artist[i], normalised(title) if title else f"#{item}"),
        )


class Stream:
    """A pool built on first use (its noise is drawn then: the order of draws is the order
    in which a playlist first takes from each pool), read front to back."""

    def __init__(self, build: Callable[[], Pool]) -> None:
        self._build: Callable[[], Pool] | None = build
        self._pool: Pool | None = None
        self.position = 0

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            assert self._build is not None
            self._pool, self._build = self._build(), None
        return self._pool

    def next(self) -> int | None:
        """The next candidate's position in ``pool``, or None when the pool is spent."""
        pool = self.pool
        i = self.position
        if i >= pool.size:
            return None
        self.position = i + 1
        if i >= len(pool.rows):
            pool.extend(i + 1)
        return i


class Picker:
    """``constraints.Selection`` on candidates by position: ``offer(pool, i)`` picks the
    candidate when it keeps every rule but the order, and says whether it did."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.picked: list[tuple[Pool, int]] = []
        self._recordings: dict[int, list[tuple[Pool, int]]] = {}
        self._songs: dict[int, list[tuple[Pool, int]]] = {}
        self._per_artist: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    @property
    def full(self) -> bool:
        return len(self.picked) >= self.rules.length

    def offer(self, pool: Pool, i: int) -> bool:
        if self.full:
            return False
        reason = None
        if self._repeats(pool, i):
            reason = "duplicate"
        elif self._per_artist[pool.artist[i]] >= self.rules.max_per_artist:
            reason = "per-artist limit"
        elif pool.stale[i]:
            reason = "freshness"
        if reason is not None:
            self.refused[reason] += 1
            return False
        entry = (pool, i)
        self.picked.append(entry)
        self._recordings.setdefault(pool.recording[i], []).append(entry)
        self._songs.setdefault(pool.song[i], []).append(entry)
        self._per_artist[pool.artist[i]] += 1
        return True

    def _repeats(self, pool: Pool, i: int) -> bool:
        """The recording or the song picked already (a hash match, confirmed on the keys)."""
        recordings = self._recordings.get(pool.recording[i], ())
        songs = self._songs.get(pool.song[i], ())
        if not recordings and not songs:
            return False
        recording, song = pool.keys(i)
        return any(p.keys(j)[0] == recording for p, j in recordings) or any(
            p.keys(j)[1] == song for p, j in songs
        )

    def shortfall(self, pool: str) -> str | None:
        """Why the selection is short (None when full), as ``Selection.shortfall`` says it."""
        return None if self.full else describe_shortfall(pool, self.refused)


def picked_tracks(library: Library, picker: Picker, reasons: dict[int, str]) -> list[Track]:
    """The picked candidates as ``Track``s, in the order picked: the favourites as they are,
    the rows made in one gather with their reasons (``reasons``: a discovery's, by item)."""
    entries = [(p, i) for p, i in picker.picked if p.favourite(i) is None]
    items = np.asarray([p.items[i] for p, i in entries], np.int64)
    rows = np.asarray([p.rows[i] for p, i in entries], np.int64)
    made = iter(
        library.table.tracks(
            items,
            rows,
            [
                reasons[item] if p.discovery[i] else f"because you play {library.item_artist[item]}"
                for (p, i), item in zip(entries, items.tolist(), strict=True)
            ],
            [p.discovery[i] for p, i in entries],
        )
    )
    out = []
    for p, i in picker.picked:
        favourite = p.favourite(i)
        out.append(favourite if favourite is not None else next(made))
    return out


def _score_weights(scores: np.ndarray) -> np.ndarray:
    """Model scores as positive weights (min-max over the pool, a floor for the last)."""
    if not len(scores):
        return scores.astype(np.float64)
    low, high = float(scores.min()), float(scores.max())
    spread = high - low if high > low else 1.0
    return (scores.astype(np.float64) - low) / spread + 0.01


def _play_shares(listener: Listener, items: np.ndarray) -> np.ndarray:
    """Each item's share of the listener's plays (0 for an item they never played)."""
    history = listener.history
    indices, data = history.indices, history.data
    if len(indices) > 1 and not (np.diff(indices) > 0).all():  # unsorted, or repeated items
        plays = dict(zip(history.indices.tolist(), history.data.tolist(), strict=True))
        total = sum(plays.values()) or 1.0
        return np.asarray([plays.get(int(i), 0.0) / total for i in items], np.float64)
    total = sum(data.tolist()) or 1.0  # added in order, as the dict's values were
    shares = np.zeros(len(items), np.float64)
    if len(indices):
        at = np.minimum(np.searchsorted(indices, items), len(indices) - 1)
        found = indices[at] == items
        shares[found] = data[at[found]].astype(np.float64) / total
    return shares


def weighted_pool(
    library: Library,
    listener: Listener,
    ranked: Ranked,
    rng: np.random.Generator | None,
    loved: bool,
    freshness: Freshness,
) -> Pool:
    """Candidate tracks by how likely the listener is to play them: an artist's weight (the
    model's score; for ``loved`` artists, its geometric mean with the listener's own share of
    plays) times the track's share of the artist's plays, the listener's favourites boosted
    (``FAVOURITE_BOOST``). The day's generator adds a little noise (``DAILY_NOISE``, in log
    space) so the list changes from day to day. Worked out on the track table's arrays."""
    items, scores = ranked
    weights = _score_weights(scores)
    if loved:
        weights = np.sqrt(weights * _play_shares(listener, items))
    table = library.table
    position, within, rows = table.rows_of(items)
    item_of = items[position]
    played = table.plays_of(rows)
    keys = np.where(
        played > 0, weights[position] * played / table.total[item_of], weights[position]
    )
    favourites: list[Track] = []
    if loved and listener.favourites:
        keys, rows, item_of, favourites = _with_favourites(
            library, listener, items, weights, (position, within, rows, keys)
        )
    if not len(keys):
        return Pool(library, listener, freshness)
    if rng is not None:
        keys = keys * np.exp(DAILY_NOISE * rng.gumbel(size=len(keys)))
    order = np.argsort(-keys, kind="stable")
    return Pool(library, listener, freshness, (item_of[order], rows[order]), favourites)


def _with_favourites(
    library: Library,
    listener: Listener,
    items: np.ndarray,
    weights: np.ndarray,
    entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Track]]:
    """The candidates with each item's favourites of the listener first (weighted by
    everyone's plays of that recording, or the item's least played track's, boosted), then
    the item's other tracks. A favourite's row is ``FAVOURITE_ROW - k``, k indexing the list
    returned with the keys, rows and items."""
    position, within, rows, keys = entries
    table = library.table
    keep = np.ones(len(rows), bool)
    extra_position: list[int] = []
    extra_keys: list[float] = []
    favourites: list[Track] = []
    for p, item in enumerate(items.tolist()):
        own = listener.favourites.get(item)
        if not own:
            continue
        start, stop = int(table.offsets[item]), int(table.offsets[item + 1])
        recordings = table.recordings(item)
        everyone = dict(zip(recordings, table.plays[start:stop].tolist(), strict=True))
        for favourite in own:
            share = everyone.get(favourite.recording, int(table.least[item])) / table.total[item]
            extra_position.append(p)
            extra_keys.append(weights[p] * share * FAVOURITE_BOOST)
            favourites.append(favourite)
        taken = {t.recording for t in own}
        if recordings:  # the item's rows, in table order, are its rows among the candidates
            first = int(np.searchsorted(position, p))
            keep[first : first + len(recordings)] = [
                r is None or r not in taken for r in recordings
            ]
    count = len(favourites)
    all_position = np.concatenate([position[keep], np.asarray(extra_position, np.int64)])
    # Per item: favourites first (part 0, in the listener's order), then its tracks (part 1).
    part = np.concatenate([np.ones(int(keep.sum()), np.int64), np.zeros(count, np.int64)])
    sequence = np.concatenate([within[keep], np.arange(count)])
    order = np.lexsort((sequence, part, all_position))
    all_rows = np.concatenate([rows[keep], FAVOURITE_ROW - np.arange(count)])[order]
    all_keys = np.concatenate([keys[keep], np.asarray(extra_keys, np.float64)])[order]
    return all_keys, all_rows, items[all_position[order]], favourites

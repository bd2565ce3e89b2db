"""A model and what playlists need of its catalogue, worked out once per model.

``Library`` turns model items into tracks (an artist-level item becomes its most played
recordings; a recording-level item is its own track; data with no recordings makes an artist
entry) and knows each item's artist and popularity. ``Listener`` is who a playlist is for, as
of a date: their history, the artists they know, what they heard lately and their favourite
recordings. The service keeps one ``Library`` per loaded model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from tastemaker.data.interactions import UNKNOWN_TIME
from tastemaker.data.top_tracks import item_tags
from tastemaker.data.tracks import TRACK_COLUMNS, TrackData, empty_frame
from tastemaker.errors import UsageError
from tastemaker.models.base import FactorModel, Recommender
from tastemaker.playlists.constraints import RECENT_DAYS
from tastemaker.playlists.playlist import Track, normalised
from tastemaker.playlists.track_table import TrackTable

if TYPE_CHECKING:
    from tastemaker.playlists.candidates import ItemSearch

# Items whose tracks are kept as objects between requests (cleared when full).
TRACK_CACHE_ITEMS = 20_000
# A favourite's columns, in the order of a track table row's values, then when it was heard last.
_FAVOURITE_FIELDS = (
    "item",
    "artist",
    "title",
    "release",
    "recording_mbid",
    "recording",
    "plays",
    "last_heard",
)


@dataclass
class Listener:
    """Who a playlist is for, as of ``now``."""

    name: str
    user: int | None  # the training user, or None for a posted history
    history: sp.csr_matrix  # 1 x n_items play counts
    now: datetime
    known: frozenset[str] = frozenset()  # normalised names of artists played
    recent: frozenset[str] = frozenset()  # recording keys heard in the last RECENT_DAYS
    favourites: dict[int, list[Track]] = field(default_factory=dict)  # per item, most played

    @property
    def heard_items(self) -> np.ndarray:
        return self.history.indices


class Library:
    """Tracks, artists and popularity of a fitted model's catalogue."""

    def __init__(self, model: Recommender, search: ItemSearch | None = None) -> None:
        """``search``: an approximate index over the model's item vectors (the service's) for
        the candidate artists of personal playlists; without one they are scored exactly."""
        model._check_fitted()
        if search is not None and not isinstance(model, FactorModel):
            raise TypeError(f"{type(model).__name__} has no item vectors to search")
        self.model = model
        self.search = search
        self._mean_vector: np.ndarray | None = None  # for _centred_cosine, built on first use
        data = model.interactions_
        self.data = data
        self.level = data.level
        self.track_data = data.tracks or TrackData(empty_frame(TRACK_COLUMNS))
        if not len(self.track_data.item_tags) and data.metadata is not None:
            # Metadata attached after ingest (``tastemaker metadata``) reaches radio's tag terms.
            self.track_data = dataclasses.replace(self.track_data, item_tags=item_tags(data))
        self.artists_only = not self.track_data.has_recordings
        meta = data.item_metadata
        artist = (
            meta["name"] if self.level == "artist" else meta["artist_name"].fill_null(meta["name"])
        )
        self.item_artist: list[str] = artist.to_list()
        self.item_artist_key: list[str] = [normalised(a) for a in self.item_artist]
        self.item_name: list[str] = meta["name"].to_list()
        listeners = np.bincount(data.user_items.indices, minlength=data.n_items)
        # 0 for the most listened-to item, towards 1 for the least (radio's popularity bands).
        order = np.argsort(-listeners, kind="stable")
        self.popularity_quantile = np.empty(data.n_items, np.float64)
        self.popularity_quantile[order] = np.arange(data.n_items) / max(data.n_items, 1)
        self._items_of_artist: tuple[dict[str, int], np.ndarray, np.ndarray] | None = None
        self._tag_rows: tuple[list[str], np.ndarray, np.ndarray] | None = None
        self.table = TrackTable(
            self.track_data, self.item_artist, data.n_items, self.item_artist_key
        )
        self._tracks: dict[int, list[Track]] = {}
        self._unit_vectors: np.ndarray | None = None
        self.item_vectors: np.ndarray | None = None
        if isinstance(model, FactorModel):
            vectors = self.item_vectors = np.asarray(model.item_vectors(), dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            self._unit_vectors = (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)

    def because(self, history: sp.csr_matrix, items: list[int]) -> list[int | None]:
        """For each item, the history item most behind it: for factor models cosine of item
        vectors times log plays, all items at once (a model's exact ``explain`` costs a
        solve per item); else the model's ``explain``."""
        heard = history.indices
        if len(heard) == 0 or not items:
            return [None] * len(items)
        if self._unit_vectors is not None:
            unit = self._unit_vectors
            contribution = (unit[items] @ unit[heard].T) * np.log1p(history.data)[None, :]
            return [int(heard[b]) for b in np.argmax(contribution, axis=1)]
        out: list[int | None] = []
        for item in items:
            top, _ = self.model.explain(history, int(item), n=1)
            out.append(int(top[0]) if len(top) else None)
        return out

    # -- items and tracks ----------------------------------------------------------------------
    def items_of_artists(self, artist_keys: frozenset[str]) -> np.ndarray:
        """Every item credited to one of these artists (normalised names), in item order."""
        if self._items_of_artist is None:
            # Items grouped by artist once: artist code -> its items, rows of a CSR layout.
            unique, codes = np.unique(np.asarray(self.item_artist_key, object), return_inverse=True)
            order = np.argsort(codes, kind="stable")
            starts = np.searchsorted(codes[order], np.arange(len(unique) + 1))
            code_of = {key: code for code, key in enumerate(unique.tolist())}
            self._items_of_artist = (code_of, order.astype(np.int64), starts)
        code_of, order, starts = self._items_of_artist
        codes = np.asarray([code_of[k] for k in artist_keys if k in code_of], np.int64)
        lengths = starts[codes + 1] - starts[codes]
        first = np.repeat(starts[codes] - np.cumsum(lengths) + lengths, lengths)
        return np.sort(order[first + np.arange(int(lengths.sum()))])

    def co_tags(self, items: list[int]) -> list[str]:
        """The tags on these items, most often given first (ties by name)."""
        if self._tag_rows is None:
            # Tag ids per item, grouped by item once: a radio's tag term then counts them.
            frame = self.track_data.item_tags
            unique, codes = np.unique(frame["tag"].to_numpy().astype(str), return_inverse=True)
            item_of = frame["item"].to_numpy()
            order = np.argsort(item_of, kind="stable")
            starts = np.searchsorted(item_of[order], np.arange(self.data.n_items + 1))
            self._tag_rows = (unique.tolist(), codes.reshape(-1)[order], starts)
        names, codes_by_item, starts = self._tag_rows
        chosen = np.asarray(items, dtype=np.int64)
        lengths = starts[chosen + 1] - starts[chosen]
        first = np.repeat(starts[chosen] - np.cumsum(lengths) + lengths, lengths)
        counts = np.bincount(
            codes_by_item[first + np.arange(int(lengths.sum()))], minlength=len(names)
        )
        present = np.flatnonzero(counts)
        # The names are sorted, so a tag's index orders ties by name.
        return [names[t] for t in present[np.lexsort((present, -counts[present]))]]

    def similarity(self, tracks: list[Track]) -> np.ndarray:
        """Similarity ``(k, k)`` of the tracks' items, what ordering smooths and the playlist task
        judges: for factor models the cosine of item vectors centred on the listeners'
        average (``_centred_cosine``), else the model's own similarity; pairs the model has no
        similarity for (a neighbour model's non-neighbours) count as 0."""
        return self.item_similarity(np.asarray([t.item for t in tracks], dtype=np.int64))

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        """``similarity`` of item indices (no ``Track`` objects needed)."""
        if not len(items):
            return np.zeros((0, 0), np.float32)
        if isinstance(self.model, FactorModel):
            return self._centred_cosine(items)
        similarity = self.model.pairwise_similarity(items)
        return np.where(np.isfinite(similarity), similarity, 0.0).astype(np.float32)

    def _centred_cosine(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the items' vectors less the mean item vector weighted by listeners. Raw
        factor cosines share one popularity direction (with BM25-weighted ALS a random order
        of a playlist already averages 0.68-0.74), so they barely tell tracks apart; centred,
        they do (docs/playlists.md)."""
        model = self.model
        assert isinstance(model, FactorModel)  # similarity() sends only factor models here
        vectors = model.item_vectors()
        if self._mean_vector is None:
            weights = np.asarray(model.user_items_.getnnz(axis=0), dtype=np.float64)
            self._mean_vector = weights @ vectors / max(weights.sum(), 1.0)
        chosen = vectors[items] - self._mean_vector
        norms = np.linalg.norm(chosen, axis=1)
        norms[norms == 0] = 1.0
        unit = chosen / norms[:, None]
        return (unit @ unit.T).astype(np.float32)

    def item_tracks(self, item: int) -> list[Track]:
        """The item's tracks, most played first (an artist entry where no recording is known)."""
        cached = self._tracks.get(item)
        if cached is None:
            cached = self.table.item_tracks(item)
            if len(self._tracks) >= TRACK_CACHE_ITEMS:
                self._tracks.clear()  # bounded: a large catalogue is never held as objects
            self._tracks[item] = cached
        return cached

    def query_vector(self, listener: Listener) -> np.ndarray:
        """The listener's vector in the model's item space (float32, ``(dim,)``)."""
        model = self.model
        if not isinstance(model, FactorModel):
            raise TypeError(f"{type(model).__name__} has no user vectors")
        if listener.user is not None:
            vector = model.user_vectors(np.asarray([listener.user]))
        else:
            vector = model.history_vectors(listener.history)
        return np.asarray(vector, dtype=np.float32).reshape(-1)

    # -- listeners -----------------------------------------------------------------------------
    def listener(
        self,
        user: int | None = None,
        history: sp.spmatrix | None = None,
        now: datetime | None = None,
        name: str | None = None,
    ) -> Listener:
        """A training user (by index) or a posted history (1 x n_items counts)."""
        now = now or datetime.now(UTC)
        data = self.data
        if user is not None:
            if not 0 <= user < data.n_users:
                raise UsageError(f"user index {user} is outside 0..{data.n_users - 1}")
            matrix = data.user_items  # the row built from its slices: scipy's indexing costs more
            start, stop = matrix.indptr[user], matrix.indptr[user + 1]
            row = sp.csr_matrix(
                (matrix.data[start:stop].copy(), matrix.indices[start:stop].copy(),
                 np.asarray([0, stop - start], matrix.indptr.dtype)),
                shape=(1, matrix.shape[1]), copy=False,
            )  # fmt: skip
            name = name or data.users.id(user)
        elif history is not None:
            row = sp.csr_matrix(history, dtype=np.float32)[0]
            name = name or "a posted history"
        else:
            raise UsageError("a playlist needs a user or a history")
        known = frozenset(map(self.item_artist_key.__getitem__, row.indices.tolist()))
        since = int((now - timedelta(days=RECENT_DAYS)).timestamp())
        recent: set[str] = set()
        favourites: dict[int, list[Track]] = {}
        if user is not None:
            frame = self.track_data.user_favourites(user)
            columns = [frame[name].to_list() for name in _FAVOURITE_FIELDS] if frame.height else []
            rows = zip(*columns, strict=True)
            for item, credit, title, release, mbid, recording, plays, last in rows:
                if last is not None and last >= since:
                    recent.add(recording)
                reason = f"one of your favourites ({plays} plays)"  # FAVOURITE
                values = (credit or None, title, release, mbid, recording, int(plays))
                favourites.setdefault(item, []).append(self.table.make(item, values, reason))
            if self.level == "recording" and data.last_listened is not None:
                start, stop = data.user_items.indptr[user], data.user_items.indptr[user + 1]
                times = data.last_listened[start:stop]
                lately = row.indices[(times != UNKNOWN_TIME) & (times >= since)]
                recent.update(data.items.id(int(i)) for i in lately)
        return Listener(name, user, row, now, known, frozenset(recent), favourites)


__all__ = ["Library", "Listener"]

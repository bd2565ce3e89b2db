"""Session co-listening: items played in the same listening session are similar.

This is how ListenBrainz computes its similar-artist / similar-recording data (their Spark job
``similar_recordings``): each user's listens are sorted by time and cut into sessions wherever the
gap after the previous listen exceeds ``session_gap`` seconds; every pair of distinct items
played in one session counts; each user's contribution to a pair is capped so that one heavy
listener cannot make two items similar alone; at recording level, pairs of recordings by the
same artist are left out (they say nothing an artist-level model does not already know).

Here, specifically:

- the gap is measured from the assumed end of the previous listen, ``timestamp - (previous
  timestamp + track_length)``, with ``track_length`` = 180 s as ListenBrainz assumes when the
  duration is unknown (our events carry start times only); ``track_length=0`` measures the gap
  between start times;
- a user's contribution to a pair is the number of their sessions in which both items occur,
  capped at ``max_contribution``; a pair's count is the sum over users;
- similarity is that count normalised like a cosine, ``count(a, b) / sqrt(n(a) * n(b))``, with
  ``n(a)`` the capped number of sessions containing ``a`` summed over users, and each item keeps
  its ``neighbours`` most similar items;
- a user's score for an item is the sum, over the items in their history, of the history item's
  weighted play count (``weighting``, log1p by default) times its similarity to that item.

Everything is vectorised over listens (numpy sort / run-length / bincount), no loop per listen.
Only listens of (user, item) pairs present in the training matrix are used: an evaluation split
may hand over events of held-out pairs, and those must not leak into the similarities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec, CSRSpec
from tastemaker.data.interactions import Interactions, ListenEvents
from tastemaker.errors import UsageError
from tastemaker.models.base import Recommender, WeightedInput
from tastemaker.models.params import at_least


@dataclass(frozen=True)
class SessionPairs:
    """Co-listening counts: pairs ``a < b`` with their capped counts, and item occurrences."""

    a: np.ndarray  # int64 item index
    b: np.ndarray  # int64 item index, b > a
    count: np.ndarray  # float64, sum over users of min(sessions with both, cap)
    occurrences: np.ndarray  # float64 per item, sum over users of min(sessions with it, cap)
    n_sessions: int


def session_ids(
    user: np.ndarray, timestamp: np.ndarray, session_gap: float, track_length: float
) -> np.ndarray:
    """Session number of each listen (listens sorted by user then time); 0-based, increasing."""
    n = len(user)
    if n == 0:
        return np.zeros(0, np.int64)
    new = np.ones(n, dtype=bool)
    same_user = user[1:] == user[:-1]
    gap = timestamp[1:].astype(np.int64) - timestamp[:-1].astype(np.int64) - track_length
    new[1:] = ~same_user | (gap > session_gap)
    return np.cumsum(new) - 1


def session_pair_counts(
    user: np.ndarray,
    item: np.ndarray,
    timestamp: np.ndarray,
    n_items: int,
    session_gap: float = 300.0,
    track_length: float = 180.0,
    max_contribution: int = 5,
    max_session_items: int = 200,
    item_group: np.ndarray | None = None,
    block_listens: int = 2_000_000,
) -> SessionPairs:
    """Count co-listened pairs of distinct items over all users' sessions.

    ``item_group`` (optional, one integer per item) excludes pairs whose items share a group:
    at recording level, the artist. Sessions with more than ``max_session_items`` distinct items
    (an endless radio, a scrobbling bot) are cut into chunks of that size, in order of first
    listen, which bounds the quadratic number of pairs. Users are processed in blocks of about
    ``block_listens`` listens (whole users), which bounds memory on large dumps.
    """
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    timestamp = np.asarray(timestamp, dtype=np.int64)
    order = np.lexsort((timestamp, user))
    user, item, timestamp = user[order], item[order], timestamp[order]
    # Blocks start at the first user whose first listen falls in the next block_listens.
    user_starts: np.ndarray | list[int] = (
        np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if len(user) else []
    )
    block_of = np.asarray(user_starts, np.int64) // max(int(block_listens), 1)
    new_block = np.r_[True, block_of[1:] != block_of[:-1]] if len(block_of) else []
    cuts = [*np.asarray(user_starts)[new_block].tolist(), len(user)]
    keys, counts = [], []
    occurrences = np.zeros(n_items)
    n_sessions = 0
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        if hi <= lo:
            continue
        block = _block_pair_counts(
            user[lo:hi],
            item[lo:hi],
            timestamp[lo:hi],
            n_items,
            session_gap,
            track_length,
            max_contribution,
            max_session_items,
            item_group,
        )
        keys.append(block[0])
        counts.append(block[1])
        occurrences += block[2]
        n_sessions += block[3]
    pair_keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    pair_counts = np.concatenate(counts) if counts else np.zeros(0)
    pairs, inverse = np.unique(pair_keys, return_inverse=True)
    count = np.bincount(inverse, weights=pair_counts, minlength=len(pairs))
    return SessionPairs(pairs // n_items, pairs % n_items, count, occurrences, n_sessions)


def _block_pair_counts(
    user: np.ndarray,
    item: np.ndarray,
    timestamp: np.ndarray,
    n_items: int,
    session_gap: float,
    track_length: float,
    max_contribution: int,
    max_session_items: int,
    item_group: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Pair keys ``a * n_items + b`` with their capped counts summed over the block's users,
    item occurrences and the number of sessions, for listens sorted by user then time."""
    session = session_ids(user, timestamp, session_gap, track_length)
    n_sessions = int(session[-1]) + 1 if len(session) else 0

    # Distinct items per session, in order of their first listen within the session.
    key = session * n_items + item
    _, first = np.unique(key, return_index=True)
    first.sort()  # back in (session, time) order
    s_session, s_item, s_user = session[first], item[first], user[first]

    # Cut long sessions into chunks of max_session_items.
    starts = np.flatnonzero(np.r_[True, s_session[1:] != s_session[:-1]])
    lengths = np.diff(np.r_[starts, len(s_session)])
    within = np.arange(len(s_session)) - np.repeat(starts, lengths)
    chunk_start = np.r_[True, s_session[1:] != s_session[:-1]] | (within % max_session_items == 0)

    # Item occurrences: sessions per (user, item), capped, summed over users.
    ui_unique, ui_sessions = np.unique(s_user * n_items + s_item, return_counts=True)
    occurrences = np.bincount(
        ui_unique % n_items,
        weights=np.minimum(ui_sessions, max_contribution).astype(np.float64),
        minlength=n_items,
    )

    # All pairs (p, q), p before q, within each chunk: element p pairs with the rest of its chunk.
    c_starts = np.flatnonzero(chunk_start)
    c_lengths = np.diff(np.r_[c_starts, len(s_item)])
    c_within = np.arange(len(s_item)) - np.repeat(c_starts, c_lengths)
    partners = np.repeat(c_lengths, c_lengths) - 1 - c_within
    total = int(partners.sum())
    left = np.repeat(np.arange(len(s_item)), partners)
    offset = np.arange(total) - np.repeat(np.cumsum(partners) - partners, partners)
    right = left + 1 + offset
    a = np.minimum(s_item[left], s_item[right])
    b = np.maximum(s_item[left], s_item[right])
    pair_user = s_user[left]
    if item_group is not None:
        group = np.asarray(item_group)
        keep = group[a] != group[b]
        a, b, pair_user = a[keep], b[keep], pair_user[keep]
    if len(a) == 0:
        return np.zeros(0, np.int64), np.zeros(0), occurrences, n_sessions

    # Per user and pair: the number of sessions with both, capped; then summed over users.
    pair_key = a * n_items + b
    order = np.lexsort((pair_user, pair_key))
    pair_key, pair_user = pair_key[order], pair_user[order]
    run_start = np.r_[True, (pair_key[1:] != pair_key[:-1]) | (pair_user[1:] != pair_user[:-1])]
    run_index = np.flatnonzero(run_start)
    run_count = np.diff(np.r_[run_index, len(pair_key)])
    capped = np.minimum(run_count, max_contribution).astype(np.float64)
    pairs, inverse = np.unique(pair_key[run_index], return_inverse=True)
    return pairs, np.bincount(inverse, weights=capped), occurrences, n_sessions


def top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each CSR row (ties: lower column first)."""
    m = sp.csr_matrix(matrix)
    m.sort_indices()
    lengths = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), lengths)
    order = np.lexsort((m.indices, -m.data, rows))
    rank = np.empty(m.nnz, np.int64)
    rank[order] = np.arange(m.nnz) - np.repeat(m.indptr[:-1], lengths)
    keep = rank < k
    out = sp.csr_matrix(
        (
            m.data[keep],
            m.indices[keep],
            np.r_[0, np.cumsum(np.bincount(rows[keep], minlength=m.shape[0]))],
        ),
        shape=m.shape,
    )
    return out


def item_groups(metadata: pl.DataFrame) -> np.ndarray:
    """One integer per item naming its artist (the case-folded name, else the MBID)."""
    n = metadata.height
    key = pl.Series("key", [None] * n, dtype=pl.Utf8)
    for column in ("artist_mbid", "artist_name"):  # later columns win where present
        if column in metadata.columns:
            values = metadata[column].cast(pl.Utf8)
            if column == "artist_name":
                values = values.str.to_lowercase()
            key = values.fill_null(key)
    # Items without any artist get a group of their own (never excluded).
    key = key.fill_null(pl.Series([f"\x00{i}" for i in range(n)]))
    return key.cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)


def restrict_events(events: ListenEvents, user_items: sp.csr_matrix) -> ListenEvents:
    """Only the listens of (user, item) pairs present in ``user_items``."""
    m = sp.csr_matrix(user_items)
    n_items = m.shape[1]
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    known = np.sort(rows * n_items + m.indices.astype(np.int64))
    key = events.user.astype(np.int64) * n_items + events.item.astype(np.int64)
    at = np.searchsorted(known, key)
    inside = (at < len(known)) & (known[np.minimum(at, len(known) - 1)] == key)
    inside &= (events.user >= 0) & (events.user < m.shape[0])
    return ListenEvents(events.user[inside], events.item[inside], events.timestamp[inside])


# Co-listening similarity, items x items, as saved by SessionCoListen.
SESSION_SIMILARITY = CSRSpec.prefixed("sim_", ("items", "items"))


class SessionCoListen(WeightedInput, Recommender):
    """Similar items from listening sessions (ListenBrainz's method), scored over a history."""

    name = "sessions"
    param_rules = {
        "max_contribution": at_least(1),
        "neighbours": at_least(1),
        "max_session_items": at_least(2),
    }

    def __init__(
        self,
        session_gap: float = 300.0,
        track_length: float = 180.0,
        max_contribution: int = 5,
        min_count: float = 1.0,
        neighbours: int = 100,
        max_session_items: int = 200,
        exclude_same_artist: bool = True,
        weighting: str = "log1p",
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
    ) -> None:
        self.session_gap = session_gap
        self.track_length = track_length
        self.max_contribution = max_contribution
        self.min_count = min_count
        self.neighbours = neighbours
        self.max_session_items = max_session_items
        self.exclude_same_artist = exclude_same_artist
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b

    def _fit(self, interactions: Interactions) -> None:
        if interactions.events is None or len(interactions.events) == 0:
            raise UsageError(
                "the session co-listening model needs individual listens with timestamps "
                "(ListenBrainz or Last.fm 1K style data); this data has play counts only"
            )
        self._fit_weighting(interactions.user_items)
        events = restrict_events(interactions.events, interactions.user_items)
        group = None
        if self.exclude_same_artist and interactions.level != "artist":
            group = item_groups(interactions.item_metadata)
        pairs = session_pair_counts(
            events.user,
            events.item,
            events.timestamp,
            interactions.n_items,
            session_gap=self.session_gap,
            track_length=self.track_length,
            max_contribution=int(self.max_contribution),
            max_session_items=int(self.max_session_items),
            item_group=group,
        )
        keep = pairs.count >= self.min_count
        a, b, count = pairs.a[keep], pairs.b[keep], pairs.count[keep]
        norm = np.sqrt(np.maximum(pairs.occurrences[a] * pairs.occurrences[b], 1e-12))
        value = (count / norm).astype(np.float32)
        n = interactions.n_items
        sim = sp.csr_matrix(
            (np.r_[value, value], (np.r_[a, b], np.r_[b, a])), shape=(n, n), dtype=np.float32
        )
        self.similarity_ = top_k_per_row(sim, int(self.neighbours))
        self.n_sessions_ = pairs.n_sessions

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.asarray((self._weigh(history) @ self.similarity_).todense(), np.float32)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity_[items].todense(), np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {
            **SESSION_SIMILARITY.arrays(self.similarity_),
            "n_sessions": np.asarray(self.n_sessions_, np.int64),
            **self._weighting_state(),
        }

    def _state_spec(self) -> dict[str, ArraySpec | CSRSpec]:
        return {
            "similarity": SESSION_SIMILARITY,
            "n_sessions": ArraySpec((), "int", low=0),
            **self._weighting_spec(),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        n = self.n_items_
        self.similarity_ = SESSION_SIMILARITY.build(arrays, (n, n))
        self.n_sessions_ = int(arrays["n_sessions"])
        self._set_weighting_state(arrays)

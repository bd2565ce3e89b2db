"""What a listener's friends play: the hybrid's ``friends`` features (HetRec ``user_friends.dat``).

For a candidate item of a known user with friends, from the friends' training listens:

- ``fr_count``: how many friends played it (log);
- ``fr_share``: the share of the friends who played it;
- ``fr_play_share``: the friends' mean play share of it (each friend's log plays of the item
  over their log plays of everything), so a friend's favourite weighs more than a passing play;
- ``fr_taste``: the share of the friends who played it, each friend weighted by how close
  their taste is to the user's (cosine of log plays): friends one shares music with count,
  friends from school less;
- ``fr_lift``: how much more often the friends played it than users at large do
  (log of the friends' share over the item's share of all listeners, both smoothed);
- ``fr_friends``: the user's number of friends (log).

Everything comes from the matrix the builder is fitted on (the inner training part, then the
training data), so a friend's held-out listens never reach it. New listeners (fold-in) have no
friends in the data: their features are NaN, which the ranker reads as "unknown".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec, CSRSpec
from tastemaker.data.interactions import Interactions
from tastemaker.errors import UsageError
from tastemaker.models.base import Recommender
from tastemaker.models.sparse_rows import csr_from, csr_state, lookup

NAMES = ["fr_count", "fr_share", "fr_play_share", "fr_taste", "fr_lift", "fr_friends"]
# Smoothing of the lift: a pseudo-count of friends (and of listeners at large, scaled).
LIFT_PRIOR = 1.0


class FriendSignals:
    """Fitted friendship graph (data: 1 + taste similarity per edge) and log plays per user."""

    def __init__(self, friends: sp.csr_matrix, user_items: sp.csr_matrix) -> None:
        plays = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
        plays.data = np.log1p(np.maximum(plays.data, 0))
        plays.eliminate_zeros()
        plays.sort_indices()
        graph = sp.csr_matrix(friends, dtype=np.float32, copy=True)
        graph.eliminate_zeros()
        graph.sort_indices()
        # Taste similarity of each (user, friend) edge: cosine of their log-play rows.
        norms = np.sqrt(np.asarray(plays.multiply(plays).sum(axis=1)).ravel())
        unit = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ plays, dtype=np.float32)
        rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
        cosine = np.asarray(unit[rows].multiply(unit[graph.indices]).sum(axis=1)).ravel()
        # Stored as 1 + similarity: a friend with no artist in common is still a friend (weight
        # 0 in the taste-weighted share), and an explicit zero would not survive sparse
        # arithmetic.
        graph.data = (1.0 + np.maximum(cosine, 0.0)).astype(np.float32)
        self.graph = graph
        self.plays = plays
        self._derive()

    def _derive(self) -> None:
        plays = self.plays
        totals = np.asarray(plays.sum(axis=1)).ravel()
        self.share = sp.csr_matrix(
            sp.diags(1.0 / np.maximum(totals, 1e-12)) @ plays, dtype=np.float32
        )
        self.heard = sp.csr_matrix(
            (np.ones(plays.nnz, np.float32), plays.indices, plays.indptr), shape=plays.shape
        )
        listeners = np.bincount(plays.indices, minlength=plays.shape[1]).astype(np.float32)
        self.listener_share = listeners / max(plays.shape[0], 1)

    def features(self, users: np.ndarray | None, row: np.ndarray, item: np.ndarray) -> list:
        """The ``NAMES`` columns for candidates (``row`` into ``users``, ``item``)."""
        n = len(row)
        if users is None:
            return [np.full(n, np.nan, np.float32) for _ in NAMES]
        taste = self._friend_rows(users)
        friends = taste.copy()
        friends.data = np.ones_like(friends.data)
        taste.data = np.maximum(taste.data - 1.0, 0)
        n_friends = np.diff(friends.indptr).astype(np.float32)
        taste_total = np.asarray(taste.sum(axis=1)).ravel()
        # Dense lookups for a few rows (one listener at serving time), binary search beyond.
        count = lookup(friends @ self.heard, row, item)
        play_share = lookup(friends @ self.share, row, item)
        tasted = lookup(taste @ self.heard, row, item)
        n_f = n_friends[row]
        has = n_f > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(has, count / n_f, np.nan)
            mean_play = np.where(has, play_share / n_f, np.nan)
            weighted = np.where(taste_total[row] > 0, tasted / taste_total[row], np.nan)
            expected = n_f * self.listener_share[item]
            lift = np.where(has, np.log((count + LIFT_PRIOR) / (expected + LIFT_PRIOR)), np.nan)
        return [
            np.where(has, np.log1p(count), np.nan),
            share,
            mean_play,
            weighted,
            lift,
            np.log1p(n_f),
        ]

    def _friend_rows(self, users: np.ndarray) -> sp.csr_matrix:
        """Rows of the friendship graph (data: 1 + taste similarity) for ``users``; empty rows
        for indices outside the graph."""
        users = np.asarray(users, np.int64)
        known = (users >= 0) & (users < self.graph.shape[0])
        rows = self.graph[np.where(known, users, 0)]
        if not known.all():
            rows = sp.csr_matrix(sp.diags(known.astype(np.float32)) @ rows)
            rows.eliminate_zeros()  # the unknown rows' entries (graph data is >= 1)
        return sp.csr_matrix(rows)

    # -- persistence -----------------------------------------------------------------------
    def state(self, prefix: str = "feat_friends_") -> dict[str, np.ndarray]:
        return {
            **csr_state(self.graph, f"{prefix}graph"),
            **csr_state(self.plays, f"{prefix}plays"),
        }

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], prefix: str = "feat_friends_"):
        self = cls.__new__(cls)
        self.graph = csr_from(arrays, f"{prefix}graph")
        self.plays = csr_from(arrays, f"{prefix}plays")
        self._derive()
        return self


class FriendListening(Recommender):
    """The hybrid's social candidate source: what a listener's friends play.

    A user's score for an item is the friends' summed play share of it (each friend's log
    plays of the item over their log plays of everything); items no friend played, and every
    item for a listener with no friends in the data (a new listener, fold-in), are -inf, so the
    hybrid takes no candidates from it there. Not a registered model: it needs the friendship
    relation (``Interactions.friends``) and has no opinion on a history alone, so it lives
    inside the hybrid (generator name ``friends``) and is saved as one of its generators.
    """

    name = "friends"

    def __init__(self) -> None:
        pass

    def _fit(self, interactions: Interactions) -> None:
        if interactions.friends is None:
            raise UsageError("friends: the data has no friendship relation")
        self.signals_ = FriendSignals(interactions.friends, interactions.user_items)

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        rows, n_items = history.shape[0], self.n_items_
        if users is None:
            return np.full((rows, n_items), -np.inf, np.float32)
        friends = self.signals_._friend_rows(users)
        friends.data = np.ones_like(friends.data)
        scores = (friends @ self.signals_.share).toarray().astype(np.float32)
        heard = (friends @ self.signals_.heard).toarray() > 0
        scores[~heard] = -np.inf
        return scores

    def _similar(self, items: np.ndarray) -> np.ndarray:
        # Friendship says nothing about items alike; the hybrid takes similar items elsewhere.
        return np.full((len(items), self.n_items_), -np.inf, np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return self.signals_.state("")

    def _state_spec(self) -> dict[str, ArraySpec | CSRSpec]:
        return {
            "graph": CSRSpec.prefixed(
                "graph_", ("users", "users"), shape_array="graph_shape", low=0
            ),
            "plays": CSRSpec.prefixed(
                "plays_", ("users", "items"), shape_array="plays_shape", low=0
            ),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.signals_ = FriendSignals.from_state(arrays, "")

"""Features for the hybrid's ranker: one row per (user, candidate item).

The ranker earns its keep through signals the collaborative generators cannot see (DESIGN.md,
"Where a hybrid's gain lies"), so besides each generator's score and rank the features cover:

- ``scores``: per generator, the raw score, the score relative to the user's best
  (``(score - top1) / std`` over the generator's top-N for that user) and the 1-based rank
  (NaN when the generator did not propose the item); how many generators proposed it; the best
  rank over generators;
- ``popularity``: the candidate's listeners and plays per listener (log-scaled);
- ``user``: the user's number of items and plays, and how mainstream the history is (mean
  log-listeners of its items);
- ``neighbours``: how much the user listened to the candidate's closest neighbours (top-k
  cosine item-item on the training matrix): similarity-weighted and plain sums of log plays,
  and how many of the neighbours are in the history;
- ``tags`` (where the data has tags: any metadata source, or tag assignments): cosine
  between the user's TF-IDF tag profile and the candidate's, and the candidate's number of
  tags. A user's OWN tag assignments never reach that user's features: both the profile and
  the candidate's tag vector are rebuilt without them for every (user, item) pair the user
  tagged;
- ``recency`` (where the data has listen times): the share of the candidate's listeners who
  played it within ``recent_days`` of the latest listen in the training data;
- ``friends`` (where the data has a friendship relation, HetRec ``user_friends.dat``): what
  the user's friends play of the candidate (``models.social``).

Every statistic is computed from the matrix the builder was fitted on: the hybrid fits one
builder on its inner training part (to train the ranker) and one on the full training data
(to serve), so features never include the listens they are asked to predict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tastemaker.data.interactions import UNKNOWN_TIME, Interactions, TagAssignments
from tastemaker.data.metadata.combined import combined_tags
from tastemaker.data.metadata.coverage import has_item_tags
from tastemaker.models.base import single_blas_thread
from tastemaker.models.social import NAMES as FRIEND_FEATURES
from tastemaker.models.social import FriendSignals
from tastemaker.models.sparse_rows import csr_from, csr_state, lookup, row_entries

FEATURE_GROUPS = ("scores", "popularity", "user", "neighbours", "tags", "recency", "friends")
DAY = 86_400


@dataclass
class Candidates:
    """Candidate (row, item) pairs of a batch and what each generator said about them.

    ``score``, ``relative`` and ``rank`` are ``(n_candidates, n_generators)``; ``rank`` is
    1-based and NaN where a generator did not propose the item.
    """

    row: np.ndarray
    item: np.ndarray
    score: np.ndarray
    relative: np.ndarray
    rank: np.ndarray

    def __len__(self) -> int:
        return len(self.row)

    def subset(self, keep: np.ndarray) -> Candidates:
        return Candidates(
            self.row[keep], self.item[keep], self.score[keep], self.relative[keep], self.rank[keep]
        )


def _row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(m, dtype=np.float32)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ m)


class TagProfiles:
    """TF-IDF tag vectors of items, with each tagger's own assignments removable per pair.

    ``item_vectors`` (items x tags, L2-normalised) use every assignment, plus ``base`` (items x
    tags weights no user owns: metadata sources) where given. For each (user, item)
    pair the user tagged, ``own_vectors`` hold the item's vector rebuilt without that user's
    assignments; features for that user use those instead. The IDF is a corpus statistic over
    all assignments: a user's own tags can move a tag's document frequency only by the items
    nobody else gave that tag, which tells nothing about which items that user holds.
    """

    def __init__(
        self,
        tags: TagAssignments,
        n_users: int,
        n_items: int,
        base: sp.csr_matrix | None = None,
    ) -> None:
        ok = (tags.item >= 0) & (tags.item < n_items)
        user, item, tag = tags.user[ok].astype(np.int64), tags.item[ok], tags.tag[ok]
        n_tags = len(tags.tags)
        counts = sp.csr_matrix(
            (np.ones(len(item), np.float32), (item, tag)), shape=(n_items, n_tags)
        )
        if base is not None:  # anonymous weights (MusicBrainz votes, a CSV): nobody's own
            counts = sp.csr_matrix(counts + base, dtype=np.float32)
        counts.sum_duplicates()
        # Smoothed IDF over the whole catalogue (every item a document, tagged or not), so that
        # the number of documents does not depend on who tagged what.
        df = np.bincount(counts.indices, minlength=n_tags)
        self.idf = (np.log((1.0 + n_items) / (1.0 + df)) + 1.0).astype(np.float32)
        self.n_items = n_items
        self.item_counts = np.asarray(counts.sum(axis=1)).ravel().astype(np.float32)
        self.item_vectors = self._vectors(counts)

        # Own assignments, one row per (user, item) pair of a known user.
        own = (user >= 0) & (user < n_users)
        pair_key = user[own] * n_items + item[own]
        self.own_keys, pair = np.unique(pair_key, return_inverse=True)
        own_counts = sp.csr_matrix(
            (np.ones(len(pair), np.float32), (pair, tag[own])), shape=(len(self.own_keys), n_tags)
        )
        own_counts.sum_duplicates()
        others = counts[self.own_keys % n_items] - own_counts
        others.eliminate_zeros()
        self.own_vectors = self._vectors(others)
        self.own_item_counts = np.asarray(others.sum(axis=1)).ravel().astype(np.float32)

    def _vectors(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        tfidf = sp.csr_matrix(counts, dtype=np.float32, copy=True)
        tfidf.data = np.log1p(tfidf.data) * self.idf[tfidf.indices]
        return _row_normalise(tfidf)

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], prefix: str = "tag_") -> TagProfiles:
        self = cls.__new__(cls)
        self.idf = arrays[f"{prefix}idf"]
        self.item_counts = arrays[f"{prefix}item_counts"]
        self.own_keys = arrays[f"{prefix}own_keys"]
        self.own_item_counts = arrays[f"{prefix}own_item_counts"]
        self.n_items = len(self.item_counts)
        self.item_vectors = csr_from(arrays, f"{prefix}item_vectors")
        self.own_vectors = csr_from(arrays, f"{prefix}own_vectors")
        return self

    def state(self, prefix: str = "tag_") -> dict[str, np.ndarray]:
        return {
            f"{prefix}idf": self.idf,
            f"{prefix}item_counts": self.item_counts,
            f"{prefix}own_keys": self.own_keys,
            f"{prefix}own_item_counts": self.own_item_counts,
            **csr_state(self.item_vectors, f"{prefix}item_vectors"),
            **csr_state(self.own_vectors, f"{prefix}own_vectors"),
        }

    def _own_pairs(self, row_user: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions k where (row_user[k], item[k]) is an own pair, and that pair's index."""
        if len(self.own_keys) == 0 or len(item) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        key = row_user * self.n_items + item
        at = np.minimum(np.searchsorted(self.own_keys, key), len(self.own_keys) - 1)
        hit = (self.own_keys[at] == key) & (row_user >= 0)
        return np.flatnonzero(hit), at[hit]

    def profiles(self, weighted: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        """Dense ``(rows, tags)`` L2-normalised profiles: weighted sums of item vectors."""
        rows, n_tags = weighted.shape[0], len(self.idf)
        history_row = np.repeat(np.arange(rows), np.diff(weighted.indptr))
        owner, tag, value = row_entries(self.item_vectors, weighted.indices)
        cells = [history_row[owner] * n_tags + tag]
        weights = [value * weighted.data[owner]]
        if users is not None and len(self.own_keys):
            # Swap in the own-free vector of every history item the user tagged.
            position, pair = self._own_pairs(
                np.asarray(users, np.int64)[history_row], weighted.indices.astype(np.int64)
            )
            if len(position):
                w = weighted.data[position]
                row = history_row[position]
                owner, tag, value = row_entries(self.item_vectors, weighted.indices[position])
                cells.append(row[owner] * n_tags + tag)
                weights.append(-value * w[owner])
                owner, tag, value = row_entries(self.own_vectors, pair)
                cells.append(row[owner] * n_tags + tag)
                weights.append(value * w[owner])
        # One bincount over (row, tag) cells: a scatter-add much faster than np.add.at.
        dense = np.bincount(
            np.concatenate(cells), np.concatenate(weights), minlength=rows * n_tags
        ).reshape(rows, n_tags)
        dense = dense.astype(np.float32)
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        return np.divide(dense, norms, out=np.zeros_like(dense), where=norms > 0)

    def affinity(
        self, profiles: np.ndarray, row: np.ndarray, item: np.ndarray, row_user: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of each candidate with its row's profile, and the candidate's tag count."""
        counts = self.item_counts[item].copy()
        position, pair = self._own_pairs(row_user, item)
        if profiles.shape[0] == 1:  # one listener: one sparse product with every item is cheaper
            # (float64, like rowwise_dot: exact products summed in the same order, so one
            # listener gets bit-identical features alone and in a batch.)
            cosine = (self.item_vectors @ profiles[0].astype(np.float64))[item]
            cosine = cosine.astype(np.float32)
        else:
            cosine = rowwise_dot(self.item_vectors, item, profiles, row)
        if len(position):
            cosine[position] = rowwise_dot(self.own_vectors, pair, profiles, row[position])
            counts[position] = self.own_item_counts[pair]
        return cosine, counts


def rowwise_dot(
    vectors: sp.csr_matrix, which: np.ndarray, dense: np.ndarray, row: np.ndarray
) -> np.ndarray:
    """``vectors[which[k]] . dense[row[k]]`` for every k (sparse rows against dense rows)."""
    owner, cols, values = row_entries(vectors, which)
    products = values.astype(np.float64) * dense[row[owner], cols]
    return np.bincount(owner, weights=products, minlength=len(which)).astype(np.float32)


class FeatureBuilder:
    """Fitted item-side statistics plus the code that turns candidates into a feature matrix."""

    def __init__(
        self,
        groups: tuple[str, ...] = FEATURE_GROUPS,
        neighbours: int = 20,
        recent_days: float = 90.0,
    ) -> None:
        self.groups = tuple(groups)
        self.neighbours = neighbours
        self.recent_days = recent_days

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, interactions: Interactions) -> FeatureBuilder:
        m = interactions.user_items
        self.n_items = interactions.n_items
        self._table: tuple[np.ndarray, np.ndarray] | None = None
        listeners = np.bincount(m.indices, minlength=self.n_items).astype(np.float32)
        plays = np.bincount(m.indices, weights=np.log1p(m.data), minlength=self.n_items)
        self.item_log_listeners = np.log1p(listeners).astype(np.float32)
        self.item_plays_per_listener = np.divide(
            plays.astype(np.float32), listeners, out=np.zeros_like(listeners), where=listeners > 0
        )
        self.active = [g for g in self.groups if self._available(g, interactions)]
        if "neighbours" in self.active:
            from implicit.nearest_neighbours import ItemItemRecommender

            # Cosine of the log-play columns: implicit's all-pairs top-k in C++ (its
            # CosineRecommender does the same on raw counts, via a COO detour it warns about).
            weighted = sp.csr_matrix(m, dtype=np.float64, copy=True)  # implicit wants doubles
            weighted.data = np.log1p(weighted.data)
            norms = np.sqrt(np.bincount(weighted.indices, weighted.data**2, self.n_items))
            weighted.data /= np.maximum(norms, 1e-12)[weighted.indices]
            knn = ItemItemRecommender(K=self.neighbours + 1)  # +1: it keeps the item itself
            with single_blas_thread():
                knn.fit(weighted, show_progress=False)
            sim = sp.csr_matrix(knn.similarity, dtype=np.float32)
            sim.setdiag(0)
            sim.eliminate_zeros()
            sim.sort_indices()
            self.neighbour_sim = sim
        if "tags" in self.active:
            assignments, base = combined_tags(interactions)
            self.tags = TagProfiles(assignments, interactions.n_users, self.n_items, base)
        if "friends" in self.active:
            assert interactions.friends is not None  # _available: friends need the relation
            self.friends = FriendSignals(interactions.friends, m)
        if "recency" in self.active:
            last = interactions.last_listened
            assert last is not None  # _available: recency needs listen times
            known = last != UNKNOWN_TIME
            latest = last[known].max()
            recent = known & (last >= latest - self.recent_days * DAY)
            recent_listeners = np.bincount(m.indices[recent], minlength=self.n_items)
            self.item_recent_share = np.divide(
                recent_listeners.astype(np.float32),
                listeners,
                out=np.zeros_like(listeners),
                where=listeners > 0,
            )
        return self

    @staticmethod
    def _available(group: str, interactions: Interactions) -> bool:
        if group == "tags":
            return has_item_tags(interactions)
        if group == "recency":
            last = interactions.last_listened
            return last is not None and bool(np.any(last != UNKNOWN_TIME))
        if group == "friends":
            return interactions.friends is not None and interactions.friends.nnz > 0
        return group in FEATURE_GROUPS

    # -- feature names ---------------------------------------------------------------------
    def names(self, generators: list[str]) -> list[str]:
        names: list[str] = []
        for group in self.active:
            names += self._group_names(group, generators)
        return names

    @staticmethod
    def _group_names(group: str, generators: list[str]) -> list[str]:
        if group == "scores":
            per = [f"{g}_{what}" for g in generators for what in ("score", "relative", "rank")]
            return per + ["n_generators", "best_rank"]
        return {
            "popularity": ["item_listeners", "item_plays_per_listener"],
            "user": ["user_items", "user_plays", "user_mainstream"],
            "neighbours": ["nb_weighted", "nb_listens", "nb_count"],
            "tags": ["tag_cosine", "tag_count"],
            "recency": ["item_recent_share"],
            "friends": list(FRIEND_FEATURES),
        }[group]

    def group_of(self, generators: list[str]) -> dict[str, str]:
        """Feature name -> feature group."""
        return {n: g for g in self.active for n in self._group_names(g, generators)}

    # -- building --------------------------------------------------------------------------
    def build(
        self, history: sp.csr_matrix, users: np.ndarray | None, candidates: Candidates
    ) -> np.ndarray:
        """float32 ``(len(candidates), n_features)`` in the order of ``names``.

        ``history`` holds the play counts of the batch's rows (CSR), ``users`` their training
        indices or None for new listeners (whose own tags the data cannot hold).
        """
        history = sp.csr_matrix(history)
        history.sort_indices()
        columns: list[np.ndarray] = []
        row, item = candidates.row, candidates.item
        weights = np.log1p(np.maximum(history.data, 0)).astype(np.float32)
        weighted = sp.csr_matrix((weights, history.indices, history.indptr), shape=history.shape)
        for group in self.active:
            if group == "scores":
                for g in range(candidates.score.shape[1]):
                    columns += [
                        candidates.score[:, g],
                        candidates.relative[:, g],
                        candidates.rank[:, g],
                    ]
                proposed = ~np.isnan(candidates.rank)
                columns.append(proposed.sum(axis=1).astype(np.float32))
                best = np.where(proposed, candidates.rank, np.inf).min(axis=1)
                columns.append(np.where(np.isfinite(best), best, np.nan).astype(np.float32))
            elif group == "popularity":
                columns += [self.item_log_listeners[item], self.item_plays_per_listener[item]]
            elif group == "user":
                n_heard = np.diff(history.indptr).astype(np.float32)
                history_row = np.repeat(np.arange(history.shape[0]), np.diff(history.indptr))
                plays = np.bincount(history_row, history.data, minlength=history.shape[0])
                mainstream = np.bincount(
                    history_row, self.item_log_listeners[history.indices], history.shape[0]
                ).astype(np.float32)
                mainstream = np.divide(
                    mainstream, n_heard, out=np.zeros_like(n_heard), where=n_heard > 0
                )
                columns += [np.log1p(n_heard)[row], np.log1p(plays)[row], mainstream[row]]
            elif group == "neighbours":
                columns += list(self._neighbour_features(weighted, row, item))
            elif group == "tags":
                row_user = (
                    np.full(len(row), -1, np.int64)
                    if users is None
                    else users[row].astype(np.int64)
                )
                profiles = self.tags.profiles(weighted, users)
                cosine, counts = self.tags.affinity(profiles, row, item, row_user)
                columns += [cosine, np.log1p(counts)]
            elif group == "recency":
                columns.append(self.item_recent_share[item])
            elif group == "friends":
                columns += self.friends.features(users, row, item)
        if not columns:
            return np.zeros((len(row), 0), np.float32)
        return np.column_stack([np.asarray(c, np.float32) for c in columns])

    def _neighbour_features(
        self, weighted: sp.csr_matrix, row: np.ndarray, item: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Over each candidate's closest neighbours: similarity-weighted and plain sums of the
        user's log plays, and how many of them the user has heard."""
        index, similarity = self._neighbour_table()
        neighbours, weights = index[item], similarity[item]  # (candidates, k); -1 pads
        plays = lookup(weighted, np.broadcast_to(row[:, None], neighbours.shape), neighbours)
        plays = np.where(neighbours >= 0, plays, 0.0)
        return (weights * plays).sum(axis=1), plays.sum(axis=1), (plays > 0).sum(axis=1)

    def _neighbour_table(self) -> tuple[np.ndarray, np.ndarray]:
        """The neighbour lists as a dense (items, k) table, -1 where an item has fewer."""
        table = getattr(self, "_table", None)
        if table is None:
            sim = self.neighbour_sim
            lengths = np.diff(sim.indptr)
            width = max(int(lengths.max()) if len(lengths) else 0, 1)
            index = np.full((sim.shape[0], width), -1, np.int64)
            weights = np.zeros((sim.shape[0], width), np.float32)
            rows = np.repeat(np.arange(sim.shape[0]), lengths)
            slot = np.arange(sim.nnz) - np.repeat(sim.indptr[:-1], lengths)
            index[rows, slot] = sim.indices
            weights[rows, slot] = sim.data
            table = self._table = (index, weights)
        return table

    # -- persistence -----------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        arrays = {
            "feat_item_log_listeners": self.item_log_listeners,
            "feat_item_plays_per_listener": self.item_plays_per_listener,
            "feat_active": np.asarray(self.active, dtype=np.str_),
        }
        if "neighbours" in self.active:
            arrays.update(csr_state(self.neighbour_sim, "feat_neighbour_sim"))
        if "tags" in self.active:
            arrays.update(self.tags.state("feat_tag_"))
        if "recency" in self.active:
            arrays["feat_item_recent_share"] = self.item_recent_share
        if "friends" in self.active:
            arrays.update(self.friends.state("feat_friends_"))
        return arrays

    def set_state(self, arrays: dict[str, np.ndarray]) -> FeatureBuilder:
        self.item_log_listeners = arrays["feat_item_log_listeners"]
        self.item_plays_per_listener = arrays["feat_item_plays_per_listener"]
        self.n_items = len(self.item_log_listeners)
        self._table = None
        self.active = [str(g) for g in arrays["feat_active"]]
        if "neighbours" in self.active:
            self.neighbour_sim = csr_from(arrays, "feat_neighbour_sim")
        if "tags" in self.active:
            self.tags = TagProfiles.from_state(arrays, "feat_tag_")
        if "recency" in self.active:
            self.item_recent_share = arrays["feat_item_recent_share"]
        if "friends" in self.active:
            self.friends = FriendSignals.from_state(arrays, "feat_friends_")
        return self

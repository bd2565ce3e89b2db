"""Top-n retrieval for the service: the model's own exact scoring, or a faiss index.

Exact retrieval scores every item (``model.recommend``); that is the reference, and cheap for
small catalogues. Above a catalogue size, factor models (``score = user_vector . item_vector``)
are served from an approximate maximum-inner-product index built at load.

Why two tiers. A plain HNSW graph over raw inner products does poorly on implicit-feedback
factors: their norms span orders of magnitude (popular artists have long vectors, the long tail
short ones), and on a synthetic 200,000-artist ALS model HNSW-IP reached only ~0.8 recall@10 at
efSearch 256. Norm-ranging (Yan et al., 2018) fixes this: the ``head_items`` items with the
longest vectors go into an exact flat inner-product index, the rest into an HNSW graph. By
Cauchy-Schwarz no tail item can score above ``|q| * max tail norm``, so when the head alone
already yields n results above that bound the tail cannot change the answer and is skipped;
otherwise the HNSW tail is searched and merged. The head is scored whole (one product), its
heard rows set to -inf; in the tail, heard items are excluded by over-fetching (n + the number
of heard items in the tail) and filtering.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from tastemaker.models.ann import build_tiers
from tastemaker.models.base import FactorModel, Recommender

log = logging.getLogger("tastemaker.serving")

# Above this many candidates to fetch (huge histories) the ANN path is no faster than exact.
MAX_ANN_FETCH = 4096
# Users scored at once when measuring recall against exact scoring (bounds memory).
RECALL_BLOCK = 64


class Retriever(Protocol):
    """Top-n item indices and scores, padded with -1 / -inf like ``Recommender.recommend``."""

    kind: str

    def for_user(self, user: int, n: int, exclude_heard: bool) -> tuple[np.ndarray, np.ndarray]: ...

    def for_history(
        self, history: sp.csr_matrix, n: int, exclude_heard: bool
    ) -> tuple[np.ndarray, np.ndarray]: ...


class ExactRetriever:
    """Scores every item with the model itself."""

    kind = "exact"

    def __init__(self, model: Recommender) -> None:
        self.model = model

    def for_user(self, user: int, n: int, exclude_heard: bool) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self.model.recommend(np.asarray([user]), n, exclude_heard)
        return ids[0], scores[0]

    def for_history(
        self, history: sp.csr_matrix, n: int, exclude_heard: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self.model.recommend_for_history(history, n, exclude_heard)
        return ids[0], scores[0]


@dataclass(frozen=True)
class AnnSettings:
    head_items: int = 8192
    hnsw_m: int = 16
    ef_construction: int = 64
    ef_search: int = 64  # a tail search 0.5x 128's CPU, recall unchanged (docs/serving.md)
    search_threads: int = 1
    build_threads: int = 0  # 0: every core (building happens once, at load)


class FactorIndex:
    """Norm-ranged inner-product index over a factor model's item vectors (see module doc)."""

    kind = "hnsw"

    def __init__(
        self, model: Recommender, settings: AnnSettings | None = None, tail_file: Path | None = None
    ) -> None:
        import faiss

        if not isinstance(model, FactorModel):
            raise TypeError(f"{type(model).__name__} has no item factors to index")
        self._faiss = faiss
        self.model = model
        self.settings = settings or AnnSettings()
        # The loading thread builds with build_threads; searches then run single-threaded.
        # Every core by default, though the server pins its request path to one thread: the
        # build runs once per load, before the model serves.
        build_threads = self.settings.build_threads or os.cpu_count() or 1
        tiers = build_tiers(model, self.settings.head_items, self.settings.hnsw_m,
                            self.settings.ef_construction, build_threads, tail_file)  # fmt: skip
        self.n_items, self.dim = tiers.n_items, tiers.dim
        self.head_items, self.tail_items = tiers.head_items, tiers.tail_items
        self.in_head = tiers.in_head
        self.tail_max_norm, self.head, self.tail = tiers.tail_max_norm, tiers.head, tiers.tail
        # The head's vectors as numpy sees them (a view of the flat index's own storage, no
        # copy), and each item's row in it (-1: in the tail), for the head's exact scoring.
        self._head_vectors = faiss.rev_swig_ptr(
            self.head.get_xb(), len(self.head_items) * self.dim
        ).reshape(len(self.head_items), self.dim)
        self._head_position = np.full(self.n_items, -1, np.int32)
        self._head_position[self.head_items] = np.arange(len(self.head_items), dtype=np.int32)
        self._omp = threading.local()  # threads whose OpenMP count faiss has been given
        self._scratch = threading.local()  # per thread: the head's scores, a mask over the items
        if self.tail is not None:
            self.tail.hnsw.efSearch = self.settings.ef_search
        self.build_seconds = tiers.build_seconds
        self.searches = 0  # statistics only: unlocked increments may drop a count
        self.tail_searches = 0
        self.recall_at_10: float | None = None
        self.recall_users = 0
        self.tail_share: float | None = None  # share of sampled queries that needed the tail

    # -- queries -----------------------------------------------------------------------------
    def for_user(self, user: int, n: int, exclude_heard: bool) -> tuple[np.ndarray, np.ndarray]:
        matrix = self.model.user_items_  # the row's slice: scipy's row indexing costs ~30 us
        heard = (
            matrix.indices[matrix.indptr[user] : matrix.indptr[user + 1]]
            if exclude_heard
            else _NONE
        )
        if len(heard) + n > MAX_ANN_FETCH:
            ids, scores = self.model.recommend(np.asarray([user]), n, exclude_heard)
            return ids[0], scores[0]
        query = self.model.user_vectors(np.asarray([user]))
        ids, scores = self.search(query, heard, n)
        if self._short(ids, heard, n):
            ids, scores = self.model.recommend(np.asarray([user]), n, exclude_heard)
            return ids[0], scores[0]
        return ids, scores

    def for_history(
        self, history: sp.csr_matrix, n: int, exclude_heard: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        heard = history.indices if exclude_heard else _NONE
        if len(heard) + n > MAX_ANN_FETCH:
            ids, scores = self.model.recommend_for_history(history, n, exclude_heard)
            return ids[0], scores[0]
        query = self.model.history_vectors(history)
        ids, scores = self.search(query, heard, n)
        if self._short(ids, heard, n):
            ids, scores = self.model.recommend_for_history(history, n, exclude_heard)
            return ids[0], scores[0]
        return ids, scores

    def _short(self, ids: np.ndarray, heard: np.ndarray, n: int) -> bool:
        # A graph search may reach fewer items than asked for (large n): then score exactly.
        # ``search`` pads at the end, so a found last item means all n were found.
        if len(ids) and ids[-1] >= 0:
            return False
        return int((ids >= 0).sum()) < min(n, self.n_items - len(heard))

    def search(self, query: np.ndarray, heard: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-n for one query vector, never returning an item of ``heard``."""
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(self.dim)
        position = self._head_position[heard]  # heard items' rows in the head, -1 in the tail
        in_head = position >= 0
        ids, scores = self._head(query, position[in_head], n)
        bound = math.sqrt(float(query @ query)) * self.tail_max_norm
        if self.tail is not None and (len(ids) < n or scores[n - 1] < bound):
            self.tail_searches += 1
            tail_ids, tail_scores = self._tail(query, heard[~in_head], n)
            ids = np.concatenate([ids, tail_ids])
            scores = np.concatenate([scores, tail_scores])
            order = np.lexsort((ids, -scores))[:n]
            ids, scores = ids[order], scores[order]
        self.searches += 1
        if len(ids) == n:
            return ids, scores
        out_ids = np.full(n, -1, np.int64)
        out_scores = np.full(n, -np.inf, np.float32)
        out_ids[: len(ids)], out_scores[: len(ids)] = ids, scores
        return out_ids, out_scores

    def _head(self, query: np.ndarray, heard: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The exact tier, scored by one matrix-vector product into this thread's buffer, the
        heard rows (``heard``: positions in the head) set to -inf, the top n picked by
        ``top_candidates``: no over-fetching (faiss's flat search for n + the heard items, then
        filtering, made a whole query 1.01-1.1x as costly: docs/serving.md)."""
        scores = np.dot(self._head_vectors, query, out=self._head_buffer())
        scores[heard] = -np.inf
        k = min(n, len(scores) - len(heard))
        if k <= 0:
            return _NONE, _NO_SCORES
        top = top_candidates(scores, k)
        top_scores = scores[top]
        ids = self.head_items[top]
        order = np.lexsort((ids, -top_scores))[:k]
        return ids[order], top_scores[order]

    def _tail(self, query: np.ndarray, heard: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The graph tier: n + the heard items in the tier, the heard ones filtered out."""
        if not getattr(self._omp, "set", False):
            # OpenMP counts are per calling thread, and setting one costs tens of microseconds.
            self._faiss.omp_set_num_threads(self.settings.search_threads)
            self._omp.set = True
        k = min(n + len(heard), len(self.tail_items))
        scores, positions = self.tail.search(query.reshape(1, self.dim), k)
        found = positions[0] >= 0
        ids = self.tail_items[positions[0][found]]
        scores = scores[0][found]
        if len(heard):
            # Mark the heard items in this thread's mask, look the found ones up, clear them:
            # 24 against 118 us for a Python set at 100 heard items (np.isin sorts both,
            # slower still; docs/serving.md).
            mask = self._heard_mask()
            mask[heard] = True
            keep = ~mask[ids]
            mask[heard] = False
            ids, scores = ids[keep], scores[keep]
        return ids[:n], scores[:n]

    def _head_buffer(self) -> np.ndarray:
        """This thread's buffer for the head's scores (overwritten by every search)."""
        buffer = getattr(self._scratch, "head", None)
        if buffer is None:
            buffer = self._scratch.head = np.empty(len(self.head_items), dtype=np.float32)
        return buffer

    def _heard_mask(self) -> np.ndarray:
        """This thread's all-False mask over the items (set and cleared within one search)."""
        mask = getattr(self._scratch, "mask", None)
        if mask is None:
            mask = self._scratch.mask = np.zeros(self.n_items, dtype=bool)
        return mask

    # -- quality -----------------------------------------------------------------------------
    def measure_recall(self, sample_users: int, k: int = 10, seed: int = 0) -> float:
        """Recall@k of this index against the model's exact top-k (heard items excluded),
        averaged over a random sample of training users; stored on the index and returned."""
        n_users = self.model.user_items_.shape[0]
        rng = np.random.default_rng(seed)
        users = np.sort(rng.choice(n_users, min(sample_users, n_users), replace=False))
        before = self.tail_searches
        hits = possible = 0
        for start in range(0, len(users), RECALL_BLOCK):
            block = users[start : start + RECALL_BLOCK]
            exact, _ = self.model.recommend(block, k, exclude_heard=True)
            for row, user in zip(exact, block, strict=True):
                approx, _ = self.for_user(int(user), k, exclude_heard=True)
                truth = row[row >= 0]
                hits += len(np.intersect1d(approx[approx >= 0], truth))
                possible += len(truth)
        self.recall_at_10 = hits / possible if possible else 1.0
        self.recall_users = len(users)
        self.tail_share = (self.tail_searches - before) / max(len(users), 1)
        return self.recall_at_10

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "items": self.n_items,
            "head_items": len(self.head_items),
            "hnsw_m": self.settings.hnsw_m,
            "ef_search": self.settings.ef_search,
            "build_seconds": round(self.build_seconds, 3),
            "recall_at_10": self.recall_at_10,
            "recall_users": self.recall_users,
            "tail_share": self.tail_share,
        }


_NONE = np.empty(0, np.int64)
_NO_SCORES = np.empty(0, np.float32)
# top_candidates splits the scores into at least this many strided groups (4k for larger k).
TOP_GROUPS = 128


def top_candidates(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of every score from the k-th largest up (1 <= k <= len(scores); ties of the
    k-th included), with maybe a few just below it, in no particular order: usually k.

    ``argpartition`` over the head's 8,192 scores costs about 65 us, twice the product that
    computes them. Instead the scores are read as ``groups`` strided groups (a row-major
    ``(rows, groups)`` view, whose column maxima are one vectorised pass): the k-th largest
    group maximum ``t`` is a lower bound on the k-th largest score (k groups each hold a score
    of at least ``t``), so every top-k score is ``>= t``, and the scores ``>= t`` are few
    (10-16 for k = 10 on the benchmark's head: 13 us in all). Where there are too few rows
    for the groups to pay, ``argpartition`` finds the k-th score instead. Ties of the k-th
    are all kept, so the top k by (score, item) is one answer, whichever tied item
    ``argpartition`` would have picked. Scores with a NaN: ``argpartition``'s top k alone.
    """
    size = len(scores)
    groups = max(TOP_GROUPS, 4 * k)
    rows = size // groups
    if rows >= 4:
        maxima = scores[: rows * groups].reshape(rows, groups).max(axis=0)
        threshold = np.partition(maxima, groups - k)[groups - k]
    else:
        top = np.argpartition(scores, size - k)[size - k :]
        threshold = scores[top].min()
    if threshold == threshold:  # not NaN (a NaN sorts last, above every number)
        found = np.flatnonzero(scores >= threshold)
        if len(found) >= k:
            return found
    return np.argpartition(scores, size - k)[size - k :]


def build_retriever(
    model: Recommender,
    ann_threshold: int,
    settings: AnnSettings | None = None,
    recall_users: int = 500,
    tail_file: Path | None = None,
) -> ExactRetriever | FactorIndex:
    """Exact retrieval for small catalogues and non-factor models; a measured ANN index else
    (its graph shared through ``tail_file``: ``models.ann.build_tiers``)."""
    n_items = model.user_items_.shape[1]
    if n_items < ann_threshold or not isinstance(model, FactorModel):
        return ExactRetriever(model)
    index = FactorIndex(model, settings, tail_file)
    recall = index.measure_recall(recall_users)
    log.info(
        "ANN index over %d items built in %.1f s; recall@10 %.4f on %d users "
        "(%.0f%% of queries searched the HNSW tier)",
        n_items,
        index.build_seconds,
        recall,
        index.recall_users,
        100 * (index.tail_share or 0.0),
    )
    return index

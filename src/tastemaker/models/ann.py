"""Approximate top-n for many users at once over a factor model's item vectors (faiss).

The norm-ranged index the service also searches (``serving/retrieval.py`` explains why), built
once here (``build_tiers``):
the ``head_items`` longest item vectors in an exact flat inner-product index, the rest in an
HNSW graph, searched only for the users whose head results do not already beat the
Cauchy-Schwarz bound of the tail. Here queries come in blocks (the nightly batch), so faiss
searches each block with all its threads; heard items are excluded by over-fetching (n plus
the block's largest number of heard items in that tier) and filtering. A user for whom the
graph yields too few items is ranked exactly by the model.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

import tastemaker.threads as thread_policy
from tastemaker.models.base import FactorModel, Recommender


@dataclass(frozen=True)
class IndexSettings:
    head_items: int = 8192
    hnsw_m: int = 16
    ef_construction: int = 64
    ef_search: int = 128  # raised to the number of items fetched when that is larger
    threads: int = 0  # 0: the thread policy's choice (tastemaker.threads: the cores free now)


@dataclass
class Tiers:
    """The two tiers of a norm-ranged index: the ``head_items`` longest item vectors in an
    exact flat inner-product index, the rest in an HNSW graph (``tail``; None when empty)."""

    n_items: int
    dim: int
    head_items: np.ndarray
    tail_items: np.ndarray
    in_head: np.ndarray  # per item: True where it lives in the head tier
    tail_max_norm: float  # the Cauchy-Schwarz bound of any tail score is this x |query|
    head: Any
    tail: Any
    build_seconds: float


def build_tiers(
    model: FactorModel,
    head_items: int,
    hnsw_m: int,
    ef_construction: int,
    threads: int,
    tail_file: Path | None = None,
) -> Tiers:
    """Both tiers over ``model.item_vectors()``, built with ``threads`` OpenMP threads (0:
    the thread policy's pick; OpenMP counts are per calling thread: this sets the caller's).

    ``tail_file``: the graph is read from this file, memory-mapped, when it exists, else built
    and written there first, so that processes serving one model share one graph (the
    service's workers: a private folder only they write, never a user's file)."""
    # faiss only for the approximate path (a native library most commands never load).
    import faiss

    vectors = np.ascontiguousarray(model.item_vectors(), dtype=np.float32)
    n_items, dim = vectors.shape
    norms = np.linalg.norm(vectors, axis=1)
    order = np.argsort(-norms, kind="stable")
    n_head = min(head_items, n_items)
    head_ids = order[:n_head].astype(np.int64)
    tail_ids = order[n_head:].astype(np.int64)
    in_head = np.zeros(n_items, dtype=bool)
    in_head[head_ids] = True
    started = time.perf_counter()
    faiss.omp_set_num_threads(threads or thread_policy.pick())
    head = faiss.IndexFlatIP(dim)
    head.add(vectors[head_ids])
    tail = None
    if len(tail_ids) and tail_file is not None and tail_file.exists():
        with contextlib.suppress(OSError, RuntimeError):  # unreadable: built below instead
            tail = _mapped_graph(tail_file, len(tail_ids), dim)
    if len(tail_ids) and tail is None:
        tail = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        tail.hnsw.efConstruction = ef_construction
        tail.add(vectors[tail_ids])
        if tail_file is not None:
            try:
                _write_graph(tail, tail_file)
                tail = _mapped_graph(tail_file, len(tail_ids), dim) or tail
            except (OSError, RuntimeError):  # a full disk: this process keeps its own graph
                pass
    return Tiers(
        n_items, dim, head_ids, tail_ids, in_head,
        float(norms[tail_ids[0]]) if len(tail_ids) else 0.0,
        head, tail, time.perf_counter() - started,
    )  # fmt: skip


def _write_graph(index: Any, path: Path) -> None:
    import faiss

    fd, tmp = tempfile.mkstemp(prefix=".graph-", dir=path.parent)
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        os.replace(tmp, path)  # another process may write its own graph at once: either wins
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mapped_graph(path: Path, items: int, dim: int) -> Any:
    """The HNSW graph of ``path``, memory-mapped (its vectors and links stay in the page cache,
    one copy for every process); None unless it is one over ``items`` vectors of ``dim``."""
    import faiss

    # IO_FLAG_MMAP_IFC maps the vectors and the links; IO_FLAG_MMAP reads them into memory.
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
    if not isinstance(index, faiss.IndexHNSWFlat) or index.ntotal != items or index.d != dim:
        return None
    return index


def search_tiers(
    tiers: Tiers, query: np.ndarray, exclude: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-n items for one query vector, none of ``exclude``, best first (padded with -1 /
    -inf): the head, and the tail only where the head's n-th score is below the tail's
    Cauchy-Schwarz bound. Excluded items are over-fetched (n more per excluded item of the
    tier) and filtered. Runs on the caller's OpenMP settings (a request sets one thread)."""
    query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, tiers.dim)
    exclude = np.asarray(exclude, dtype=np.int64)
    in_head = tiers.in_head[exclude]
    ids, scores = _search_tier(tiers.head, tiers.head_items, query, exclude[in_head], n)
    bound = float(np.linalg.norm(query)) * tiers.tail_max_norm
    if tiers.tail is not None and (len(ids) < n or scores[n - 1] < bound):
        tail_ids, tail_scores = _search_tier(
            tiers.tail, tiers.tail_items, query, exclude[~in_head], n
        )
        ids = np.concatenate([ids, tail_ids])
        scores = np.concatenate([scores, tail_scores])
        order = np.lexsort((ids, -scores))[:n]
        ids, scores = ids[order], scores[order]
    out_ids = np.full(n, -1, np.int64)
    out_scores = np.full(n, -np.inf, np.float32)
    out_ids[: len(ids)], out_scores[: len(ids)] = ids[:n], scores[:n]
    return out_ids, out_scores


def _search_tier(index, items, query, exclude, n) -> tuple[np.ndarray, np.ndarray]:
    k = min(n + len(exclude), index.ntotal)
    scores, positions = index.search(query, k)
    found = positions[0] >= 0
    ids, scores = items[positions[0][found]], scores[0][found]
    if len(exclude):
        keep = ~np.isin(ids, exclude, assume_unique=True)
        ids, scores = ids[keep], scores[keep]
    return ids[:n], scores[:n]


class BatchFactorIndex:
    """``BlockRanker`` over a norm-ranged faiss index of ``model.item_vectors()``."""

    kind = "faiss"

    def __init__(self, model: Recommender, settings: IndexSettings | None = None) -> None:
        # faiss only for the approximate path (a native library most commands never load).
        import faiss

        if not isinstance(model, FactorModel):
            raise TypeError(f"{type(model).__name__} has no item factors to index")
        self._faiss = faiss
        self.model = model
        self.settings = settings or IndexSettings()
        tiers = build_tiers(model, self.settings.head_items, self.settings.hnsw_m,
                            self.settings.ef_construction, self.settings.threads)  # fmt: skip
        self.n_items, self.dim = tiers.n_items, tiers.dim
        self.head_items, self.tail_items = tiers.head_items, tiers.tail_items
        self.in_head = tiers.in_head
        self.tail_max_norm, self.head, self.tail = tiers.tail_max_norm, tiers.head, tiers.tail
        self.build_seconds = tiers.build_seconds
        self.tail_queries = 0
        self.queries = 0

    def rank(self, users: np.ndarray, n: int, exclude_heard: bool) -> tuple[np.ndarray, np.ndarray]:
        """Top-n for a block of training users (``BlockRanker``)."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        queries = np.ascontiguousarray(self.model.user_vectors(users), dtype=np.float32)
        heard = self.model.user_items_[users]
        if not exclude_heard:
            heard = sp.csr_matrix(heard.shape, dtype=np.float32)
        ids, scores = self._tier(self.head, self.head_items, queries, heard, self.in_head, n)
        self.queries += len(users)
        if self.tail is not None:
            bound = np.linalg.norm(queries, axis=1) * self.tail_max_norm
            # The head's n-th result beats every possible tail score: the tail cannot enter.
            need = ~(scores[:, n - 1] >= bound) if ids.shape[1] >= n else np.ones(len(users), bool)
            rows = np.flatnonzero(need)
            if len(rows):
                self.tail_queries += len(rows)
                tail_ids, tail_scores = self._tier(
                    self.tail, self.tail_items, queries[rows], heard[rows], ~self.in_head, n
                )
                merged = _merge(ids[rows], scores[rows], tail_ids, tail_scores, n)
                ids, scores = _pad(ids, scores, n)
                ids[rows], scores[rows] = merged
        ids, scores = _pad(ids, scores, n)
        return self._fill_short(users, ids, scores, heard, n, exclude_heard)

    def _tier(self, index, items, queries, heard, in_tier, n) -> tuple[np.ndarray, np.ndarray]:
        """Top-n of one tier for each query, heard items of that tier left out."""
        row_of_pair = np.repeat(np.arange(heard.shape[0]), np.diff(heard.indptr))
        per_row = np.bincount(row_of_pair[in_tier[heard.indices]], minlength=heard.shape[0])
        k = int(min(n + (per_row.max() if len(per_row) else 0), index.ntotal))
        if hasattr(index, "hnsw"):
            index.hnsw.efSearch = max(self.settings.ef_search, k)
        scores, positions = index.search(queries, k)
        found = positions >= 0
        ids = np.where(found, items[np.clip(positions, 0, None)], -1)
        if heard.nnz:
            heard_keys = np.sort(row_of_pair * self.n_items + heard.indices)
            keys = np.arange(len(ids))[:, None] * self.n_items + np.clip(ids, 0, None)
            place = np.minimum(np.searchsorted(heard_keys, keys), len(heard_keys) - 1)
            found &= heard_keys[place] != keys
        scores = np.where(found, scores, -np.inf).astype(np.float32)
        ids = np.where(found, ids, -1)
        # Kept items first (stable: faiss's order), then cut to n.
        order = np.argsort(~found, axis=1, kind="stable")[:, :n]
        return np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)

    def _fill_short(self, users, ids, scores, heard, n, exclude_heard):
        """Rank exactly the users for whom the index found fewer items than there are."""
        possible = np.minimum(n, self.n_items - np.diff(heard.indptr))
        short = np.flatnonzero((ids >= 0).sum(axis=1) < possible)
        if len(short):
            ids[short], scores[short] = self.model.recommend(users[short], n, exclude_heard)
        return ids, scores


def _pad(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if ids.shape[1] >= n:
        return ids[:, :n].copy(), scores[:, :n].copy()
    width = n - ids.shape[1]
    return (
        np.pad(ids, ((0, 0), (0, width)), constant_values=-1),
        np.pad(scores, ((0, 0), (0, width)), constant_values=-np.inf),
    )


def _merge(ids_a, scores_a, ids_b, scores_b, n) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the best n of two candidate lists (ties to the lower item index)."""
    ids = np.concatenate([ids_a, ids_b], axis=1)
    scores = np.concatenate([scores_a, scores_b], axis=1)
    order = np.lexsort((ids, -scores), axis=1)[:, :n]
    return _pad(np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1), n)


def recall(model: Recommender, index: BatchFactorIndex, users: np.ndarray, n: int) -> float:
    """Share of the exact top-n (heard items excluded) that the index finds, over ``users``."""
    exact, _ = model.recommend(users, n, exclude_heard=True)
    approx, _ = index.rank(users, n, exclude_heard=True)
    hits = possible = 0
    for truth, found in zip(exact, approx, strict=True):
        truth = truth[truth >= 0]
        hits += len(np.intersect1d(truth, found[found >= 0]))
        possible += len(truth)
    return hits / possible if possible else 1.0

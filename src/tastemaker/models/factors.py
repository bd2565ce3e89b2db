"""What the matrix-factorisation models on implicit (ALS, BPR; ALS on Spark) share: the
cosine over factor vectors, implicit's top-k as their ranking, and the signal that stops
implicit's training loop from a fit callback."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from implicit.cpu.topk import topk

from tastemaker.models.base import FactorModel, Recommender, single_blas_thread


class StopTraining(Exception):
    """Raised from implicit's per-iteration callback when the fit callback asks to stop."""


def row_norms(vectors: np.ndarray) -> np.ndarray:
    """Each row's length, 1 where it is 0 (a divisor for cosines)."""
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    return norms


def cosine_to_all(
    vectors: np.ndarray, items: np.ndarray, norms: np.ndarray | None = None
) -> np.ndarray:
    """Cosine similarity of the given rows of ``vectors`` to every row (float32); ``norms``:
    ``row_norms(vectors)`` when the caller keeps them (on 200k rows they cost more than the
    product)."""
    norms = row_norms(vectors) if norms is None else norms
    sims = (vectors[items] @ vectors.T) / (norms[items, None] * norms[None, :])
    return sims.astype(np.float32, copy=False)


def cosine_among(vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Cosine similarity ``(k, k)`` among the given rows of ``vectors`` only (float32)."""
    chosen = vectors[np.atleast_1d(np.asarray(items, dtype=np.int64))]
    norms = np.linalg.norm(chosen, axis=1)
    norms[norms == 0] = 1.0
    unit = chosen / norms[:, None]
    return (unit @ unit.T).astype(np.float32, copy=False)


if TYPE_CHECKING:
    # A mixin for factor recommenders: the type checker sees what it is mixed into.
    class _RankingBase(FactorModel, Recommender): ...
else:
    _RankingBase = object


class ImplicitRanking(_RankingBase):
    """``recommend`` / ``recommend_for_history`` for factor models through implicit's
    multi-threaded top-k: the same lists as the base class's dense ranking (which stays the
    reference), without materialising the score matrix; ~1.7x faster for all HetRec users."""

    def recommend(
        self,
        users: np.ndarray,
        n: int = 10,
        exclude_heard: bool = True,
        items: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if items is not None or exclude is not None:  # candidate sets: the base's dense path
            return super().recommend(users, n, exclude_heard, items=items, exclude=exclude)
        self._check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        return self._top_k(self.user_vectors(users), self.user_items_[users], n, exclude_heard)

    def recommend_for_history(
        self,
        history: sp.spmatrix,
        n: int = 10,
        exclude_heard: bool = True,
        items: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if items is not None or exclude is not None:
            return super().recommend_for_history(
                history, n, exclude_heard, items=items, exclude=exclude
            )
        self._check_fitted()
        history = self._check_history(history)
        return self._top_k(self.history_vectors(history), history, n, exclude_heard)

    def _top_k(
        self, vectors: np.ndarray, heard: sp.csr_matrix, n: int, exclude_heard: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        rows, items = vectors.shape[0], self.item_vectors()
        width = max(int(n), 0)
        ids = np.full((rows, width), -1, np.int64)
        scores = np.full((rows, width), -np.inf, np.float32)
        n_eff = min(width, items.shape[0])
        if rows == 0 or n_eff == 0:
            return ids, scores
        # implicit's top-k runs its own threads, each calling BLAS: BLAS threads on top of
        # them oversubscribe the cores (all users of a 20,000-user model: ~2.5x slower).
        with single_blas_thread():
            found, best = topk(
                items,
                np.ascontiguousarray(vectors, dtype=items.dtype),
                n_eff,
                filter_query_items=sp.csr_matrix(heard) if exclude_heard else None,
            )
        # implicit marks filtered items with the lowest float instead of leaving them out.
        valid = best > np.finfo(np.float32).min
        ids[:, :n_eff] = np.where(valid, found, -1)
        scores[:, :n_eff] = np.where(valid, best, -np.inf)
        return ids, scores

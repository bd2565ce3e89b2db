"""Alternating least squares for implicit feedback (Hu, Koren & Volinsky 2008), on implicit.

The play counts reach implicit as confidences through a weighting (``bm25`` by default):
raw counts of 1 to 350,000 used as confidence drown every other signal (the original study's
first mistake). implicit uses ``alpha * weight`` as the confidence of a listened pair and 1
for the rest. Histories not seen in training are folded in by solving the user's least-squares
problem exactly against the learned item factors: the system implicit's ``recalculate_user``
solves, here over a Gram matrix kept with the model, for a few rows at a time (a request).
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from scipy.linalg import lapack

import tastemaker.threads as threads
from tastemaker.artifacts import ArraySpec
from tastemaker.data.interactions import Interactions
from tastemaker.models.base import FactorModel, Recommender, WeightedInput, single_blas_thread
from tastemaker.models.factors import (
    ImplicitRanking,
    StopTraining,
    cosine_among,
    cosine_to_all,
    row_norms,
)
from tastemaker.models.params import at_least, positive

# Histories of up to this many rows are folded in here, one LAPACK solve each; more (an
# evaluation's test users) go to implicit's solver, which spreads the rows over its threads.
OWN_FOLD_IN_ROWS = 16


class ALS(ImplicitRanking, WeightedInput, FactorModel, Recommender):
    """Implicit-feedback matrix factorisation by alternating least squares.

    Hyperparameters: ``factors``, ``regularization`` (L2, absolute as in implicit), ``alpha``
    (confidence = ``alpha * weight``), ``iterations``, ``weighting`` (+ ``bm25_k1`` /
    ``bm25_b``), ``seed`` (initial factors). implicit fits with its own threads, BLAS pinned to
    one thread as implicit advises; results depend on ``seed`` only.

    The defaults (BM25 with a small ``K1``, which saturates after a few plays whatever the
    count scale, and a confidence scale to match) were chosen by one sweep over five data sets
    for the best worst-case ratio to each one's tuned optimum (bench/defaults_sweep.py,
    docs/defaults.md).
    """

    name = "als"
    _gram_cache: tuple[np.ndarray, np.ndarray] | None  # (item factors, their Gram + reg I)
    param_rules = {
        "factors": positive(),
        "iterations": positive(),
        "alpha": positive(),
        "regularization": at_least(0),
    }

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 0.01,
        alpha: float = 0.3,
        iterations: int = 20,
        weighting: str = "bm25",
        bm25_k1: float = 5.0,
        bm25_b: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.seed = seed

    # -- fitting -----------------------------------------------------------------------------
    def _new_solver(self) -> AlternatingLeastSquares:
        # Built under the BLAS limit, so implicit's check of the BLAS threads stays quiet.
        return AlternatingLeastSquares(
            factors=int(self.factors),
            regularization=float(self.regularization),
            alpha=float(self.alpha),
            iterations=int(self.iterations),
            random_state=int(self.seed),
            dtype=np.float32,
            num_threads=threads.pick(),  # implicit's OpenMP loops: the cores free now
        )

    def _fit(self, interactions: Interactions) -> None:
        weighted = self._fit_weighting(interactions.user_items)
        with single_blas_thread():
            solver = self._new_solver()

            # implicit updates its factor arrays in place, so the fit callback can score the
            # model between iterations through these references.
            def on_iteration(iteration: int, _elapsed: float, _loss: float | None) -> None:
                self.user_factors_ = solver.user_factors
                self.item_factors_ = solver.item_factors
                if self._report_iteration(iteration + 1):
                    raise StopTraining

            with contextlib.suppress(StopTraining):
                solver.fit(weighted, show_progress=False, callback=on_iteration)
        self.user_factors_ = solver.user_factors
        self.item_factors_ = solver.item_factors
        self._solver = solver

    def _fitted_solver(self) -> AlternatingLeastSquares:
        """The implicit model around the learned factors (rebuilt after ``load``)."""
        solver = getattr(self, "_solver", None)
        if solver is None or solver.item_factors is not self.item_factors_:
            with single_blas_thread():
                solver = self._new_solver()
            solver.user_factors = self.user_factors_
            solver.item_factors = self.item_factors_
            self._solver = solver
        return solver

    # -- vectors and scores ------------------------------------------------------------------
    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self.user_factors_[np.asarray(users, dtype=np.int64)]

    def history_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        """Fold-in: each row's factors solved exactly against the item factors."""
        self._check_fitted()
        history = self._check_history(history)
        if history.shape[0] > OWN_FOLD_IN_ROWS:
            solver = self._fitted_solver()
            with single_blas_thread():
                vectors = solver.recalculate_user(np.arange(history.shape[0]), self._weigh(history))
            return np.asarray(vectors, dtype=np.float32).reshape(history.shape[0], -1)
        confidence = np.float32(self.alpha) * self._weigh_values(history)
        vectors = np.zeros((history.shape[0], self.item_factors_.shape[1]), np.float32)
        for row in range(history.shape[0]):
            start, end = history.indptr[row], history.indptr[row + 1]
            if start < end:
                vectors[row] = self._fold_in_row(history.indices[start:end], confidence[start:end])
        return vectors

    def _fold_in_row(self, items: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """Hu et al.'s normal equations for one history, as implicit's ``_least_squares``
        writes them: ``(YtY + reg I + sum (|c| - 1) y y^T) x = sum_{c > 0} c y``, solved by
        Cholesky (LAPACK ``posv``). YtY + reg I is computed once per model, not per call."""
        vectors = self.item_factors_[items]
        gram = self._gram() + (vectors.T * (np.abs(confidence) - 1)) @ vectors
        target = vectors.T @ np.maximum(confidence, 0)
        # The matrix is symmetric: its transpose is the Fortran-ordered array LAPACK wants.
        _, solution, info = lapack.sposv(gram.T, target, overwrite_a=True, overwrite_b=True)
        if info != 0:  # not positive definite (no regularisation): implicit's own answer
            weights = sp.csr_matrix(
                (confidence / np.float32(self.alpha), items, [0, len(items)]),
                shape=(1, self.item_factors_.shape[0]),
            )
            with single_blas_thread():
                return self._fitted_solver().recalculate_user(np.arange(1), weights)[0]
        return solution

    def _gram(self) -> np.ndarray:
        """``Y^T Y + reg I`` of the item factors (float32, as implicit's ``YtY``), cached."""
        cached: tuple[np.ndarray, np.ndarray] | None = getattr(self, "_gram_cache", None)
        if cached is None or cached[0] is not self.item_factors_:
            factors = self.item_factors_
            with single_blas_thread():
                gram = factors.T @ factors
            gram[np.diag_indices_from(gram)] += np.float32(self.regularization)
            cached = (factors, gram)
            self._gram_cache = cached
        return cached[1]

    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        return self.item_factors_

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        vectors = self.history_vectors(history) if users is None else self.user_vectors(users)
        return vectors @ self.item_factors_.T

    def _similar(self, items: np.ndarray) -> np.ndarray:
        # The item norms once per set of factors (radio asks for an artist's neighbours).
        cached = getattr(self, "_norms", None)
        if cached is None or cached[0] is not self.item_factors_:
            cached = self._norms = (self.item_factors_, row_norms(self.item_factors_))
        return cosine_to_all(self.item_factors_, items, cached[1])

    def pairwise_similarity(self, items: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return cosine_among(self.item_factors_, items)

    def explain(self, history: sp.spmatrix, item: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Exact decomposition of the folded-in score into one term per history item
        (section 5 of Hu et al., implicit's ``explain``); the terms sum to the score."""
        self._check_fitted()
        row = self._check_history(history)[:1]
        if row.nnz == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        _, top, _ = self._fitted_solver().explain(0, self._weigh(row), int(item), N=n)
        ids = np.asarray([i for i, _ in top], dtype=np.int64)
        contributions = np.asarray([s for _, s in top], dtype=np.float32)
        return ids, contributions

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            **self._weighting_state(),
        }

    def _state_dims(self) -> dict[str, int]:
        return {"factors": self.factors}

    def _state_spec(self) -> dict[str, ArraySpec]:
        return {
            "user_factors": ArraySpec(("users", "factors")),
            "item_factors": ArraySpec(("items", "factors")),
            **self._weighting_spec(),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"].astype(np.float32, copy=False)
        self.item_factors_ = arrays["item_factors"].astype(np.float32, copy=False)
        self._set_weighting_state(arrays)
        self._solver = None
        self._gram_cache = None

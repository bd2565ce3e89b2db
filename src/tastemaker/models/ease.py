"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data").

A linear item-to-item model with a closed form: ``B = I - P / diag(P)`` column-wise with
``P = (X'X + lambda I)^-1`` and a zero diagonal; a history ``x`` scores ``x B``. ``P`` is the
inverse of a dense items x items matrix, so the item side is pruned to the items with at
least ``min_listeners`` listeners in training (on HetRec 2K, 2 keeps ~6,000 of 17,632
artists) and the inverse comes from a float32 Cholesky factorisation (LAPACK potrf + potri).

Pruned items are simply not recommended: their score is ``-inf``, so they never enter a
top-n list (rows are padded with -1 when fewer than n items remain), ``similar_items`` has
nothing for them, and history items among them contribute nothing. An item heard by one
user gives the closed form almost nothing to learn from anyway.

Above ``SPARSE_ABOVE`` kept items (or with ``solver="sparse"``) the weights come from the
sparse approximate form of ``models/ease_sparse.py`` instead: each item's column regressed on
its ``neighbours`` nearest items only, ``neighbours`` non-zeros per column, memory linear in
the catalogue (docs/models.md has its cost and its distance from the exact form).

``dropout`` > 0 (exact form only) is Steck's emphasised denoising (EDLAE; NeurIPS 2020,
"Autoencoders that don't overfit towards the identity"): training as if each input item were
dropped with probability ``p`` and only the dropped ones had to be predicted, whose closed form
is this one with the diagonal penalty ``lambda + p / (1 - p) * G_jj`` in place of ``lambda``.
A large ``p`` models "predict the rest from a few items", the short-history task
(docs/protocols.md).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec, CSRSpec
from tastemaker.data.interactions import Interactions
from tastemaker.errors import ArtifactError, UsageError
from tastemaker.models.base import Recommender, WeightedInput
from tastemaker.models.ease_sparse import sparse_ease_weights
from tastemaker.models.params import at_least, between, one_of, positive

# A kept item costs two dense rows of float32 (Gram matrix, then B): 40,000 items ~ 13 GB.
MAX_ITEMS = 40_000
# solver="auto" uses the sparse form above this many kept items. At 8,000 synthetic artists
# the two cost about the same CPU (15.8 s exact, 17.6 s sparse); the dense inverse's cost grows
# with the cube (about 6x that at 15,000, and 1.8 GB), the sparse form's linearly
# (docs/models.md, bench/ease_scale.py).
SPARSE_ABOVE = 15_000
SOLVERS = ("auto", "exact", "sparse")
# The sparse form's weights, kept x kept (rows: the predicting item, columns: the predicted).
SPARSE_WEIGHTS = CSRSpec.prefixed("sparse_weights_", ("kept", "kept"), required=False)


def spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix via Cholesky (in place, same dtype)."""
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (matrix,))
    factor, info = potrf(matrix, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise UsageError("ease: the regularised Gram matrix is not positive definite")
    inverse, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise UsageError("ease: the regularised Gram matrix could not be inverted")
    # potri fills the upper triangle only; mirror it.
    upper = np.triu(inverse)
    upper += np.triu(inverse, 1).T
    return upper


class EASE(WeightedInput, Recommender):
    """Embarrassingly shallow autoencoder over the items with enough listeners.

    Hyperparameters: ``regularization`` (Steck's lambda, on the diagonal of ``X'X``),
    ``min_listeners`` (items with fewer training listeners are pruned and never recommended),
    ``weighting`` (``binary`` as in the paper; + ``bm25_k1`` / ``bm25_b``), ``solver``
    (``exact``: the dense inverse; ``sparse``: the approximate form with ``neighbours``
    regressors per item; ``auto``: exact up to ``SPARSE_ABOVE`` kept items, sparse above),
    ``dropout`` (EDLAE's drop probability; 0: plain EASE; exact solver only).
    """

    name = "ease"
    param_rules = {
        "regularization": positive(),
        "solver": one_of(*SOLVERS),
        "neighbours": at_least(1),
        "dropout": between(0, 1, high_open=True),
    }

    def __init__(
        self,
        regularization: float = 50.0,
        min_listeners: int = 2,
        weighting: str = "binary",
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        solver: str = "auto",
        neighbours: int = 100,
        dropout: float = 0.0,
    ) -> None:
        self.regularization = regularization
        self.min_listeners = min_listeners
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.solver = solver
        self.neighbours = neighbours
        self.dropout = dropout

    def _fit(self, interactions: Interactions) -> None:
        counts = interactions.user_items
        weighted = self._fit_weighting(counts)
        listeners = np.bincount(counts.indices, minlength=counts.shape[1])
        kept = np.flatnonzero(listeners >= int(self.min_listeners))
        if len(kept) == 0:
            raise UsageError(
                f"ease: no item has {self.min_listeners} or more listeners; lower min_listeners"
            )
        columns = sp.csc_matrix(weighted, dtype=np.float32)[:, kept]
        sparse = self.solver == "sparse" or (self.solver == "auto" and len(kept) > SPARSE_ABOVE)
        if sparse and self.dropout > 0:
            raise UsageError(
                f"ease: dropout needs the exact solver; {len(kept):,} kept items chose the sparse "
                f"one (solver={self.solver!r}); use solver='exact' or raise min_listeners"
            )
        if sparse:
            weights = sparse_ease_weights(columns, float(self.regularization), self.neighbours)
            self._set_weights(kept, weights)
            return
        if len(kept) > MAX_ITEMS:
            raise UsageError(
                f"ease: {len(kept):,} items have >= {self.min_listeners} listeners; the dense "
                f"inverse would need {2 * 4 * len(kept) ** 2 / 1e9:.0f} GB. Raise min_listeners "
                f"so that at most {MAX_ITEMS:,} remain, or use solver='sparse'"
            )
        gram = (columns.T @ columns).toarray().astype(np.float32, copy=False)
        diagonal = np.diag(gram) * np.float32(self.dropout / (1.0 - self.dropout))
        gram[np.diag_indices_from(gram)] += np.float32(self.regularization) + diagonal
        inverse = spd_inverse(gram)
        del gram
        weights = inverse / -np.diag(inverse)[None, :]
        np.fill_diagonal(weights, 0.0)
        self._set_weights(kept, weights.astype(np.float32, copy=False))

    def _set_weights(self, kept: np.ndarray, weights: np.ndarray | sp.csr_matrix) -> None:
        """``weights``: dense (the exact form) or CSR (the sparse form), kept x kept."""
        self.kept_items_ = np.asarray(kept, dtype=np.int64)
        self.weights_ = weights
        # Position of each item among the kept ones; -1 for pruned items.
        self.position_ = np.full(self.n_items_, -1, np.int64)
        self.position_[self.kept_items_] = np.arange(len(self.kept_items_))

    @property
    def is_sparse(self) -> bool:
        """Whether the fitted weights are the sparse approximate form."""
        return sp.issparse(self.weights_)

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        x = sp.csc_matrix(self._weigh(history), dtype=np.float32)[:, self.kept_items_]
        scores = np.full((history.shape[0], self.n_items_), -np.inf, np.float32)
        product = x.tocsr() @ self.weights_ if self.is_sparse else x @ self.weights_
        if sp.issparse(product):
            product = product.toarray()
        scores[:, self.kept_items_] = np.asarray(product, dtype=np.float32)
        return scores

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Row i of B: how strongly item i predicts each kept item; pruned items: all -inf
        (in the sparse form, items that i does not predict are -inf too)."""
        out = np.full((len(items), self.n_items_), -np.inf, np.float32)
        positions = self.position_[items]
        known = np.flatnonzero(positions >= 0)
        if not self.is_sparse:
            out[np.ix_(known, self.kept_items_)] = self.weights_[positions[known]]
            return out
        rows = self.weights_[positions[known]]
        lengths = np.diff(rows.indptr)
        out[np.repeat(known, lengths), self.kept_items_[rows.indices]] = rows.data
        return out

    def _weight_column(self, sources: np.ndarray, target: int) -> np.ndarray:
        """``B[sources, target]`` (positions among the kept items) as a dense vector."""
        if self.is_sparse:
            return self.weights_[sources][:, [target]].toarray().ravel()
        return self.weights_[sources, target]

    def explain(self, history: sp.spmatrix, item: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Exact: the score of ``item`` is the sum of these terms (weight x B[j, item])."""
        self._check_fitted()
        row = self._weigh(self._check_history(history)[:1])
        target = self.position_[int(item)]
        positions = self.position_[row.indices]
        known = positions >= 0
        if target < 0 or not known.any():
            return np.empty(0, np.int64), np.empty(0, np.float32)
        contribution = row.data[known] * self._weight_column(positions[known], target)
        items = row.indices[known].astype(np.int64)
        order = np.lexsort((items, -contribution))
        order = order[contribution[order] != 0][:n]
        return items[order], contribution[order].astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        if self.is_sparse:
            weights = SPARSE_WEIGHTS.arrays(self.weights_)
        else:
            weights = {"weights": self.weights_}
        return {"kept_items": self.kept_items_, **weights, **self._weighting_state()}

    def _state_spec(self) -> dict[str, ArraySpec | CSRSpec]:
        return {
            "kept_items": ArraySpec(("kept",), "int", low=0, high="items"),
            "weights": ArraySpec(("kept", "kept"), required=False),
            "sparse_weights": SPARSE_WEIGHTS,
            **self._weighting_spec(),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        kept = arrays["kept_items"]
        if len(np.unique(kept)) != len(kept):
            raise ArtifactError("model.npz: kept_items lists an item twice")
        dense, sparse = "weights" in arrays, SPARSE_WEIGHTS.indptr in arrays
        if dense == sparse:
            raise ArtifactError("model.npz: must hold either dense or sparse weights (one of them)")
        if dense:
            weights = arrays["weights"].astype(np.float32, copy=False)
        else:
            weights = SPARSE_WEIGHTS.build(arrays, (len(kept), len(kept)))
        self._set_weights(kept, weights)
        self._set_weighting_state(arrays)

"""RP3beta: a three-step random walk on the user-item graph with a popularity penalty
(Christoffel et al. 2015, "Blockbusters and Wallflowers"; Paudel et al. 2017, "Updatable,
accurate, diverse, and scalable recommendations for interactive applications").

A walk from item ``i`` goes to one of its listeners ``u`` with probability ``P(u | i)`` and on
to one of ``u``'s items ``j`` with ``P(j | u)``; with both probabilities raised to ``alpha``
(P3-alpha) and the arrival item's popularity divided out to the power ``beta``:

    W[i, j] = sum_u P(u | i)^alpha P(j | u)^alpha / listeners(j)^beta

Each row of ``W`` keeps its ``neighbours`` largest entries and, with ``normalize``, is scaled
to sum to 1. A history ``h`` (weighted like training) scores ``h @ W``: the walk's third step
starts from the history, so fold-in of any history is exact and needs no solve.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec, CSRSpec
from tastemaker.data.interactions import Interactions
from tastemaker.models.base import Recommender, WeightedInput
from tastemaker.models.knn import item_product_blocks, top_k_per_row
from tastemaker.models.params import at_least, positive

# The kept walk weights, items x items (non-negative).
SIMILARITY = CSRSpec.prefixed("similarity_", ("items", "items"), low=0.0)


def _transition(matrix: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """Rows scaled to sum to 1 (transition probabilities), each raised to ``alpha``."""
    m = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    sums = np.asarray(m.sum(axis=1)).ravel()
    sums[sums == 0] = 1.0
    m.data /= np.repeat(sums, np.diff(m.indptr))
    if alpha != 1.0:
        np.power(m.data, alpha, out=m.data)
    return m


def rp3beta_weights(
    weighted: sp.csr_matrix, alpha: float, beta: float, k: int, normalize: bool
) -> sp.csr_matrix:
    """Items x items: row i holds the ``k`` largest walk weights from item i (itself excluded).

    Formed in blocks of item rows whose product stays under ``knn.BLOCK_NNZ`` non-zeros, each
    cut to its top k before the next is formed, so memory is bounded by the block and the
    kept weights (``k`` per item), whatever the catalogue size.
    """
    x = sp.csr_matrix(weighted, dtype=np.float64, copy=True)
    # A walk needs non-negative steps (a weighting may give an item everybody plays <= 0).
    np.maximum(x.data, 0.0, out=x.data)
    x.eliminate_zeros()
    n_items = x.shape[1]
    user_to_item = _transition(x, alpha)
    item_users = x.T.tocsr()
    item_to_user = _transition(item_users, alpha)
    listeners = np.diff(item_users.indptr).astype(np.float64)
    penalty = np.maximum(listeners, 1.0) ** -float(beta)
    blocks = []
    for start, stop in item_product_blocks(item_users, x):
        block = (item_to_user[start:stop] @ user_to_item).tocoo()
        rows = block.row.astype(np.int64)
        cols = block.col.astype(np.int64)
        values = block.data * penalty[cols]
        keep = (rows + start != cols) & (values > 0)
        walk = sp.csr_matrix(
            (values[keep].astype(np.float32), (rows[keep], cols[keep])),
            shape=(stop - start, n_items),
        )
        blocks.append(top_k_per_row(walk, k))
    weights = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_items))
    weights = sp.csr_matrix(weights, dtype=np.float32)
    if normalize:
        sums = np.asarray(weights.sum(axis=1), dtype=np.float64).ravel()
        sums[sums == 0] = 1.0
        weights.data = (weights.data / np.repeat(sums, np.diff(weights.indptr))).astype(np.float32)
    weights.sort_indices()
    return weights


class RP3beta(WeightedInput, Recommender):
    """Random walk item-item model with a popularity penalty.

    Hyperparameters: ``alpha`` (exponent on the transition probabilities; 1 = the plain
    walk), ``beta`` (popularity penalty on the arrival item; 0 = P3-alpha), ``neighbours``
    (walk weights kept per item), ``normalize`` (kept weights of each item sum to 1),
    ``weighting`` (of the play counts the walk runs on; + ``bm25_k1`` / ``bm25_b``).

    The default BM25 with a small ``K1`` (3) saturates after a few plays, so a pair weighs
    about ``idf`` however the source counts (plays, capped plays, 0/1): the walk's steps go
    less often through artists everybody plays, which does the popularity correction:
    over five data sets an extra ``beta`` penalty cost more than it gave, so it defaults
    to 0 (docs/defaults.md has the sweep).
    """

    name = "rp3beta"
    param_rules = {"alpha": positive(), "beta": at_least(0), "neighbours": at_least(1)}

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 0.0,
        neighbours: int = 100,
        normalize: bool = True,
        weighting: str = "bm25",
        bm25_k1: float = 3.0,
        bm25_b: float = 0.8,
    ) -> None:
        self.alpha = alpha
        self.beta = beta
        self.neighbours = neighbours
        self.normalize = normalize
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b

    def _fit(self, interactions: Interactions) -> None:
        weighted = self._fit_weighting(interactions.user_items)
        self.similarity_ = rp3beta_weights(
            weighted,
            float(self.alpha),
            float(self.beta),
            int(self.neighbours),
            bool(self.normalize),
        )

    def _first_step(self, history: sp.csr_matrix) -> sp.csr_matrix:
        """The walk's first step from each history: ``P(j | u)^alpha`` over its items."""
        weighted = self._weigh(history)
        np.maximum(weighted.data, 0.0, out=weighted.data)
        return sp.csr_matrix(_transition(weighted, float(self.alpha)), dtype=np.float32)

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        scores = (self._first_step(history) @ self.similarity_).toarray()
        return scores.astype(np.float32, copy=False)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Each item's kept walk weights; items it does not reach: -inf."""
        rows = self.similarity_[items]
        dense = np.full((len(items), self.n_items_), -np.inf, np.float32)
        dense[np.repeat(np.arange(len(items)), np.diff(rows.indptr)), rows.indices] = rows.data
        return dense

    def explain(self, history: sp.spmatrix, item: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Exact: the score of ``item`` is the sum of these terms (weight x W[j, item])."""
        self._check_fitted()
        row = self._first_step(self._check_history(history)[:1])
        contribution = row.data * self.similarity_[row.indices, int(item)].toarray().ravel()
        keep = contribution > 0
        items, contribution = row.indices[keep].astype(np.int64), contribution[keep]
        order = np.lexsort((items, -contribution))[:n]
        return items[order], contribution[order].astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {**SIMILARITY.arrays(self.similarity_), **self._weighting_state()}

    def _state_spec(self) -> dict[str, ArraySpec | CSRSpec]:
        return {"similarity": SIMILARITY, **self._weighting_spec()}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        n = self.n_items_
        self.similarity_ = SIMILARITY.build(arrays, (n, n))
        self._set_weighting_state(arrays)

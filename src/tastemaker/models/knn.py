"""Neighbourhood models: item-based (Sarwar et al. 2001; top-N form of Deshpande & Karypis
2004) and user-based collaborative filtering.

Both measure likeness by the cosine of weighted play-count vectors with a shrinkage term,
``sim(a, b) = a . b / (|a| |b| + shrinkage)``, which pulls down similarities resting on little
evidence (two obscure artists sharing one listener look identical under plain cosine). The
weighting (``bm25`` by default) keeps a few enormous play counts from deciding the cosine.
A history is scored directly, so unseen histories need no fold-in step.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec, CSRSpec
from tastemaker.data.interactions import Interactions
from tastemaker.data.weighting import WEIGHTINGS, apply_weighting
from tastemaker.models.base import Recommender, WeightedInput
from tastemaker.models.params import at_least, between, one_of, positive

# Upper bound on the non-zeros of one block of the item-item product (bounds memory).
BLOCK_NNZ = 10_000_000
# Upper bound on the dense history x training-user similarities UserKNN holds at once.
BLOCK_FLOATS = 32_000_000

# ItemKNN's kept neighbours, items x items (shrunk cosines; 0 and negative values can occur).
SIMILARITY = CSRSpec.prefixed("similarity_", ("items", "items"))


# What both neighbourhood models' shared hyperparameters may hold.
KNN_RULES = {"neighbours": at_least(1), "shrinkage": at_least(0)}


def _column_norms(matrix: sp.csr_matrix) -> np.ndarray:
    return np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel()).astype(np.float32)


def _row_norms(matrix: sp.csr_matrix) -> np.ndarray:
    return np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel()).astype(np.float32)


def item_product_blocks(
    item_users: sp.csr_matrix, user_items: sp.csr_matrix, budget: int = BLOCK_NNZ
) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges of items whose rows of ``item_users @ user_items`` (items x
    items) hold at most ``budget`` non-zeros together (a single item may exceed it alone).

    Row i of the product has at most as many non-zeros as the summed history lengths of
    item i's users, so memory per block is bounded without forming the product first.
    """
    user_lengths = np.diff(user_items.indptr).astype(np.float64)
    cost = np.asarray(
        sp.csr_matrix(
            (np.ones(item_users.nnz), item_users.indices, item_users.indptr),
            shape=item_users.shape,
        )
        @ user_lengths
    ).ravel()
    bounds = [0]
    running = 0.0
    for i, c in enumerate(cost):
        if running + c > budget and i > bounds[-1]:
            bounds.append(i)
            running = 0.0
        running += c
    bounds.append(item_users.shape[0])
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest values of each row (ties: lower column first).

    Rows with at most k entries are kept whole; only the longer ones are cut, each with one
    linear-time partition (cheaper than sorting every entry of the block).
    """
    m = sp.csr_matrix(matrix)
    m.sort_indices()
    lengths = np.diff(m.indptr)
    keep = np.ones(m.nnz, dtype=bool)
    for row in np.flatnonzero(lengths > k):
        start, stop = m.indptr[row], m.indptr[row + 1]
        values = m.data[start:stop]
        kth = np.partition(values, len(values) - k)[len(values) - k]
        above = values > kth
        # Columns are sorted within the row, so the first ties are the lowest columns.
        ties = np.flatnonzero(values == kth)[: k - int(above.sum())]
        row_keep = above
        row_keep[ties] = True
        keep[start:stop] = row_keep
    counts = np.bincount(np.repeat(np.arange(m.shape[0]), lengths)[keep], minlength=m.shape[0])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(m.indptr.dtype)
    return sp.csr_matrix((m.data[keep], m.indices[keep], indptr), shape=m.shape)


def shrunk_cosine_neighbours(
    weighted: sp.csr_matrix,
    k: int,
    shrinkage: float,
    *,
    asymmetry: float = 0.5,
    exponent: float = 1.0,
    popularity_penalty: float = 0.0,
) -> sp.csr_matrix:
    """Items x items: row i holds item i's k most similar items (shrunk cosine over users).

    ``sim(i, j) = (x_i . x_j / (|x_i|^(2a) |x_j|^(2(1-a)) + shrinkage))^exponent / d_j^beta``
    with ``a = asymmetry`` (0.5: the plain cosine) and ``beta = popularity_penalty`` (``d_j``:
    listeners of item j); the defaults give the plain shrunk cosine. The top k are chosen on
    the final values. Exact and vectorised: the item-item product is formed in blocks of items
    whose product stays under ``BLOCK_NNZ`` non-zeros, shrunk, and cut to the top k per row.
    """
    x = sp.csr_matrix(weighted, dtype=np.float32)
    n_items = x.shape[1]
    item_users = x.T.tocsr()
    norms = _column_norms(x).astype(np.float64)
    # Plain cosine keeps the exact float32 arithmetic of the original formula.
    plain = asymmetry == 0.5
    norms32 = norms.astype(np.float32)
    row_norms = norms ** (2.0 * asymmetry)
    col_norms = norms ** (2.0 * (1.0 - asymmetry))
    penalty = None
    if popularity_penalty > 0:
        listeners = np.diff(item_users.indptr).astype(np.float64)
        penalty = np.maximum(listeners, 1.0) ** -float(popularity_penalty)
    blocks = []
    for start, stop in item_product_blocks(item_users, x):
        block = (item_users[start:stop] @ x).tocoo()
        rows = block.row.astype(np.int64)
        cols = block.col.astype(np.int64)
        if plain:
            values = block.data / (norms32[rows + start] * norms32[cols] + shrinkage)
        else:
            values = block.data / (row_norms[rows + start] * col_norms[cols] + shrinkage)
        if exponent != 1.0:
            values = np.power(np.maximum(values, 0.0), exponent)
        if penalty is not None:
            values = values * penalty[cols]
        keep = (rows + start != cols) & (values > 0) & np.isfinite(values)
        shrunk = sp.csr_matrix(
            (values[keep].astype(np.float32), (rows[keep], cols[keep])),
            shape=(stop - start, n_items),
        )
        blocks.append(top_k_per_row(shrunk, k))
    similarity = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_items))
    similarity.sort_indices()
    return similarity


class ItemKNN(WeightedInput, Recommender):
    """Item-based collaborative filtering.

    Fit keeps, for every item, its ``neighbours`` most similar items (shrunk cosine of the
    weighted item columns). A history ``h`` (weighted like training) scores item ``i`` as
    ``sum_j h_j * sim(j, i)`` over the history items ``j`` that have ``i`` among their
    neighbours.

    Hyperparameters: ``neighbours``, ``shrinkage``, ``weighting`` (+ ``bm25_k1``, ``bm25_b``),
    and options whose defaults give the plain shrunk cosine above:

    - ``asymmetry`` (Aiolli 2013's asymmetric cosine, 0.5 = cosine):
      ``sim(j, i) = x_j . x_i / (|x_j|^(2a) |x_i|^(2(1-a)) + shrinkage)``. On binary data
      ``a = 1`` is the conditional probability P(i | j), which favours popular targets, and
      ``a = 0`` is P(j | i), which favours rare ones.
    - ``exponent`` (Aiolli's locality ``q``, 1 = off): ``sim ** q``; ``q > 1`` lets the
      strongest neighbours dominate a score.
    - ``popularity_penalty`` (RP3beta's ``beta``, Paudel et al. 2017; 0 = off): divides
      ``sim(j, i)`` by the number of listeners of ``i`` to the power ``beta``, so that
      popular artists stop filling every list. Neighbours are chosen after this step.
    - ``normalize`` (False): scale each item's kept neighbour similarities to sum to 1, so
      every history item casts the same total vote whatever its neighbourhood looks like.
    - ``history_weighting`` (``log1p``; None = ``weighting``): the weighting of the scored
      history, separate from the one the similarities are computed on (e.g. ``binary``:
      every artist a listener played votes equally, however much they played it).

    Defaults: similarities on BM25 (``K1`` 5, ``B`` 0.5) with ``asymmetry`` 0.6, histories
    scored as ``log1p``: the best worst case over five data sets (docs/defaults.md). log1p with
    the plain cosine lost a third of the best value on recording-level listens, whose items
    have few listeners each; BM25 on the scored history too put the rarest of a short
    history's artists in charge (docs/protocols.md).
    """

    name = "itemknn"
    param_rules = {
        **KNN_RULES,
        "asymmetry": between(0, 1),
        "exponent": positive(),
        "popularity_penalty": at_least(0),
        "history_weighting": one_of(None, *WEIGHTINGS),
    }

    def __init__(
        self,
        neighbours: int = 200,
        shrinkage: float = 100.0,
        weighting: str = "bm25",
        bm25_k1: float = 5.0,
        bm25_b: float = 0.5,
        asymmetry: float = 0.6,
        exponent: float = 1.0,
        popularity_penalty: float = 0.0,
        normalize: bool = False,
        history_weighting: str | None = "log1p",
    ) -> None:
        self.neighbours = neighbours
        self.shrinkage = shrinkage
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.asymmetry = asymmetry
        self.exponent = exponent
        self.popularity_penalty = popularity_penalty
        self.normalize = normalize
        self.history_weighting = history_weighting

    def _fit(self, interactions: Interactions) -> None:
        weighted = self._fit_weighting(interactions.user_items)
        similarity = shrunk_cosine_neighbours(
            weighted,
            int(self.neighbours),
            float(self.shrinkage),
            asymmetry=float(self.asymmetry),
            exponent=float(self.exponent),
            popularity_penalty=float(self.popularity_penalty),
        )
        if self.normalize:
            sums = np.asarray(similarity.sum(axis=1)).ravel()
            sums[sums == 0] = 1.0
            similarity = sp.csr_matrix(sp.diags(1.0 / sums) @ similarity, dtype=np.float32)
            similarity.sort_indices()
        self.similarity_ = similarity

    def _weigh_history(self, history: sp.csr_matrix) -> sp.csr_matrix:
        """A history weighted for scoring: ``history_weighting``, else like training."""
        if self.history_weighting is None or self.history_weighting == self.weighting:
            return self._weigh(history)
        params = {}
        if self.history_weighting == "bm25":
            params = {"K1": float(self.bm25_k1), "B": float(self.bm25_b)}
        return apply_weighting(
            history, self.history_weighting, statistics=self.weighting_statistics_, **params
        )

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        scores = (self._weigh_history(history) @ self.similarity_).toarray()
        return scores.astype(np.float32, copy=False)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Each item's kept neighbours by similarity; items that are not neighbours: -inf."""
        rows = self.similarity_[items]
        dense = np.full((len(items), self.n_items_), -np.inf, np.float32)
        r = np.repeat(np.arange(len(items)), np.diff(rows.indptr))
        dense[r, rows.indices] = rows.data
        return dense

    def explain(self, history: sp.spmatrix, item: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Exact: each history item's weight times its similarity to ``item``."""
        self._check_fitted()
        row = self._weigh_history(self._check_history(history)[:1])
        contribution = row.data * self.similarity_[row.indices, int(item)].toarray().ravel()
        return _largest(row.indices, contribution, n)

    def _state(self) -> dict[str, np.ndarray]:
        return {**SIMILARITY.arrays(self.similarity_), **self._weighting_state()}

    def _state_spec(self) -> dict[str, ArraySpec | CSRSpec]:
        return {"similarity": SIMILARITY, **self._weighting_spec()}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        n = self.n_items_
        self.similarity_ = SIMILARITY.build(arrays, (n, n))
        self._set_weighting_state(arrays)


def _largest(items: np.ndarray, contribution: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n largest non-zero contributions, best first (ties: lower item first)."""
    contribution = np.asarray(contribution, dtype=np.float32)
    keep = contribution != 0
    items, contribution = np.asarray(items, np.int64)[keep], contribution[keep]
    order = np.lexsort((items, -contribution))[:n]
    return items[order], contribution[order]


class UserKNN(WeightedInput, Recommender):
    """User-based collaborative filtering.

    A history finds its ``neighbours`` most similar training users (shrunk cosine of weighted
    rows; a training user never counts as its own neighbour) and scores each item by the
    similarity-weighted sum of the neighbours' weighted play counts. Nothing is precomputed
    beyond the weighting, so fit is instant and scoring does the work. ``similar_items`` uses
    the shrunk cosine of the item columns. Hyperparameters: ``neighbours``, ``shrinkage``,
    ``weighting`` (+ ``bm25_k1``, ``bm25_b``). ``bm25`` by default: its inverse document
    frequency keeps two users from looking alike merely because both play the most popular
    artists (NDCG@10 on HetRec 2K: 0.227 against 0.196 with ``log1p``).
    """

    name = "userknn"
    param_rules = KNN_RULES

    def __init__(
        self,
        neighbours: int = 100,
        shrinkage: float = 10.0,
        weighting: str = "bm25",
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
    ) -> None:
        self.neighbours = neighbours
        self.shrinkage = shrinkage
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b

    def _fit(self, interactions: Interactions) -> None:
        self._prepare(self._fit_weighting(interactions.user_items))

    def _prepare(self, weighted: sp.csr_matrix) -> None:
        self.weighted_ = sp.csr_matrix(weighted, dtype=np.float32)
        self.weighted_t_ = self.weighted_.T.tocsr()
        self.user_norms_ = _row_norms(self.weighted_)
        self.item_norms_ = _column_norms(self.weighted_)

    def _neighbour_weights(self, history: sp.csr_matrix, users: np.ndarray | None) -> sp.csr_matrix:
        """Sparse (rows x training users): each row's top neighbours and their similarity."""
        step = max(1, BLOCK_FLOATS // max(self.weighted_.shape[0], 1))
        if history.shape[0] > step:
            return sp.vstack(
                [
                    self._neighbour_weights(
                        history[s : s + step], None if users is None else users[s : s + step]
                    )
                    for s in range(0, history.shape[0], step)
                ],
                format="csr",
            )
        h = self._weigh(history)
        sims = (h @ self.weighted_t_).toarray()
        sims /= _row_norms(h)[:, None] * self.user_norms_[None, :] + float(self.shrinkage)
        sims[~np.isfinite(sims)] = 0.0
        if users is not None:
            sims[np.arange(len(users)), users] = 0.0
        k = min(int(self.neighbours), sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(sims, top, axis=1)
        rows = np.repeat(np.arange(sims.shape[0]), k)
        keep = values.ravel() > 0
        return sp.csr_matrix(
            (values.ravel()[keep], (rows[keep], top.ravel()[keep])), shape=sims.shape
        )

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        weights = self._neighbour_weights(history, users)
        return (weights @ self.weighted_).toarray().astype(np.float32, copy=False)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        dots = (self.weighted_t_[items] @ self.weighted_).toarray()
        denominator = self.item_norms_[items, None] * self.item_norms_[None, :]
        return (dots / (denominator + float(self.shrinkage) + 1e-12)).astype(np.float32)

    def explain(self, history: sp.spmatrix, item: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The history items shared with the neighbours who listened to ``item``, each
        weighted by how much those neighbours' similarity rests on it."""
        self._check_fitted()
        history = self._check_history(history)[:1]
        weights = self._neighbour_weights(history, None)
        listeners = weights.indices[
            self.weighted_[weights.indices, int(item)].toarray().ravel() > 0
        ]
        row = self._weigh(history)
        if len(listeners) == 0 or row.nnz == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        sims = weights[0, listeners].toarray().ravel()
        shared = self.weighted_[listeners][:, row.indices].toarray()  # listeners x history
        contribution = row.data * (sims @ shared)
        return _largest(row.indices, contribution, n)

    def _state(self) -> dict[str, np.ndarray]:
        return self._weighting_state()

    def _state_spec(self) -> dict[str, ArraySpec]:
        return self._weighting_spec()

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._set_weighting_state(arrays)
        # The training matrix travels with every model; the weighted copy is derived from it.
        self._prepare(self._weigh(self.user_items_))

"""Validation carved from training data, for models that stop early or learn a ranker.

Models may not look at the evaluation split (and may not import ``tastemaker.evaluation``);
NCF's early stopping and the hybrid's ranker use this inner hold-out of the training matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def holdout_split(
    user_items: sp.csr_matrix, fraction: float = 0.2, min_items: int = 5, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each user with >= ``min_items`` items: ``round(fraction * n)`` go to validation.

    Returns ``(train, valid)`` with the shape of ``user_items``; train keeps the play counts,
    valid is binary. Vectorised: one random key per non-zero, ranked within its row.
    """
    m = sp.csr_matrix(user_items)
    rng = np.random.default_rng(seed)
    lengths = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), lengths)
    keys = rng.random(m.nnz)
    order = np.lexsort((keys, rows))  # within each row, a random permutation
    rank = np.empty(m.nnz, np.int64)
    rank[order] = np.arange(m.nnz) - np.repeat(m.indptr[:-1], lengths)
    n_valid = np.where(lengths >= min_items, np.round(fraction * lengths).astype(np.int64), 0)
    is_valid = rank < n_valid[rows]
    coo = m.tocoo()
    train = sp.csr_matrix(
        (coo.data[~is_valid], (coo.row[~is_valid], coo.col[~is_valid])), shape=m.shape
    )
    valid = sp.csr_matrix(
        (np.ones(is_valid.sum(), np.float32), (coo.row[is_valid], coo.col[is_valid])),
        shape=m.shape,
    )
    return train, valid


def ndcg_at_k(ranked: np.ndarray, relevant: sp.csr_matrix, k: int = 10) -> float:
    """Mean NDCG@k (binary relevance) over rows with at least one relevant item.

    ``ranked`` is ``(rows, >=k)`` item indices (``-1`` for padding), row i ranked for
    ``relevant`` row i.
    """
    relevant = sp.csr_matrix(relevant)
    n_relevant = np.diff(relevant.indptr)
    keep = n_relevant > 0
    if not keep.any():
        return 0.0
    top = ranked[:, :k]
    hits = np.zeros(top.shape, dtype=bool)
    for i in np.flatnonzero(keep):
        hits[i] = np.isin(top[i], relevant.indices[relevant.indptr[i] : relevant.indptr[i + 1]])
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return float((dcg[keep] / ideal[keep]).mean())

"""Sparse lookups shared by the hybrid's feature code: values at (row, column) pairs, the
stored entries of chosen rows, and CSR matrices as named arrays for ``model.npz``."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def gather(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values ``matrix[rows[k], cols[k]]`` of a CSR matrix (0 where absent), vectorised."""
    m = matrix if sp.isspmatrix_csr(matrix) else sp.csr_matrix(matrix)
    if not m.has_canonical_format:  # sorted, no duplicates: needed for the binary search
        m = m.copy()
        m.sum_duplicates()
    n_cols = m.shape[1]
    entry_rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    keys = entry_rows * n_cols + m.indices.astype(np.int64)  # sorted: rows, then columns
    wanted = np.asarray(rows, np.int64) * n_cols + np.asarray(cols, np.int64)
    if len(keys) == 0:
        return np.zeros(len(wanted), np.float32)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    found = keys[at] == wanted
    return np.where(found, m.data[at], 0.0).astype(np.float32)


# Blocks of history rows up to this many cells are looked up densely (16 MB of float32).
DENSE_LOOKUP_CELLS = 1 << 22


def lookup(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``gather`` for any shape of ``rows`` / ``cols``; through a dense copy when the matrix is
    small (one user's history), where that is several times faster than a binary search."""
    cols = np.asarray(cols)
    safe = np.maximum(cols, 0)
    if matrix.shape[0] * matrix.shape[1] <= DENSE_LOOKUP_CELLS:
        return matrix.toarray()[rows, safe].astype(np.float32, copy=False)
    flat = gather(matrix, np.ravel(rows), np.ravel(safe))
    return flat.reshape(np.shape(cols))


def row_entries(
    matrix: sp.csr_matrix, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored entries of ``matrix[rows]`` as (position in ``rows``, column, value).

    Plain numpy on ``indptr``: for the few hundred rows of one user's candidates this is several
    times faster than scipy's fancy indexing, which builds a new matrix each time.
    """
    rows = np.asarray(rows, np.int64)
    lo, hi = matrix.indptr[rows], matrix.indptr[rows + 1]
    owner, at = _expand_ranges(lo, hi)
    return owner, matrix.indices[at], matrix.data[at]


def _expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo_k, hi_k): (k for each element, element index)."""
    lengths = np.maximum(np.asarray(hi, np.int64) - lo, 0)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    ends = np.cumsum(lengths)
    start = np.repeat(np.asarray(lo, np.int64) - (ends - lengths), lengths)
    return owner, start + np.arange(ends[-1] if len(ends) else 0)


def csr_state(m: sp.csr_matrix, name: str) -> dict[str, np.ndarray]:
    m = sp.csr_matrix(m)
    return {
        f"{name}_indptr": m.indptr,
        f"{name}_indices": m.indices,
        f"{name}_data": m.data,
        f"{name}_shape": np.asarray(m.shape, np.int64),
    }


def csr_from(arrays: dict[str, np.ndarray], name: str) -> sp.csr_matrix:
    shape = tuple(int(x) for x in arrays[f"{name}_shape"])
    return sp.csr_matrix(
        (arrays[f"{name}_data"], arrays[f"{name}_indices"], arrays[f"{name}_indptr"]),
        shape=shape,
    )

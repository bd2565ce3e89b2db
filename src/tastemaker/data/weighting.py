"""Weighting of play counts before they reach a model: plain functions on user x item CSR.

Raw play counts span 1 to hundreds of thousands; used as ALS confidence unscaled they drown
everything else (the original study's first mistake). Every model takes a ``weighting``
hyperparameter naming one of these, and reports it.

- ``binary``: 1 for every listened pair.
- ``counts``: the raw play count (only for data already on a sane scale).
- ``log1p``: ``log(1 + count / scale)`` with ``scale`` (default 1): compresses the long tail.
- ``bm25``: Okapi BM25 over items-as-terms, users-as-documents (``K1`` = 100, ``B`` = 0.8 as in
  implicit): saturates heavy listening and down-weights items everybody plays.
- ``tfidf``: ``count * log(n_users / item_listeners)`` after a log1p on counts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

WEIGHTINGS: dict[str, Callable[..., sp.csr_matrix]] = {}


def _register(fn: Callable[..., sp.csr_matrix]) -> Callable[..., sp.csr_matrix]:
    WEIGHTINGS[fn.__name__] = fn
    return fn


def _with_data(matrix: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    out = sp.csr_matrix(
        (data.astype(np.float32), matrix.indices, matrix.indptr), shape=matrix.shape
    )
    return out


@_register
def binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    return _with_data(matrix, np.ones_like(matrix.data))


@_register
def counts(matrix: sp.csr_matrix) -> sp.csr_matrix:
    return _with_data(matrix, matrix.data)


@_register
def log1p(matrix: sp.csr_matrix, scale: float = 1.0) -> sp.csr_matrix:
    return _with_data(matrix, np.log1p(matrix.data / scale))


def _item_document_frequency(matrix: sp.csr_matrix) -> np.ndarray:
    return np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float64)


@_register
def bm25(matrix: sp.csr_matrix, K1: float = 100.0, B: float = 0.8) -> sp.csr_matrix:  # noqa: N803
    """BM25 with users as documents and items as terms (row lengths are users' total weight)."""
    m = sp.csr_matrix(matrix, dtype=np.float64)
    n_users = m.shape[0]
    df = _item_document_frequency(m)
    idf = np.log(n_users) - np.log1p(df)
    row_sums = np.asarray(m.sum(axis=1)).ravel()
    average = row_sums.mean() if n_users else 1.0
    length_norm = (1.0 - B) + B * row_sums / max(average, 1e-12)
    rows = np.repeat(np.arange(n_users), np.diff(m.indptr))
    data = m.data * (K1 + 1.0) / (K1 * length_norm[rows] + m.data) * idf[m.indices]
    return _with_data(matrix, data)


@_register
def tfidf(matrix: sp.csr_matrix) -> sp.csr_matrix:
    m = sp.csr_matrix(matrix, dtype=np.float64)
    df = _item_document_frequency(m)
    idf = np.log(m.shape[0] / np.maximum(df, 1.0))
    return _with_data(matrix, np.log1p(m.data) * idf[m.indices])


def apply_weighting(matrix: sp.csr_matrix, name: str, **params: float) -> sp.csr_matrix:
    """Apply the named weighting; ValueError naming the choices when unknown."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {name!r}; choose one of: {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](sp.csr_matrix(matrix), **params)

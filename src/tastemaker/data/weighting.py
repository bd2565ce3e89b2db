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

``bm25`` and ``tfidf`` depend on corpus statistics (item listener counts, number of users, mean
user weight). A model weights its training matrix with them and must weight a new listener's
history the same way: ``weighting_statistics(train)`` captures them, and passing the result as
``statistics=`` to ``apply_weighting`` reuses them instead of recomputing them from the rows
given (one history alone would make every item look rare).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

WEIGHTINGS: dict[str, Callable[..., sp.csr_matrix]] = {}
# The same weightings as the weighted ``matrix.data`` alone (in its order): a fold-in weights
# one posted history per request, and building its CSR matrix costs more than the arithmetic.
_VALUES: dict[str, Callable[..., np.ndarray]] = {}


def _register(values: Callable[..., np.ndarray]) -> Callable[..., sp.csr_matrix]:
    """Register a weighting given as its values function; the name returns the matrix."""

    def weighting(matrix: sp.csr_matrix, *args: object, **kwargs: object) -> sp.csr_matrix:
        matrix = matrix if isinstance(matrix, sp.csr_matrix) else sp.csr_matrix(matrix)
        return _with_data(matrix, values(matrix, *args, **kwargs))

    functools.update_wrapper(weighting, values)  # name, docstring, signature (inspect)
    WEIGHTINGS[values.__name__] = weighting
    _VALUES[values.__name__] = values
    return weighting


def _with_data(matrix: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    out = sp.csr_matrix(
        (data.astype(np.float32), matrix.indices, matrix.indptr), shape=matrix.shape
    )
    return out


@_register
def binary(matrix: sp.csr_matrix) -> np.ndarray:
    return np.ones_like(matrix.data)


@_register
def counts(matrix: sp.csr_matrix) -> np.ndarray:
    return matrix.data


@_register
def log1p(matrix: sp.csr_matrix, scale: float = 1.0) -> np.ndarray:
    return np.log1p(matrix.data / scale)


def _item_document_frequency(matrix: sp.csr_matrix) -> np.ndarray:
    return np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float64)


def weighting_statistics(matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """The corpus statistics ``bm25`` and ``tfidf`` use, as arrays (saved with a model).

    ``item_listeners`` (users per item), ``n_users`` and ``mean_user_weight`` (mean row sum).
    """
    m = sp.csr_matrix(matrix, dtype=np.float64)
    row_sums = np.asarray(m.sum(axis=1)).ravel()
    return {
        "item_listeners": _item_document_frequency(m),
        "n_users": np.asarray(float(m.shape[0])),
        "mean_user_weight": np.asarray(row_sums.mean() if m.shape[0] else 1.0),
    }


@_register
def bm25(
    matrix: sp.csr_matrix,
    K1: float = 100.0,  # noqa: N803
    B: float = 0.8,  # noqa: N803
    statistics: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """BM25 with users as documents and items as terms (row lengths are users' total weight).

    ``statistics`` (from ``weighting_statistics``) replaces those of ``matrix`` itself.
    """
    # On the arrays, not through scipy copies: a fold-in weights one row per request.
    matrix = sp.csr_matrix(matrix) if not isinstance(matrix, sp.csr_matrix) else matrix
    stats = statistics if statistics is not None else weighting_statistics(matrix)
    n_users = matrix.shape[0]
    values = matrix.data.astype(np.float64)
    # idf of the items present only: a posted history has a few dozen of the catalogue's
    # hundreds of thousands (over them all, this was most of a fold-in's cost).
    df = np.asarray(stats["item_listeners"], dtype=np.float64)[matrix.indices]
    idf = np.log(float(stats["n_users"])) - np.log1p(df)
    rows = np.repeat(np.arange(n_users), np.diff(matrix.indptr))
    row_sums = np.bincount(rows, weights=values, minlength=n_users)
    average = float(stats["mean_user_weight"])
    length_norm = (1.0 - B) + B * row_sums / max(average, 1e-12)
    return values * (K1 + 1.0) / (K1 * length_norm[rows] + values) * idf


@_register
def tfidf(matrix: sp.csr_matrix, statistics: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """``statistics`` (from ``weighting_statistics``) replaces those of ``matrix`` itself."""
    m = sp.csr_matrix(matrix, dtype=np.float64)
    stats = statistics if statistics is not None else weighting_statistics(m)
    df = np.asarray(stats["item_listeners"], dtype=np.float64)[m.indices]  # present items only
    idf = np.log(float(stats["n_users"]) / np.maximum(df, 1.0))
    return np.log1p(m.data) * idf


def apply_weighting(
    matrix: sp.csr_matrix,
    name: str,
    statistics: dict[str, np.ndarray] | None = None,
    **params: float,
) -> sp.csr_matrix:
    """Apply the named weighting; ValueError naming the choices when unknown.

    ``statistics`` (from ``weighting_statistics`` of the training matrix) goes to the
    weightings that use corpus statistics and is ignored by the others.
    """
    matrix = matrix if isinstance(matrix, sp.csr_matrix) else sp.csr_matrix(matrix)
    # The weightings build new matrices and never write to their input: no copy of it (the
    # values are a new array already).
    data = weighted_values(matrix, name, statistics, **params)
    return sp.csr_matrix((data, matrix.indices, matrix.indptr), shape=matrix.shape)


def weighted_values(
    matrix: sp.csr_matrix,
    name: str,
    statistics: dict[str, np.ndarray] | None = None,
    **params: float,
) -> np.ndarray:
    """``apply_weighting(...).data`` (float32, in the order of ``matrix.data``) without
    building the matrix: a fold-in's few dozen values cost less than scipy's constructor."""
    if name not in _VALUES:
        raise ValueError(f"unknown weighting {name!r}; choose one of: {', '.join(WEIGHTINGS)}")
    fn = _VALUES[name]
    arguments: dict[str, object] = dict(params)
    if statistics is not None and _takes_statistics(fn):
        arguments["statistics"] = statistics
    return np.asarray(fn(matrix, **arguments)).astype(np.float32)


@functools.cache
def _takes_statistics(fn: Callable[..., np.ndarray]) -> bool:
    # Inspecting a signature costs tens of microseconds; a fold-in weights every request.
    return "statistics" in inspect.signature(fn).parameters

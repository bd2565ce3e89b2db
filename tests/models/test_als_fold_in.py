"""ALS fold-in: our cached-Gram Cholesky solve against implicit's ``recalculate_user``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import tastemaker.models.als as als_module
from tastemaker.data.interactions import Interactions
from tastemaker.data.weighting import (
    WEIGHTINGS,
    apply_weighting,
    weighted_values,
    weighting_statistics,
)
from tastemaker.models import create_model

ITEMS = 800


def _interactions(users=300, per_user=30, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, ITEMS + 1) ** 0.7
    rows, cols = [], []
    for user in range(users):
        chosen = rng.choice(ITEMS, per_user, replace=False, p=popularity / popularity.sum())
        rows += [f"u{user}"] * per_user
        cols += [f"i{c}" for c in chosen]
    counts = rng.zipf(2.0, len(rows)).clip(1, 300)
    return Interactions.from_arrays(rows, cols, counts)


@pytest.fixture(scope="module", params=["bm25", "log1p", "tfidf"])
def model(request):
    return create_model(
        "als", factors=16, iterations=4, weighting=request.param, regularization=0.05
    ).fit(_interactions())


def _histories(model, rows: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    n_items = model.item_factors_.shape[0]
    matrix = sp.lil_matrix((rows, n_items), dtype=np.float32)
    for row in range(rows):
        size = int(rng.integers(1, 60)) if row else 0  # the first row empty
        matrix[row, rng.choice(n_items, size, replace=False)] = rng.integers(1, 40, size)
    return matrix.tocsr()


def _implicit_fold_in(model, history: sp.csr_matrix) -> np.ndarray:
    solver = model._fitted_solver()
    vectors = solver.recalculate_user(np.arange(history.shape[0]), model._weigh(history))
    return np.asarray(vectors, np.float32).reshape(history.shape[0], -1)


def test_our_fold_in_solves_implicits_system(model):
    history = _histories(model, als_module.OWN_FOLD_IN_ROWS, seed=1)
    ours = model.history_vectors(history)
    reference = _implicit_fold_in(model, history)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert not ours[0].any()  # an empty history folds in to zeros, as in implicit
    scale = np.abs(reference).max()
    assert scale > 0
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-5 * scale)
    # The same top 20 items, in the same order, for every history.
    ranked = np.argsort(-(ours @ model.item_factors_.T), axis=1, kind="stable")[:, :20]
    expected = np.argsort(-(reference @ model.item_factors_.T), axis=1, kind="stable")[:, :20]
    assert (ranked == expected).mean() >= 0.99


def test_a_large_batch_goes_to_implicit_and_agrees_with_one_row_at_a_time(model):
    history = _histories(model, als_module.OWN_FOLD_IN_ROWS + 4, seed=2)
    batch = model.history_vectors(history)
    np.testing.assert_array_equal(batch, _implicit_fold_in(model, history))
    one_by_one = np.vstack([model.history_vectors(history[row]) for row in range(history.shape[0])])
    np.testing.assert_allclose(one_by_one, batch, rtol=0, atol=2e-5 * np.abs(batch).max())


def test_the_gram_matrix_follows_new_factors(model):
    history = _histories(model, 3, seed=3)
    before = model.history_vectors(history)
    saved = model.item_factors_
    try:
        model.item_factors_ = (saved * 2).astype(np.float32)
        np.testing.assert_allclose(
            model.history_vectors(history),
            _implicit_fold_in(model, history),
            rtol=0,
            atol=2e-5 * np.abs(before).max(),
        )
    finally:
        model.item_factors_ = saved
        model._solver = None


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_weighted_values_are_the_weighted_matrix_data(name):
    counts = _interactions(users=50).user_items
    statistics = weighting_statistics(counts)
    params = {"K1": 5.0, "B": 0.5} if name == "bm25" else {}
    values = weighted_values(counts[:7], name, statistics, **params)
    matrix = apply_weighting(counts[:7], name, statistics, **params)
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, matrix.data)
    np.testing.assert_array_equal(matrix.indices, counts[:7].indices)
    with pytest.raises(ValueError, match="unknown weighting"):
        weighted_values(counts, "nope")

"""RP3beta: the walk weights against the formula computed densely, the block-wise product
against one block, exact fold-in, explanations and parameter checks. Small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.errors import UsageError
from tastemaker.models import create_model, knn
from tastemaker.models.rp3beta import rp3beta_weights
from tastemaker.testing import clusters


def random_counts(seed: int = 0, users: int = 50, items: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8  # items differ in listeners
    heard = rng.random((users, items)) < np.clip(popularity, 0.05, 0.9)
    counts = np.where(heard, rng.integers(1, 50, size=(users, items)), 0)
    counts[np.arange(users), rng.integers(0, items, users)] += 1  # nobody is empty
    return counts.astype(np.float64)


def dense_walk(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """The documented formula, densely: P(u|i)^a P(j|u)^a / listeners(j)^beta, no diagonal."""
    user_to_item = (x / x.sum(axis=1, keepdims=True)) ** alpha
    col = x.sum(axis=0, keepdims=True)
    item_to_user = (x / np.where(col == 0, 1, col)).T ** alpha
    listeners = np.maximum((x > 0).sum(axis=0), 1)
    walk = (item_to_user @ user_to_item) / listeners[None, :] ** beta
    np.fill_diagonal(walk, 0.0)
    return walk


@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 0.0), (0.6, 0.5), (1.4, 0.1)])
def test_walk_weights_follow_the_formula(alpha, beta):
    x = random_counts()
    got = rp3beta_weights(sp.csr_matrix(x), alpha, beta, k=x.shape[1], normalize=False)
    np.testing.assert_allclose(got.toarray(), dense_walk(x, alpha, beta), rtol=1e-5, atol=1e-8)


def test_top_k_and_row_normalisation():
    x = random_counts(seed=1)
    full = dense_walk(x, 1.0, 0.3)
    got = rp3beta_weights(sp.csr_matrix(x), 1.0, 0.3, k=5, normalize=True)
    assert (np.diff(got.indptr) == 5).all()
    np.testing.assert_allclose(np.asarray(got.sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    for i in range(x.shape[1]):
        expected = np.sort(np.argsort(-full[i], kind="stable")[:5])
        np.testing.assert_array_equal(got[i].indices, expected)
        np.testing.assert_allclose(
            got[i].data, full[i, expected] / full[i, expected].sum(), rtol=1e-5
        )


def test_blocks_give_the_same_weights_as_one_block(monkeypatch):
    x = sp.csr_matrix(random_counts(seed=2, users=80, items=60))
    whole = rp3beta_weights(x, 0.8, 0.4, k=10, normalize=True)
    blocks = knn.item_product_blocks(x.T.tocsr(), x, budget=200)
    assert len(blocks) > 5, "the budget should force several blocks"
    monkeypatch.setattr(
        "tastemaker.models.rp3beta.item_product_blocks",
        lambda a, b: knn.item_product_blocks(a, b, budget=200),
    )
    split = rp3beta_weights(x, 0.8, 0.4, k=10, normalize=True)
    assert (abs(whole - split) > 1e-7).nnz == 0


def test_scores_are_the_walk_from_the_history_and_fold_in_is_exact():
    data = clusters()
    model = create_model("rp3beta", weighting="binary", alpha=0.7, neighbours=30).fit(data)
    users = np.arange(10)
    history = data.user_items[users].toarray() > 0
    first_step = (history / history.sum(axis=1, keepdims=True)) ** 0.7
    expected = first_step @ model.similarity_.toarray()
    np.testing.assert_allclose(model.score(users), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(model.score(users), model.score_history(data.user_items[users]))


def test_explanations_sum_to_the_score():
    data = clusters()
    model = create_model("rp3beta", neighbours=30).fit(data)
    history = data.user_items[3]
    item = int(model.recommend(np.asarray([3]), n=1)[0][0, 0])
    heard, contribution = model.explain(history, item, n=history.nnz)
    assert set(heard) <= set(history.indices)
    assert (np.diff(contribution) <= 0).all()
    assert contribution.sum() == pytest.approx(model.score(np.asarray([3]))[0, item], rel=1e-5)


@pytest.mark.parametrize(
    ("params", "message"),
    [({"alpha": 0.0}, "alpha"), ({"beta": -0.1}, "beta"), ({"neighbours": 0}, "neighbours")],
)
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(UsageError, match=message):
        create_model("rp3beta", **params).fit(clusters())

"""EASE's sparse approximate form: exact when every item is a neighbour, chosen automatically
above a catalogue size, and under the same contract as the dense form (scores, fold-in,
similar items, explanations, save / load). Small synthetic data, seconds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.errors import ArtifactError, UsageError
from tastemaker.models import create_model, ease, load_model
from tastemaker.models.ease_sparse import solve_groups, sparse_ease_weights
from tastemaker.testing import (
    assert_batch_equals_one_by_one,
    assert_same_model,
    clusters,
    fold_in_overlap,
    with_listen_events,
)


def dense_listening(seed: int = 0, users: int = 60, items: int = 18) -> sp.csr_matrix:
    """Every pair of items shares a listener, so every item is every other's neighbour."""
    rng = np.random.default_rng(seed)
    counts = np.where(rng.random((users, items)) < 0.5, rng.integers(1, 40, (users, items)), 0)
    binary = (counts > 0).astype(np.float64)
    assert ((binary.T @ binary) > 0).all()
    return sp.csr_matrix(counts.astype(np.float32))


def test_with_every_item_as_neighbour_it_is_exact_ease():
    data = with_listen_events(dense_listening())
    exact = create_model("ease", regularization=20.0, min_listeners=1, solver="exact").fit(data)
    approx = create_model(
        "ease", regularization=20.0, min_listeners=1, solver="sparse", neighbours=data.n_items
    ).fit(data)
    assert approx.is_sparse and not exact.is_sparse
    np.testing.assert_allclose(approx.weights_.toarray(), exact.weights_, rtol=1e-3, atol=1e-5)


def test_each_column_is_the_ridge_regression_on_its_neighbours():
    x = dense_listening(seed=1)
    x.data[:] = 1.0
    weights = sparse_ease_weights(x, regularization=20.0, neighbours=5)
    assert (weights.getnnz(axis=0) <= 5).all() and weights.diagonal().sum() == 0
    gram = (x.T @ x).toarray()
    for j in range(x.shape[1]):
        rows = weights[:, j].nonzero()[0]
        ridge = np.linalg.solve(gram[np.ix_(rows, rows)] + 20.0 * np.eye(len(rows)), gram[rows, j])
        np.testing.assert_allclose(weights[rows, j].toarray().ravel(), ridge, rtol=1e-4)


def test_groups_cover_every_item_once():
    candidates = sp.random(300, 300, density=0.05, format="csr", random_state=0)
    seen = np.concatenate(list(solve_groups(candidates, size=16)))
    assert sorted(seen) == list(range(300))
    assert max(len(g) for g in solve_groups(candidates, size=16)) <= 16


@pytest.fixture(scope="module")
def data():
    return clusters()


@pytest.fixture(scope="module")
def sparse_model(data):
    return create_model(
        "ease", regularization=5.0, min_listeners=1, solver="sparse", neighbours=15
    ).fit(data)


def test_auto_switches_to_the_sparse_form_above_the_threshold(data, monkeypatch):
    assert not create_model("ease", min_listeners=1).fit(data).is_sparse
    monkeypatch.setattr(ease, "SPARSE_ABOVE", data.n_items - 1)
    model = create_model("ease", min_listeners=1).fit(data)
    assert model.is_sparse
    assert (model.weights_.getnnz(axis=0) <= model.neighbours).all()


def test_sparse_form_keeps_the_model_contract(sparse_model, data, tmp_path):
    assert_batch_equals_one_by_one(sparse_model, np.arange(0, 80, 7))
    assert fold_in_overlap(sparse_model, data) >= 0.75
    ids, scores = sparse_model.similar_items(np.arange(data.n_items), n=5)
    assert not (ids == np.arange(data.n_items)[:, None]).any()
    loaded = load_model(sparse_model.save(tmp_path / "sparse"))
    assert loaded.is_sparse
    assert_same_model(loaded, sparse_model, data)


def test_sparse_form_recommends_within_the_listeners_taste_group(sparse_model, data):
    """clusters(): user u draws 10 of its 12 items from taste group u % 4 (25 items each)."""
    x = data.user_items.toarray() > 0
    # The items each user group plays most are that group's items.
    group_of_item = np.argmax(np.stack([x[g::4].sum(axis=0) for g in range(4)]), axis=0)
    ids, _ = sparse_model.recommend(np.arange(data.n_users), n=5)
    same = group_of_item[ids] == (np.arange(data.n_users) % 4)[:, None]
    assert same.mean() >= 0.8


def test_sparse_explanations_sum_to_the_score(sparse_model, data):
    history = data.user_items[3]
    scores = sparse_model.score_history(history)[0]
    scores[history.indices] = -np.inf
    item = int(np.argmax(scores))
    items, contributions = sparse_model.explain(history, item, n=100)
    assert set(items) <= set(history.indices)
    assert contributions.sum() == pytest.approx(scores[item], rel=1e-4)


def test_a_model_file_with_both_or_neither_form_is_refused(sparse_model, tmp_path):
    directory = sparse_model.save(tmp_path / "m")
    arrays = dict(np.load(directory / "model.npz"))
    with pytest.raises(ArtifactError, match="either dense or sparse"):
        sparse_model._set_state({k: v for k, v in arrays.items() if "sparse" not in k})
    kept = len(arrays["kept_items"])
    with pytest.raises(ArtifactError, match="either dense or sparse"):
        sparse_model._set_state({**arrays, "weights": np.zeros((kept, kept), np.float32)})


@pytest.mark.parametrize(
    ("params", "message"), [({"solver": "qr"}, "solver"), ({"neighbours": 0}, "neighbours")]
)
def test_bad_sparse_parameters_are_refused(params, message, data):
    with pytest.raises(UsageError, match=message):
        create_model("ease", **params).fit(data)

"""Behaviour of the classic models beyond the shared contract (small synthetic data, fast)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.data.weighting import apply_weighting, weighting_statistics
from tastemaker.errors import UsageError
from tastemaker.models import create_model
from tastemaker.testing import assert_factor_vectors_reproduce_scores, clusters, with_listen_events


@pytest.mark.parametrize("name", ["bm25", "tfidf", "log1p", "binary"])
def test_a_history_weighted_alone_matches_its_training_row(name):
    counts = sp.random(60, 40, density=0.2, format="csr", random_state=0, dtype=np.float32)
    counts.data = np.ceil(counts.data * 500)
    stats = weighting_statistics(counts)
    together = apply_weighting(counts, name)
    alone = apply_weighting(counts[7:10], name, statistics=stats)
    np.testing.assert_allclose(alone.toarray(), together[7:10].toarray(), rtol=1e-6)
    if name == "bm25":  # without the statistics one row would see every item as rare
        naive = apply_weighting(counts[7:10], name)
        assert not np.allclose(naive.toarray(), together[7:10].toarray())


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_a_fit_callback_sees_every_iteration_and_can_stop_training(name):
    data = clusters()
    seen = []

    def stop_at_three(iteration, model):
        seen.append(iteration)
        assert np.isfinite(model.score(np.arange(3))).all()  # scorable between iterations
        return iteration == 3

    model = create_model(name, factors=4, iterations=20, seed=0).fit(data, callback=stop_at_three)
    assert seen == [1, 2, 3]
    ids, _ = model.recommend(np.arange(data.n_users), n=5)
    assert (ids >= 0).all()


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_factor_models_are_reproducible_from_the_seed(name):
    data = clusters()
    a = create_model(name, factors=8, iterations=10, seed=3).fit(data)
    b = create_model(name, factors=8, iterations=10, seed=3).fit(data)
    c = create_model(name, factors=8, iterations=10, seed=4).fit(data)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert not np.allclose(a.item_factors_, c.item_factors_)


def test_factor_vectors_reproduce_the_scores():
    data = clusters()
    for name in ("als", "bpr"):
        model = create_model(name, factors=8, iterations=10).fit(data)
        assert_factor_vectors_reproduce_scores(
            model, data, np.arange(10), history_rows=10, rtol=1e-5, history_atol=1e-6
        )


@pytest.mark.parametrize("name", ["als", "itemknn", "ease"])
def test_explanations_decompose_the_score_exactly(name):
    data = clusters()
    model = create_model(name).fit(data)
    history = data.user_items[3]
    scores = model.score_history(history)[0]
    scores[history.indices] = -np.inf
    item = int(np.argmax(scores))
    items, contributions = model.explain(history, item, n=100)
    assert set(items) <= set(history.indices)
    assert contributions.sum() == pytest.approx(scores[item], rel=1e-4)


def test_ease_scores_pruned_items_minus_infinity_and_pads_short_lists():
    dense = np.zeros((6, 5), np.float32)
    dense[:, :3] = 1.0  # items 0-2: six listeners each
    dense[0, 3] = dense[1, 4] = 1.0  # items 3 and 4: one listener each
    data = with_listen_events(sp.csr_matrix(dense))
    model = create_model("ease", regularization=1.0, min_listeners=2).fit(data)
    assert list(model.kept_items_) == [0, 1, 2]
    assert np.isneginf(model.score(np.arange(6))[:, 3:]).all()
    ids, scores = model.recommend_for_history(sp.csr_matrix(dense[2:3]), n=4)
    assert (ids == -1).all() and np.isneginf(scores).all()  # all kept items heard already
    assert (model.similar_items(np.asarray([3]), n=2)[0] == -1).all()


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("als", {"factors": 0}),
        ("als", {"weighting": "sqrt"}),
        ("bpr", {"learning_rate": 0.0}),
        ("itemknn", {"neighbours": 0}),
        ("userknn", {"shrinkage": -1.0}),
        ("ease", {"regularization": 0.0}),
        ("ease", {"min_listeners": 1000}),
    ],
)
def test_bad_hyperparameters_fail_with_a_usage_error(name, params):
    with pytest.raises(UsageError):
        create_model(name, **params).fit(clusters())

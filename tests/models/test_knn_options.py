"""Item-KNN's similarity options: asymmetric cosine, exponent, popularity penalty, row
normalisation and a separate history weighting. Small hand-made matrices, one behaviour each."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions
from tastemaker.errors import UsageError
from tastemaker.models import create_model, load_model
from tastemaker.models.knn import shrunk_cosine_neighbours


def _from_dense(counts: np.ndarray) -> Interactions:
    """Interactions whose matrix is exactly ``counts`` (ids zero-padded to keep the order)."""
    rows, cols = np.nonzero(counts)
    data = Interactions.from_arrays(
        user_ids=[f"u{r:04d}" for r in rows],
        item_ids=[f"i{c:04d}" for c in cols],
        counts=counts[rows, cols].astype(np.float32),
    )
    assert np.array_equal(data.user_items.toarray(), counts)
    return data


def random_counts(seed: int = 0, users: int = 40, items: int = 25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Zipf-like popularity, so items differ in listeners and norms.
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    heard = rng.random((users, items)) < np.clip(popularity * 0.9, 0.05, 0.9)
    counts = np.where(heard, rng.integers(1, 30, size=(users, items)), 0)
    counts[np.arange(users), rng.integers(0, items, users)] += 1  # nobody is empty
    counts[rng.integers(0, users, items), np.arange(items)] += 1  # every item heard
    return counts.astype(np.float32)


def dense_reference(x: np.ndarray, shrinkage: float, a: float, q: float, beta: float) -> np.ndarray:
    """The documented formula, computed densely, before the top-k cut."""
    dots = x.T @ x
    norms = np.sqrt((x * x).sum(axis=0))
    sims = dots / (norms[:, None] ** (2 * a) * norms[None, :] ** (2 * (1 - a)) + shrinkage)
    sims = np.maximum(sims, 0) ** q
    listeners = np.maximum((x > 0).sum(axis=0), 1)
    sims = sims / listeners[None, :] ** beta
    np.fill_diagonal(sims, 0)
    return sims


@pytest.mark.parametrize(
    ("a", "q", "beta"), [(0.5, 1.0, 0.0), (0.8, 1.0, 0.0), (0.5, 2.0, 0.0), (0.3, 0.5, 0.4)]
)
def test_similarity_follows_the_documented_formula(a, q, beta):
    x = np.log1p(random_counts())
    got = shrunk_cosine_neighbours(
        sp.csr_matrix(x),
        k=x.shape[1],
        shrinkage=2.0,
        asymmetry=a,
        exponent=q,
        popularity_penalty=beta,
    ).toarray()
    np.testing.assert_allclose(got, dense_reference(x, 2.0, a, q, beta), rtol=2e-4, atol=1e-7)


def test_neutral_options_are_the_plain_shrunk_cosine_bit_for_bit():
    data = _from_dense(random_counts())
    plain = create_model(
        "itemknn", neighbours=5, weighting="log1p", asymmetry=0.5, history_weighting=None
    )
    plain = plain.fit(data).similarity_
    x = np.log1p(data.user_items.toarray())
    explicit = create_model(
        "itemknn",
        neighbours=5,
        weighting="log1p",
        asymmetry=0.5,
        exponent=1.0,
        popularity_penalty=0.0,
        normalize=False,
        history_weighting="log1p",
    ).fit(data)
    assert (plain != explicit.similarity_).nnz == 0
    expected = dense_reference(x, 100.0, 0.5, 1.0, 0.0)
    row = expected[0]
    assert set(plain[0].indices) == set(np.argsort(-row, kind="stable")[:5])


def test_asymmetry_above_one_half_favours_popular_targets():
    counts = random_counts(seed=1)
    data = _from_dense(counts)
    listeners = (counts > 0).sum(axis=0)
    popular, rare = int(np.argmax(listeners)), int(np.argmin(listeners))
    source = next(
        j
        for j in range(counts.shape[1])
        if j not in (popular, rare)
        and (counts[:, j] * counts[:, popular]).any()
        and (counts[:, j] * counts[:, rare]).any()
    )

    def ratio(a: float) -> float:
        s = create_model(
            "itemknn", neighbours=100, shrinkage=0.0, weighting="log1p", asymmetry=a
        ).fit(data)
        return s.similarity_[source, popular] / s.similarity_[source, rare]

    assert ratio(0.9) > ratio(0.5) > ratio(0.1)


def test_exponent_sharpens_scores_towards_the_strongest_neighbour():
    # Item 2 has one very close neighbour (0); item 3 is moderately close to both 0 and 1.
    counts = np.zeros((6, 4), np.float32)
    counts[:3, 0] = counts[:3, 2] = 1  # users 0-2: items 0 and 2 always together
    counts[3, 2] = 1
    counts[[0, 4], 3] = counts[[1, 5], 3] = 1
    counts[[4, 5], 1] = 1
    data = _from_dense(counts)
    history = sp.csr_matrix(np.array([[1, 1, 0, 0]], np.float32))

    def winner(q: float) -> int:
        model = create_model(
            "itemknn", neighbours=10, shrinkage=0.0, weighting="binary", exponent=q
        ).fit(data)
        scores = model.score_history(history)[0]
        return int(np.argmax(scores[2:]) + 2)

    assert winner(0.5) == 3  # flat: two moderate votes beat one strong
    assert winner(3.0) == 2  # sharp: the one strong neighbour wins


def test_popularity_penalty_divides_by_listeners_and_picks_neighbours_after():
    counts = random_counts(seed=2)
    data = _from_dense(counts)
    listeners = np.maximum((counts > 0).sum(axis=0), 1)
    full = create_model("itemknn", neighbours=100, shrinkage=5.0).fit(data).similarity_
    penalised = (
        create_model("itemknn", neighbours=100, shrinkage=5.0, popularity_penalty=0.7)
        .fit(data)
        .similarity_
    )
    np.testing.assert_allclose(
        penalised.toarray(), full.toarray() / listeners[None, :] ** 0.7, rtol=1e-5
    )
    top1 = (
        create_model("itemknn", neighbours=1, shrinkage=5.0, popularity_penalty=0.7)
        .fit(data)
        .similarity_
    )
    best = np.argmax(penalised.toarray(), axis=1)
    assert np.array_equal(top1.indices, best[np.diff(top1.indptr) > 0])
    plain_top1 = create_model("itemknn", neighbours=1, shrinkage=5.0).fit(data).similarity_
    assert not np.array_equal(top1.indices, plain_top1.indices)  # the penalty changed some


def test_normalize_makes_every_history_item_cast_one_vote():
    data = _from_dense(random_counts(seed=3))
    model = create_model("itemknn", neighbours=4, shrinkage=1.0, normalize=True).fit(data)
    sums = np.asarray(model.similarity_.sum(axis=1)).ravel()
    has = np.diff(model.similarity_.indptr) > 0
    np.testing.assert_allclose(sums[has], 1.0, rtol=1e-5)
    plain = create_model("itemknn", neighbours=4, shrinkage=1.0).fit(data)
    assert not np.allclose(np.asarray(plain.similarity_.sum(axis=1)).ravel()[has], 1.0)
    # Same neighbours, rescaled rows.
    assert np.array_equal(plain.similarity_.indices, model.similarity_.indices)


def test_history_weighting_changes_only_how_the_history_is_weighted():
    data = _from_dense(random_counts(seed=4))
    history = sp.csr_matrix(np.array([[50, 1, 0, 3] + [0] * 21], np.float32))
    log_model = create_model("itemknn", neighbours=10).fit(data)
    binary = create_model("itemknn", neighbours=10, history_weighting="binary").fit(data)
    assert (log_model.similarity_ != binary.similarity_).nnz == 0
    expected = (sp.csr_matrix((history > 0).astype(np.float32)) @ binary.similarity_).toarray()
    np.testing.assert_allclose(binary.score_history(history), expected, rtol=1e-6)
    assert not np.allclose(log_model.score_history(history), expected)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"asymmetry": 1.5}, "asymmetry"),
        ({"asymmetry": -0.1}, "asymmetry"),
        ({"exponent": 0.0}, "exponent"),
        ({"popularity_penalty": -1.0}, "popularity_penalty"),
        ({"history_weighting": "squares"}, "history_weighting"),
    ],
)
def test_bad_options_stop_with_a_usage_error(params, message):
    with pytest.raises(UsageError, match=message):
        create_model("itemknn", **params).fit(_from_dense(random_counts()))


def test_options_survive_save_and_load(tmp_path):
    data = _from_dense(random_counts(seed=5))
    params = dict(
        neighbours=6,
        shrinkage=3.0,
        asymmetry=0.3,
        exponent=1.5,
        popularity_penalty=0.2,
        normalize=True,
        history_weighting="binary",
    )
    model = create_model("itemknn", **params).fit(data)
    loaded = load_model(model.save(tmp_path / "m"))
    assert {k: getattr(loaded, k) for k in params} == params
    history = data.user_items[:5]
    np.testing.assert_allclose(loaded.score_history(history), model.score_history(history))

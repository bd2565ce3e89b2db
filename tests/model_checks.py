"""Data and checks of the model contract, shared by tests/test_models_contract.py (the classic
models) and tests/test_ncf.py (the neural ones, kept apart for CI time)."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions, ListenEvents
from tastemaker.data.metadata import ItemMetadata, empty_facts


def with_listen_events(matrix: sp.spmatrix) -> Interactions:
    """The matrix with ids, plus one listen per pair (each user's listens one minute apart,
    in one session) so that models that need timestamps (sessions) see the same data."""
    coo = sp.coo_matrix(matrix)
    plain = Interactions.from_arrays(
        [f"u{r:03d}" for r in coo.row], [f"i{c:03d}" for c in coo.col], coo.data
    )
    m = plain.user_items
    users = np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
    order_in_row = np.arange(m.nnz) - np.repeat(m.indptr[:-1], np.diff(m.indptr))
    timestamps = 1_600_000_000 + users.astype(np.int64) * 86_400 + order_in_row * 60
    return dataclasses.replace(
        plain,
        events=ListenEvents(users, m.indices.astype(np.int32), timestamps),
        last_listened=timestamps,
    )


def with_item_tags(data: Interactions, tags: list[list[str]]) -> Interactions:
    """``data`` with anonymous item metadata: ``tags[i]`` are item i's tags (weight 1 each),
    so that content models (``tags``) run under the same contract."""
    names = sorted({t for item in tags for t in item})
    column = {name: k for k, name in enumerate(names)}
    rows = [i for i, item in enumerate(tags) for _ in item]
    cols = [column[t] for item in tags for t in item]
    matrix = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(data.n_items, len(names))
    )
    metadata = ItemMetadata(matrix, names, np.zeros(len(names), bool), empty_facts(data.n_items))
    return dataclasses.replace(data, metadata=metadata)


def clusters(seed: int = 3, n_users: int = 80, n_items: int = 100) -> Interactions:
    """Users in 4 taste groups of 25 items each: 10 items from their group, 2 at random.
    Items carry their group's tag and one of five others (for content models)."""
    rng = np.random.default_rng(seed)
    groups = rng.permutation(n_items).reshape(4, -1)
    dense = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        own = rng.choice(groups[u % 4], 10, replace=False)
        other = rng.choice(n_items, 2, replace=False)
        heard = np.union1d(own, other)
        dense[u, heard] = np.ceil(rng.lognormal(2.0, 1.5, len(heard)))
    group_of = np.empty(n_items, np.int64)
    for g, members in enumerate(groups):
        group_of[members] = g
    data = with_listen_events(sp.csr_matrix(dense))
    # Item ids i000.. sort like their indices, so item index i is column i of ``dense``.
    return with_item_tags(data, [[f"group{group_of[i]}", f"mood{i % 5}"] for i in range(n_items)])


def assert_batch_equals_one_by_one(model, users: np.ndarray) -> None:
    """Batched recommendations (trained users and folded-in histories) equal one-by-one."""
    ids, scores = model.recommend(users, n=5)
    history = model.user_items_[users]
    folded_ids, folded_scores = model.recommend_for_history(history, n=5)
    for row, user in enumerate(users):
        one_ids, one_scores = model.recommend(np.asarray([user]), n=5)
        np.testing.assert_array_equal(one_ids[0], ids[row])
        np.testing.assert_allclose(one_scores[0], scores[row], rtol=1e-5, atol=1e-6)
        h_ids, h_scores = model.recommend_for_history(history[row], n=5)
        np.testing.assert_array_equal(h_ids[0], folded_ids[row])
        np.testing.assert_allclose(h_scores[0], folded_scores[row], rtol=1e-5, atol=1e-6)


def fold_in_overlap(model, data: Interactions) -> float:
    """Mean top-10 overlap between each trained user's list and their history folded in."""
    users = np.arange(data.n_users)
    trained, _ = model.recommend(users, n=10)
    folded, _ = model.recommend_for_history(data.user_items[users], n=10)
    return float(
        np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(trained, folded, strict=True)])
    )


def assert_similar_items_exclude_the_item(model, data: Interactions) -> np.ndarray:
    """Ten similar items per item, never the item itself, in descending order; the ids."""
    items = np.arange(data.n_items)
    ids, scores = model.similar_items(items, n=10)
    assert ids.shape == (data.n_items, 10)
    assert not (ids == items[:, None]).any()
    assert (np.diff(scores, axis=1)[np.isfinite(scores[:, 1:])] <= 0).all()
    return ids


def assert_same_model(loaded, model, data: Interactions) -> None:
    """A loaded model scores users, histories and similar items exactly like the original."""
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    history = data.user_items[:10]
    np.testing.assert_array_equal(loaded.score_history(history), model.score_history(history))
    np.testing.assert_array_equal(
        loaded.similar_items(np.arange(5), 5)[0], model.similar_items(np.arange(5), 5)[0]
    )


def assert_refit_is_fresh(refitted, fresh, data: Interactions, history_rtol: float = 1e-5) -> None:
    """A model fitted twice scores like one fitted once on the second data.

    ``history_rtol``: models whose fold-in is itself an optimisation (the NCF models' Adam
    steps) amplify last-bit differences of the weights (another BLAS / OpenMP team width
    between the two fits) into ~1e-3; state carried over from the first fit would be far
    larger."""
    assert refitted.n_items_ == fresh.n_items_ == data.n_items
    users = np.arange(data.n_users)
    np.testing.assert_allclose(refitted.score(users), fresh.score(users), rtol=1e-5, atol=1e-6)
    history = data.user_items[:5]
    np.testing.assert_allclose(
        refitted.score_history(history), fresh.score_history(history), rtol=history_rtol, atol=1e-6
    )


def assert_factor_vectors_reproduce_scores(
    model,
    data: Interactions,
    users: np.ndarray,
    history_rows: int,
    rtol: float = 1e-7,
    atol: float = 0.0,
    history_atol: float | None = None,
) -> None:
    """User (and history) vectors dotted with item vectors give the model's scores."""
    np.testing.assert_allclose(
        model.user_vectors(users) @ model.item_vectors().T, model.score(users), rtol, atol
    )
    history = data.user_items[:history_rows]
    np.testing.assert_allclose(
        model.history_vectors(history) @ model.item_vectors().T,
        model.score_history(history),
        rtol,
        atol if history_atol is None else history_atol,
    )

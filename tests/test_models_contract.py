"""The contract every registered recommender keeps (after implicit's shared model tests).

Parametrised over every name in ``models.MODELS`` but the neural ones (their own files run
the same checks), so a new model is tested the moment it is registered, and one that fails to
import fails here; the classic six must be among them. Each model runs with small, fast
hyperparameters from ``TEST_PARAMS`` (add yours).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from model_checks import (
    assert_batch_equals_one_by_one,
    assert_refit_is_fresh,
    assert_same_model,
    assert_similar_items_exclude_the_item,
    clusters,
    fold_in_overlap,
    with_item_tags,
    with_listen_events,
)
from tastemaker.artifacts import read_manifest
from tastemaker.data.interactions import Interactions
from tastemaker.errors import ArtifactError
from tastemaker.models import available_models, create_model, load_model, model_class
from tastemaker.models.base import Recommender

CLASSIC = {"popularity", "als", "bpr", "itemknn", "userknn", "ease"}

# Small, fast hyperparameters per model; a model not listed runs with its defaults.
TEST_PARAMS: dict[str, dict] = {
    "popularity": {},
    "als": {"factors": 4, "iterations": 10, "regularization": 1.0, "seed": 0},
    "bpr": {"factors": 8, "iterations": 60, "learning_rate": 0.05, "seed": 0},
    "itemknn": {"neighbours": 20, "shrinkage": 1.0},
    "userknn": {"neighbours": 10, "shrinkage": 1.0},
    "ease": {"regularization": 5.0, "min_listeners": 1},
    "rp3beta": {"neighbours": 20},
    "hybrid": {"candidates": 50, "iterations": 30, "seed": 0},
}
# The hybrid's generators run with the same small settings as on their own.
TEST_PARAMS["hybrid"]["generator_params"] = {
    name: TEST_PARAMS[name] for name in ("als", "itemknn", "ease")
}
# Models that ignore the listener (no personalisation to check on the checkerboard).
UNPERSONALISED = {"popularity", "random", "tag-count"}
# Fold-in of a training user's own history: minimum mean top-10 overlap with the trained user.
FOLD_IN_OVERLAP = 0.75


# The neural models train for seconds to minutes on 2 CPU cores; tests/test_ncf.py and
# tests/test_multvae.py run the same contract checks on them with budgets of their own, so
# this file keeps CI within its time.
NEURAL = {"gmf", "mlp", "neumf", "ncf-seed", "multvae"}
# Every other registered model is under this contract: a model whose module moved or fails to
# import fails here instead of dropping out of the list.
IMPLEMENTED = [name for name in available_models() if name not in NEURAL]


def test_every_registered_model_imports_and_is_under_a_contract():
    for name in available_models():
        assert issubclass(model_class(name), Recommender), name
    assert set(available_models()) >= NEURAL


def test_the_classic_models_are_all_under_contract():
    assert set(IMPLEMENTED) >= CLASSIC, f"missing: {CLASSIC - set(IMPLEMENTED)}"


def checkerboard() -> tuple[Interactions, np.ndarray]:
    """20 users x 16 items: even users play even items, odd users odd items, with varied
    play counts; each user's withheld item (one of their parity) is returned beside."""
    rng = np.random.default_rng(7)
    n_users, n_items = 20, 16
    withheld = np.empty(n_users, np.int64)
    dense = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        liked = np.arange(u % 2, n_items, 2)
        withheld[u] = liked[(u // 2) % len(liked)]
        heard = liked[liked != withheld[u]]
        dense[u, heard] = rng.integers(1, 200, len(heard))
    tags = [["even" if i % 2 == 0 else "odd", f"t{i % 3}"] for i in range(n_items)]
    return with_item_tags(with_listen_events(sp.csr_matrix(dense)), tags), withheld


def fitted(name: str, interactions: Interactions):
    return create_model(name, **TEST_PARAMS.get(name, {})).fit(interactions)


@pytest.fixture(scope="module")
def cluster_data() -> Interactions:
    return clusters()


@pytest.fixture(scope="module", params=IMPLEMENTED)
def cluster_model(request, cluster_data):
    return request.param, fitted(request.param, cluster_data)


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_withheld_item_ranks_first_on_the_checkerboard(name):
    data, withheld = checkerboard()
    model = fitted(name, data)
    users = np.arange(data.n_users)
    ids, scores = model.recommend(users, n=3)
    assert ids.shape == scores.shape == (data.n_users, 3)
    assert ((ids >= 0) & (ids < data.n_items)).all()
    heard = data.user_items.toarray() > 0
    assert not heard[users[:, None], ids].any(), "recommended an item the user has heard"
    assert (np.diff(scores, axis=1) <= 0).all(), "scores must come best first"
    if name in UNPERSONALISED:
        return
    np.testing.assert_array_equal(ids[:, 0], withheld)
    # The same holds for the same histories folded in as new listeners.
    folded, _ = model.recommend_for_history(data.user_items, n=1)
    np.testing.assert_array_equal(folded[:, 0], withheld)


def test_batch_recommend_equals_one_by_one(cluster_model):
    _, model = cluster_model
    assert_batch_equals_one_by_one(model, np.arange(0, 80, 7))


def test_recommendations_are_the_top_of_the_scores(cluster_model, cluster_data):
    """Whatever ranking shortcut a model takes, it returns the base class's lists: the top of
    ``score`` / ``score_history`` with heard items masked."""
    _, model = cluster_model
    users = np.arange(cluster_data.n_users)
    for exclude in (True, False):
        ids, scores = model.recommend(users, n=10, exclude_heard=exclude)
        ref_ids, ref_scores = Recommender.recommend(model, users, n=10, exclude_heard=exclude)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)
    history = cluster_data.user_items[:20]
    ids, _ = model.recommend_for_history(history, n=10)
    ref_ids, _ = Recommender.recommend_for_history(model, history, n=10)
    np.testing.assert_array_equal(ids, ref_ids)


def _is_pickle(path: Path) -> bool:
    head = path.read_bytes()[:2]
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def test_save_load_round_trip_without_pickle(cluster_model, cluster_data, tmp_path):
    name, model = cluster_model
    directory = model.save(tmp_path / name)
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert not [p for p in files if _is_pickle(p) or p.suffix in {".pkl", ".pickle"}]
    for npz in directory.rglob("*.npz"):
        with np.load(npz, allow_pickle=False) as arrays:
            for key in arrays.files:
                assert arrays[key].dtype != object
    manifest = read_manifest(directory, verify=True)
    assert manifest["model"] == name
    assert_same_model(load_model(directory), model, cluster_data)


def test_a_corrupted_model_file_is_refused(cluster_model, tmp_path):
    name, model = cluster_model
    directory = model.save(tmp_path / name)
    target = directory / "model.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactError):
        load_model(directory)


def test_fold_in_of_a_training_history_lands_near_the_trained_user(cluster_model, cluster_data):
    _, model = cluster_model
    assert fold_in_overlap(model, cluster_data) >= FOLD_IN_OVERLAP


def test_similar_items_never_include_the_item_itself(cluster_model, cluster_data):
    _, model = cluster_model
    ids = assert_similar_items_exclude_the_item(model, cluster_data)
    assert ((ids >= -1) & (ids < cluster_data.n_items)).all()


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_a_second_fit_forgets_the_first(name):
    first, second = clusters(seed=11, n_users=60, n_items=40), clusters(seed=5)
    assert_refit_is_fresh(fitted(name, first).fit(second), fitted(name, second), second)


def test_a_model_saved_without_data_loads_only_with_its_own_catalogue(tmp_path):
    from tastemaker.models.popularity import Popularity

    data, other = clusters(seed=0), clusters(seed=1)
    model = Popularity().fit(data)
    directory = model.save(tmp_path / "bare", data=False)
    assert not (directory / "data").exists()
    loaded = Popularity.load(directory, interactions=data, fingerprint=data.fingerprint)
    np.testing.assert_array_equal(loaded.score(np.arange(3)), model.score(np.arange(3)))
    with pytest.raises(ArtifactError, match="other data"):
        Popularity.load(directory, interactions=other, fingerprint=other.fingerprint)


def test_recommend_ranks_only_within_items_and_never_returns_exclude(cluster_model, cluster_data):
    """``recommend(users, n, items=, exclude=)``: the top of the scores restricted to the
    candidate set, with the excluded items gone, for training users and folded-in histories."""
    _, model = cluster_model
    users = np.arange(0, cluster_data.n_users, 5)
    rng = np.random.default_rng(0)
    candidates = rng.choice(cluster_data.n_items, 30, replace=False)
    exclude = candidates[:10]
    ids, scores = model.recommend(users, n=25, items=candidates, exclude=exclude)
    allowed = set(candidates.tolist()) - set(exclude.tolist())
    heard = cluster_data.user_items.toarray() > 0
    full = model.score(users)
    for row, user in enumerate(users):
        listed = ids[row][ids[row] >= 0]
        assert set(listed.tolist()) <= allowed, "returned an item outside items= or in exclude="
        assert not heard[user, listed].any()
        expected = [i for i in allowed if not heard[user, i] and np.isfinite(full[row, i])]
        expected.sort(key=lambda i: (-full[row, i], i))
        assert listed.tolist() == expected[:25], "not the top of the restricted scores"
        assert (ids[row][len(listed) :] == -1).all()
        assert np.isneginf(scores[row][len(listed) :]).all()
    history = cluster_data.user_items[users]
    folded, _ = model.recommend_for_history(history, n=25, items=candidates, exclude=exclude)
    for row in folded:
        assert set(row[row >= 0].tolist()) <= allowed


def test_exclude_alone_removes_items_from_every_list(cluster_model, cluster_data):
    _, model = cluster_model
    users = np.arange(cluster_data.n_users)
    plain, _ = model.recommend(users, n=5)
    banned = np.unique(plain[:, 0])
    ids, _ = model.recommend(users, n=5, exclude=banned)
    assert not np.isin(ids, banned).any()


def test_bad_candidate_sets_are_one_line_errors(cluster_model, cluster_data):
    from tastemaker.errors import UsageError

    _, model = cluster_model
    with pytest.raises(UsageError, match="outside"):
        model.recommend(np.arange(2), n=3, items=[cluster_data.n_items])
    with pytest.raises(UsageError, match="integers"):
        model.recommend(np.arange(2), n=3, exclude=[0.5])


def test_pairwise_similarity_is_the_similarity_among_the_items(cluster_model, cluster_data):
    _, model = cluster_model
    items = np.array([3, 17, 42, 8])
    pairwise = model.pairwise_similarity(items)
    assert pairwise.shape == (4, 4)
    # Models that compute it without a pass over the catalogue agree with their _similar.
    full = model._similar(items)[:, items]
    np.testing.assert_allclose(pairwise, full, rtol=1e-4, atol=1e-5)

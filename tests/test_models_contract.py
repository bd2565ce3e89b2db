"""The contract every registered recommender keeps (after implicit's shared model tests).

Parametrised over every name in ``models.MODELS`` whose module exists in the source tree, so a
new model is tested the moment it is registered and its module lands; the classic six must be
among them. Each model runs with small, fast hyperparameters from ``TEST_PARAMS`` (add yours).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import tastemaker.models as models
from tastemaker.artifacts import read_manifest
from tastemaker.data.interactions import Interactions, ListenEvents
from tastemaker.errors import ArtifactError
from tastemaker.models import MODELS, available_models, create_model, load_model
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
    # The NCF models with the fast settings of tests/test_ncf.py (CPU, no inner validation).
    "gmf": {
        "factors": 8,
        "epochs": 30,
        "learning_rate": 0.03,
        "batch_size": 64,
        "regularization": 0.5,
        "device": "cpu",
        "patience": 0,
    },
    "mlp": {
        "factors": 8,
        "layers": (16, 8),
        "epochs": 30,
        "learning_rate": 0.03,
        "batch_size": 64,
        "regularization": 0.2,
        "device": "cpu",
        "patience": 0,
    },
    "neumf": {
        "factors": 8,
        "layers": (16, 8),
        "epochs": 30,
        "learning_rate": 0.03,
        "batch_size": 64,
        "regularization": 0.5,
        "device": "cpu",
        "patience": 0,
    },
    "ncf-seed": {
        "layers": (32, 16),
        "epochs": 60,
        "samples_per_epoch": 4096,
        "learning_rate": 0.01,
        "batch_size": 256,
        "device": "cpu",
        "patience": 0,
    },
    "hybrid": {"candidates": 50, "iterations": 30, "seed": 0},
}
# Models that ignore the listener (no personalisation to check on the checkerboard).
UNPERSONALISED = {"popularity"}
# Fold-in of a training user's own history: minimum mean top-10 overlap with the trained user.
FOLD_IN_OVERLAP = 0.75


def _module_exists(name: str) -> bool:
    module = MODELS[name].partition(":")[0]
    relative = Path(*module.split(".")[1:]).with_suffix(".py")
    return (Path(models.__file__).parents[1] / relative).is_file()


# The NCF models train for seconds to minutes on 2 CPU cores; tests/test_ncf.py runs the same
# contract checks on them with budgets of their own, so this file keeps CI within its time.
NEURAL = {"gmf", "mlp", "neumf", "ncf-seed"}
IMPLEMENTED = [name for name in available_models() if _module_exists(name) and name not in NEURAL]


def test_the_classic_models_are_all_under_contract():
    assert set(IMPLEMENTED) >= CLASSIC, f"missing: {CLASSIC - set(IMPLEMENTED)}"


def _interactions(matrix: sp.spmatrix) -> Interactions:
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
    return _interactions(sp.csr_matrix(dense)), withheld


def clusters(seed: int = 3, n_users: int = 80, n_items: int = 100) -> Interactions:
    """Users in 4 taste groups of 25 items each: 10 items from their group, 2 at random."""
    rng = np.random.default_rng(seed)
    groups = rng.permutation(n_items).reshape(4, -1)
    dense = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        own = rng.choice(groups[u % 4], 10, replace=False)
        other = rng.choice(n_items, 2, replace=False)
        heard = np.union1d(own, other)
        dense[u, heard] = np.ceil(rng.lognormal(2.0, 1.5, len(heard)))
    return _interactions(sp.csr_matrix(dense))


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
    users = np.arange(0, 80, 7)
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
    loaded = load_model(directory)
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    users = np.arange(cluster_data.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    history = cluster_data.user_items[:10]
    np.testing.assert_array_equal(loaded.score_history(history), model.score_history(history))
    np.testing.assert_array_equal(
        loaded.similar_items(np.arange(5), 5)[0], model.similar_items(np.arange(5), 5)[0]
    )


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
    users = np.arange(cluster_data.n_users)
    trained, _ = model.recommend(users, n=10)
    folded, _ = model.recommend_for_history(cluster_data.user_items[users], n=10)
    overlap = np.mean(
        [len(np.intersect1d(a, b)) / 10 for a, b in zip(trained, folded, strict=True)]
    )
    assert overlap >= FOLD_IN_OVERLAP


def test_similar_items_never_include_the_item_itself(cluster_model, cluster_data):
    _, model = cluster_model
    items = np.arange(cluster_data.n_items)
    ids, scores = model.similar_items(items, n=10)
    assert ids.shape == (cluster_data.n_items, 10)
    assert not (ids == items[:, None]).any()
    assert ((ids >= -1) & (ids < cluster_data.n_items)).all()
    assert (np.diff(scores, axis=1)[np.isfinite(scores[:, 1:])] <= 0).all()


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_a_second_fit_forgets_the_first(name):
    first, second = clusters(seed=11, n_users=60, n_items=40), clusters(seed=5)
    refitted = fitted(name, first).fit(second)
    fresh = fitted(name, second)
    assert refitted.n_items_ == fresh.n_items_ == second.n_items
    users = np.arange(second.n_users)
    np.testing.assert_allclose(refitted.score(users), fresh.score(users), rtol=1e-5, atol=1e-6)
    history = second.user_items[:5]
    np.testing.assert_allclose(
        refitted.score_history(history), fresh.score_history(history), rtol=1e-5, atol=1e-6
    )


def test_a_model_saved_without_data_loads_only_with_its_own_catalogue(tmp_path):
    from tastemaker.models.popularity import Popularity

    data, other = clusters(seed=0), clusters(seed=1)
    model = Popularity().fit(data)
    directory = model.save(tmp_path / "bare", data=False)
    assert not (directory / "data").exists()
    loaded = Popularity.load(directory, catalogue=data, fingerprint=data.fingerprint)
    np.testing.assert_array_equal(loaded.score(np.arange(3)), model.score(np.arange(3)))
    with pytest.raises(ArtifactError, match="other data"):
        Popularity.load(directory, catalogue=other, fingerprint=other.fingerprint)

"""The contract every registered recommender keeps (after implicit's shared model tests).

Parametrised over every name in ``models.MODELS`` but the neural ones (their own files run
the same checks), so a new model is tested the moment it is registered, and one that fails to
import fails here; the classic six must be among them. Each model runs with small, fast
hyperparameters from ``TEST_PARAMS`` (add yours). The checks are ``tastemaker.testing``'s,
which a model outside tastemaker can run too (``check_model``, tested at the end).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec
from tastemaker.data.interactions import Interactions
from tastemaker.errors import ArtifactError
from tastemaker.models import available_models, create_model, load_model, model_class
from tastemaker.models.base import Recommender
from tastemaker.models.params import at_least
from tastemaker.testing import (
    FOLD_IN_OVERLAP,
    assert_batch_equals_one_by_one,
    assert_candidate_sets,
    assert_hyperparameters,
    assert_lists_are_the_top_of_the_scores,
    assert_pairwise_similarity,
    assert_ranks_the_withheld_item_first,
    assert_refit_is_fresh,
    assert_same_model,
    assert_saves_and_loads_without_pickle,
    assert_similar_items_exclude_the_item,
    check_model,
    checkerboard,
    clusters,
    fold_in_overlap,
)

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
    "blend": {"als_factors": [4, 2], "seed": 0},
}
# The hybrid's generators run with the same small settings as on their own.
TEST_PARAMS["hybrid"]["generator_params"] = {
    name: TEST_PARAMS[name] for name in ("als", "itemknn", "ease")
}
# Models whose lists do not follow the listener's taste (nothing to check on the checkerboard;
# only popularity declares itself not personalised: the other two differ per listener).
UNPERSONALISED = {"popularity", "random", "tag-count"}


# The neural models train for seconds to minutes on 2 CPU cores; tests/models/test_ncf.py and
# tests/models/test_multvae.py run the same contract checks on them with budgets of their own, so
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
    model = fitted(name, checkerboard()[0])
    assert_ranks_the_withheld_item_first(model, by_taste=name not in UNPERSONALISED)


def test_batch_recommend_equals_one_by_one(cluster_model):
    _, model = cluster_model
    assert_batch_equals_one_by_one(model, np.arange(0, 80, 7))


def test_recommendations_are_the_top_of_the_scores(cluster_model, cluster_data):
    _, model = cluster_model
    assert_lists_are_the_top_of_the_scores(model, cluster_data)


def test_save_load_round_trip_without_pickle(cluster_model, cluster_data, tmp_path):
    """No pickle, the same model back (by its class and through the registry), a corrupted
    file refused."""
    name, model = cluster_model
    assert_same_model(load_model(model.save(tmp_path / "registry")), model, cluster_data)
    assert_saves_and_loads_without_pickle(model, cluster_data, tmp_path / name)
    with pytest.raises(ArtifactError):
        load_model(tmp_path / name)  # corrupted by the check


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


def test_candidate_sets_items_and_exclude(cluster_model, cluster_data):
    """``recommend(users, n, items=, exclude=)`` ranks only within ``items``, never returns
    ``exclude``; ``exclude`` alone empties it from every list; bad sets are one-line errors."""
    _, model = cluster_model
    assert_candidate_sets(model, cluster_data)


def test_pairwise_similarity_is_the_similarity_among_the_items(cluster_model):
    _, model = cluster_model
    assert_pairwise_similarity(model, np.array([3, 17, 42, 8]))


def test_hyperparameters_follow_scikit_learn(cluster_model):
    _, model = cluster_model
    assert_hyperparameters(model)


class CoListened(Recommender):
    """A model written outside tastemaker: items scored by how often they were listened to
    with the history's items (a user's own code, run through ``check_model``)."""

    name = "co-listened"
    param_rules = {"shrink": at_least(0)}

    def __init__(self, shrink: float = 1.0) -> None:
        self.shrink = shrink

    def _fit(self, interactions: Interactions) -> None:
        binary = (interactions.user_items > 0).astype(np.float32)
        counts = (binary.T @ binary).toarray()
        np.fill_diagonal(counts, 0.0)
        self.together_ = (counts / (counts.sum(1, keepdims=True) + self.shrink)).astype(np.float32)

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.asarray((history > 0).astype(np.float32) @ self.together_, np.float32)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self.together_[items].copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"together": self.together_}

    def _state_spec(self) -> dict[str, ArraySpec]:
        return {"together": ArraySpec(("items", "items"), low=0)}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.together_ = arrays["together"].astype(np.float32, copy=False)


def test_a_model_of_ones_own_passes_the_public_contract():
    check_model(CoListened)


def test_the_public_contract_catches_a_broken_model():
    class Forgetful(CoListened):
        """Saves nothing it learnt: loads with zeros."""

        def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
            self.together_ = np.zeros_like(arrays["together"])

    with pytest.raises(AssertionError):
        check_model(Forgetful)

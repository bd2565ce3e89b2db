"""Quality floors of the classic models on HetRec 2K with their default hyperparameters.

Default protocol (DESIGN.md): ``random`` split (20 % of each user's items with >= 5 items,
seed 0), full ranking against every item the user has not heard in training, k = 10. Measured
with these defaults (NDCG@10 / AUC): popularity 0.081 / 0.81, ALS 0.245 / 0.89, EASE 0.228,
item-KNN 0.217, user-KNN 0.227, BPR 0.147, RP3beta 0.231 (recall@10 0.190; docs/defaults.md,
docs/models.md). The floors sit below those with honest margins and far above popularity; a
regression in weighting, orientation or ranking trips them.
"""

from __future__ import annotations

import numpy as np
import pytest

from tastemaker.evaluation.metrics import ranking_metrics
from tastemaker.evaluation.splits import random_split
from tastemaker.models import create_model

# model -> {metric: floor}; popularity gets a ceiling instead (see below).
FLOORS = {
    "als": {"ndcg@10": 0.20, "recall@10": 0.17, "auc": 0.83},
    "ease": {"ndcg@10": 0.20, "recall@10": 0.17},
    "itemknn": {"ndcg@10": 0.19, "recall@10": 0.16},
    "rp3beta": {"ndcg@10": 0.205, "recall@10": 0.17},
    "userknn": {"ndcg@10": 0.19, "recall@10": 0.16},
    "bpr": {"ndcg@10": 0.13},
}
POPULARITY_CEILING = 0.10

pytestmark = pytest.mark.slow  # trains on real data (about 20 s on 2 cores)


@pytest.fixture(scope="module")
def split(hetrec):
    return random_split(hetrec)


@pytest.fixture(scope="module")
def fitted(split):
    """Every model fitted once on the training part, with its default hyperparameters."""
    return {name: create_model(name).fit(split.train) for name in ["popularity", *FLOORS]}


@pytest.fixture(scope="module")
def results(split, fitted):
    """Metrics of every model (AUC, the costliest, only where it is asserted)."""
    return {
        name: ranking_metrics(
            model, split, ks=(10,), auc=name == "popularity" or "auc" in FLOORS.get(name, {})
        )
        for name, model in fitted.items()
    }


def test_popularity_is_the_weak_baseline_it_should_be(results):
    pop = results["popularity"]
    assert 0.05 < pop["ndcg@10"] < POPULARITY_CEILING
    assert 0.75 < pop["auc"] < 0.85


@pytest.mark.parametrize("name", list(FLOORS))
def test_default_model_clears_its_floor(results, name):
    measured = results[name]
    failures = {
        metric: round(measured[metric], 4)
        for metric, floor in FLOORS[name].items()
        if not measured[metric] >= floor
    }
    assert not failures, f"{name} below its floors {FLOORS[name]}: {failures}"


@pytest.mark.parametrize("name", list(FLOORS))
def test_default_model_far_outranks_popularity(results, name):
    assert results[name]["ndcg@10"] >= 1.5 * results["popularity"]["ndcg@10"]


def test_ease_prunes_rare_items_and_never_recommends_them(split, fitted):
    model = fitted["ease"]
    listeners = np.bincount(split.train.user_items.indices, minlength=split.train.n_items)
    assert set(model.kept_items_) == set(np.flatnonzero(listeners >= 2))
    assert len(model.kept_items_) < 0.5 * split.train.n_items
    ids, _ = model.recommend(np.arange(200), n=50)
    assert (listeners[ids[ids >= 0]] >= 2).all()

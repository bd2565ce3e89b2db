"""The cold-start protocol (``--split cold-items``) and its floor on HetRec 2K."""

from __future__ import annotations

import numpy as np
import pytest

from tastemaker.evaluation.metrics import ranking_metrics
from tastemaker.evaluation.splits import cold_items_split, make_split
from tastemaker.models import create_model
from tastemaker.testing import clusters


def test_cold_items_leave_training_entirely():
    data = clusters()
    split = make_split(data, "cold-items", test_fraction=0.2, min_listeners=5, seed=3)
    cold = split.candidates[0]
    listeners = np.bincount(data.user_items.indices, minlength=data.n_items)
    assert (listeners[cold] >= 5).all()
    assert len(cold) == round(0.2 * (listeners >= 5).sum())
    train = split.train
    assert not np.isin(train.user_items.indices, cold).any()
    assert not np.isin(train.events.item, cold).any()
    assert len(train.last_listened) == train.nnz
    # Every pair of a cold item is a test pair; every test user ranks the same cold items.
    assert split.test.nnz == int(listeners[cold].sum())
    assert np.isin(split.test.indices, cold).all()
    assert (split.candidates == cold).all() and len(split.candidates) == len(split.test_users)
    again = cold_items_split(data, test_fraction=0.2, min_listeners=5, seed=3)
    np.testing.assert_array_equal(again.candidates[0], cold)
    other = cold_items_split(data, test_fraction=0.2, min_listeners=5, seed=4)
    assert not np.array_equal(other.candidates[0], cold)
    assert "held out entirely" in split.label


def test_a_cold_item_is_ranked_by_its_tags():
    data = clusters()
    split = cold_items_split(data, test_fraction=0.2, min_listeners=5, seed=0)
    tags = ranking_metrics(create_model("tags").fit(split.train), split, ks=(10,))
    floor = ranking_metrics(create_model("random").fit(split.train), split, ks=(10,))
    assert tags["ndcg@10"] > 2 * floor["ndcg@10"]


@pytest.fixture(scope="module")
def hetrec_cold(hetrec):
    """NDCG@10 of tags, tag-count and random on HetRec's cold-items split, seeds 0-4."""
    figures = {name: [] for name in ("tags", "tag-count", "random")}
    for seed in range(5):
        split = cold_items_split(hetrec, seed=seed)
        for name, values in figures.items():
            model = create_model(name).fit(split.train)
            values.append(ranking_metrics(model, split, ks=(10,), auc=False)["ndcg@10"])
    return {name: float(np.mean(values)) for name, values in figures.items()}


def test_tags_beat_both_floors_on_hetrec_cold_items(hetrec_cold):
    """Measured (docs/metadata.md): tags 0.389, tag-count 0.210, random 0.024 (16x, 1.85x).
    The issue's targets are 10x random and 1.3x tag-count; the margins below those figures
    are the test's."""
    assert hetrec_cold["random"] < 0.035
    assert hetrec_cold["tags"] >= 10 * hetrec_cold["random"]
    assert hetrec_cold["tags"] >= 1.3 * hetrec_cold["tag-count"]
    assert hetrec_cold["tags"] > 0.33

"""The ``tags`` content model: what the contract does not cover (test_models_contract.py, beside
this file, runs it too): own tags left out, unplayed items, explanations, similar items by tags."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from test_hybrid import clusters as taste_groups

from tastemaker.data.interactions import Interactions, TagAssignments, Vocabulary, empty_metadata
from tastemaker.errors import UsageError
from tastemaker.models import create_model
from tastemaker.models.candidates import propose
from tastemaker.testing import with_item_tags


def small_data(n_items: int = 6) -> Interactions:
    """Users 0-2 play items 0-1; item 5 has no listener at all."""
    dense = np.zeros((3, n_items), np.float32)
    dense[:, 0], dense[:, 1] = 3, 1
    dense[2, 2] = 1
    ids = [f"i{k}" for k in range(n_items)]
    return Interactions(
        sp.csr_matrix(dense),
        Vocabulary(["u0", "u1", "u2"]),
        Vocabulary(ids),
        empty_metadata(ids, ["Slowdive", "Ride", "Lush", "Bowie", "Abba", "Cocteau Twins"]),
    )


TAGS = [
    ["shoegaze", "dream pop"],
    ["shoegaze", "britpop"],
    ["dream pop"],
    ["glam rock"],
    ["disco", "pop"],
    ["dream pop", "shoegaze", "ethereal"],
]


def test_an_unplayed_item_is_recommended_and_explained_by_its_tags():
    data = with_item_tags(small_data(), TAGS)
    model = create_model("tags").fit(data)
    ids, scores = model.recommend(np.asarray([0]), n=3)
    assert ids[0, 0] == 5  # Cocteau Twins: no listener, but dream pop and shoegaze
    assert scores[0, 0] > 0
    reasons = model.shared_tags(data.user_items[0], 5, n=2)
    assert set(reasons) == {"shoegaze", "dream pop"}
    similar, _ = model.similar_items(np.asarray([0]), n=2)
    assert set(similar[0]) == {5, 1} or set(similar[0]) == {5, 2}
    assert model.item_tags(3) == ["glam rock"]


def _assignments(rows: list[tuple[int, int, str]], names: list[str]) -> TagAssignments:
    vocab = Vocabulary(sorted(names))
    user, item, tag = zip(*rows, strict=True)
    return TagAssignments(
        np.asarray(user, np.int32),
        np.asarray(item, np.int32),
        vocab.indices(list(tag)).astype(np.int32),
        vocab,
    )


def test_a_users_own_tags_never_reach_their_scores():
    """User 2 tagged items 3 and 4 "disco". Fitted with and without those assignments, user
    2's scores are the same; user 0's change (item 3 now mixes shoegaze and disco)."""
    base = [(0, 0, "shoegaze"), (1, 1, "shoegaze"), (1, 3, "shoegaze"), (0, 4, "disco")]
    own = [(2, 3, "disco"), (2, 4, "disco")]
    names = ["shoegaze", "disco"]
    data = small_data()
    with_own = dataclasses.replace(data, tags=_assignments(base + own, names))
    without = dataclasses.replace(data, tags=_assignments(base, names))
    a = create_model("tags").fit(with_own)
    b = create_model("tags").fit(without)
    np.testing.assert_allclose(a.score(np.asarray([2])), b.score(np.asarray([2])), atol=1e-6)
    assert not np.allclose(a.score(np.asarray([0])), b.score(np.asarray([0])))


def test_data_without_tags_is_refused():
    with pytest.raises(UsageError, match="needs item tags"):
        create_model("tags").fit(small_data())


def with_unplayed_item(data: Interactions, tags: list[list[str]]) -> Interactions:
    """``data`` plus one item nobody played (the last index), with item tags ``tags``."""
    ids = [*data.items.to_list(), "new-artist"]
    matrix = sp.hstack([data.user_items, sp.csr_matrix((data.n_users, 1))]).tocsr()
    grown = Interactions(matrix, data.users, Vocabulary(ids), empty_metadata(ids))
    return with_item_tags(grown, tags)


def test_the_hybrid_proposes_and_recommends_an_unplayed_item():
    data, group = taste_groups()
    tags = [[f"group{g}", f"mood{i % 3}"] for i, g in enumerate(group)] + [["group0", "mood0"]]
    data = with_unplayed_item(data, tags)
    new = data.n_items - 1
    model = create_model("hybrid", generators="als,tags", candidates=20, iterations=30, seed=0).fit(
        data
    )
    fans = np.flatnonzero(np.arange(data.n_users) % 4 == 0)  # users of taste group 0
    candidates, _ = propose(model.generators_, data.user_items[fans], fans, 20)
    proposed = np.unique(candidates.row[candidates.item == new])
    # Only the content generator can propose it (no listens: ALS has no opinion of it).
    assert len(proposed) == len(fans)
    ids, _ = model.recommend(fans, n=20)
    # Measured: 93 % of them have it in their top 20.
    assert (ids == new).any(axis=1).mean() > 0.5


def test_the_service_shows_top_tags_and_finds_similar_items_by_tags(tmp_path):
    from fastapi.testclient import TestClient

    from tastemaker.serving import ServeSettings, create_app, load_bundle

    data = with_item_tags(small_data(), TAGS)
    popularity = create_model("popularity").fit(data).save(tmp_path / "popularity")
    bundle = load_bundle(popularity, ServeSettings())
    with TestClient(create_app(ServeSettings(), bundle)) as client:
        body = client.get("/v1/items/Slowdive/similar", params={"by": "tags", "n": 3}).json()
        assert body["item"]["tags"][:2] == ["dream pop", "shoegaze"]
        names = [entry["name"] for entry in body["items"]]
        assert set(names) == {"Lush", "Ride", "Cocteau Twins"}  # the last one never played
        assert "Bowie" not in names and "Abba" not in names  # nothing in common
        plain = client.get("/v1/items/Slowdive/similar", params={"n": 3}).json()
        assert plain["items"] and all("tags" in entry for entry in plain["items"])
    bare = create_model("popularity").fit(small_data()).save(tmp_path / "bare")
    with TestClient(create_app(ServeSettings(), load_bundle(bare, ServeSettings()))) as client:
        response = client.get("/v1/items/Slowdive/similar", params={"by": "tags"})
        assert response.status_code == 404 and "no item tags" in response.text


def test_any_model_keeps_assignment_tags_for_the_service_bounded_per_item(tmp_path):
    # Per-user assignments only (as HetRec brings them), a model that never reads tags: its
    # saved catalogue still knows each item's top tags (counts, no taggers), at most
    # CATALOGUE_TAGS_PER_ITEM of them, and the service shows them.
    from fastapi.testclient import TestClient

    from tastemaker.data.metadata.combined import CATALOGUE_TAGS_PER_ITEM
    from tastemaker.serving import ServeSettings, create_app, load_bundle

    many = [f"tag {k:02d}" for k in range(CATALOGUE_TAGS_PER_ITEM + 5)]
    rows = [(0, 0, "shoegaze"), (1, 0, "shoegaze"), (2, 0, "dream pop"), (0, 3, "glam rock")]
    rows += [(u, 1, tag) for u in range(3) for tag in many[: u + CATALOGUE_TAGS_PER_ITEM]]
    names = sorted({tag for _, _, tag in rows})
    data = dataclasses.replace(small_data(), tags=_assignments(rows, names))
    model = create_model("popularity").fit(data)
    assert model.interactions_.tags is None  # who tagged what stays out of the model
    meta = model.interactions_.metadata
    assert meta.top_tags(0, 3) == ["shoegaze", "dream pop"]
    assert int(np.diff(meta.item_tags.indptr)[1]) == CATALOGUE_TAGS_PER_ITEM
    assert meta.top_tags(1, 1) == ["tag 00"]
    saved = model.save(tmp_path / "popularity")
    with TestClient(create_app(ServeSettings(), load_bundle(saved, ServeSettings()))) as client:
        body = client.get("/v1/items/Slowdive/similar", params={"n": 3}).json()
        assert body["item"]["tags"][:2] == ["shoegaze", "dream pop"]
        bowie = client.get("/v1/items/Bowie/similar", params={"by": "tags"})
        assert bowie.status_code == 200

"""The tag routes: ``GET /v1/tags?q=`` (as you type) and ``GET /v1/tags/{tag}/items``, on a
small catalogue with weighted metadata tags and per-user assignments (HetRec's kind)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from tastemaker.data.interactions import Interactions, TagAssignments, Vocabulary, empty_metadata
from tastemaker.data.metadata import ItemMetadata, empty_facts
from tastemaker.models import create_model
from tastemaker.serving import ServeSettings, create_app, load_bundle
from tastemaker.serving.tag_routes import tag_index

NAMES = ["Slowdive", "My Bloody Valentine", "Obscure Gaze", "Radiohead", "Abba", "Mogwai", "Ride"]
# item -> {tag: weight} (MusicBrainz-like vote counts); Ride (6) has only users' assignments.
WEIGHTS = {
    0: {"shoegaze": 40, "dream pop": 30},
    1: {"shoegaze": 90, "noise pop": 10},
    2: {"shoegaze": 1},  # tagged once, nothing else: must not lead the tag
    3: {"alternative": 100, "shoegaze": 2},
    4: {"disco": 50},
    5: {"Post-Rock": 20},
}
ASSIGNED = [(0, 6, "shoegaze"), (1, 6, "shoegaze"), (2, 6, "britpop")]  # (user, item, tag)


def tagged_catalogue() -> Interactions:
    rng = np.random.default_rng(0)
    dense = (rng.random((12, len(NAMES))) < 0.5).astype(np.float32) * 3
    dense[:, 1] = 2  # My Bloody Valentine: everyone's
    ids = [f"a{k}" for k in range(len(NAMES))]
    data = Interactions(
        sp.csr_matrix(dense),
        Vocabulary([f"u{k}" for k in range(12)]),
        Vocabulary(ids),
        empty_metadata(ids, NAMES),
    )
    names = sorted({t for tags in WEIGHTS.values() for t in tags})
    column = {t: k for k, t in enumerate(names)}
    rows, cols, values = zip(
        *[(i, column[t], w) for i, tags in WEIGHTS.items() for t, w in tags.items()], strict=True
    )
    matrix = sp.csr_matrix(
        (np.asarray(values, np.float32), (rows, cols)), shape=(len(NAMES), len(names))
    )
    metadata = ItemMetadata(matrix, names, np.zeros(len(names), bool), empty_facts(len(NAMES)))
    vocab = Vocabulary(sorted({t for _, _, t in ASSIGNED}))
    user, item, tag = zip(*ASSIGNED, strict=True)
    assigned = TagAssignments(
        np.asarray(user, np.int32),
        np.asarray(item, np.int32),
        vocab.indices(list(tag)).astype(np.int32),
        vocab,
    )
    return dataclasses.replace(data, metadata=metadata, tags=assigned)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("tags")
    data = tagged_catalogue()
    tagged = create_model("popularity").fit(data).save(root / "tagged")
    content = create_model("tags").fit(dataclasses.replace(data, metadata=None))
    bare = dataclasses.replace(data, metadata=None, tags=None)
    untagged = create_model("popularity").fit(bare).save(root / "untagged")
    settings = ServeSettings()
    bundle = load_bundle(tagged, settings)
    with (
        TestClient(create_app(settings, bundle)) as client,
        TestClient(create_app(settings, load_bundle(untagged, settings))) as bare_client,
        TestClient(
            create_app(settings, load_bundle(content.save(root / "tags"), settings))
        ) as by_model,
    ):
        yield client, bare_client, bundle, by_model


def test_tags_are_suggested_as_you_type(served):
    client, *_ = served
    body = client.get("/v1/tags", params={"q": "sho"}).json()
    assert body["query"] == "sho"
    # Five items: Ride's shoegaze comes from users' assignments, which a model's catalogue
    # keeps as tag counts.
    assert body["tags"][0] == {"tag": "shoegaze", "items": 5, "reason": "tag starts with it"}
    # Folded like names: case and punctuation do not matter; a later word's start finds it.
    assert client.get("/v1/tags", params={"q": "POST ROCK"}).json()["tags"][0]["tag"] == (
        "Post-Rock"
    )
    assert client.get("/v1/tags", params={"q": "pop"}).json()["tags"][0]["tag"] in (
        "dream pop",
        "noise pop",
    )
    assert client.get("/v1/tags", params={"q": "shoegzae"}).json()["tags"][0]["tag"] == "shoegaze"
    popular = client.get("/v1/tags", params={"n": 2}).json()["tags"]
    assert popular[0]["tag"] == "shoegaze" and popular[1]["items"] == 1
    assert popular[0]["reason"] == "most used" and len(popular) == 2


def test_a_tags_items_are_the_most_strongly_tagged_first(served):
    client, *_ = served
    body = client.get("/v1/tags/Shoegaze/items", params={"n": 10}).json()
    assert body["tag"] == {"tag": "shoegaze", "items": 5, "reason": None}
    names = [entry["name"] for entry in body["items"]]
    # A saved model's catalogue keeps metadata and each item's top assignment counts (no
    # taggers): Ride, tagged shoegaze by two users, is there.
    assert set(names) == {"My Bloody Valentine", "Slowdive", "Obscure Gaze", "Radiohead", "Ride"}
    assert names[:2] == ["My Bloody Valentine", "Slowdive"]
    assert names.index("Radiohead") > names.index("Slowdive")  # shoegaze is marginal to it
    scores = [entry["score"] for entry in body["items"]]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    first = body["items"][0]
    assert first["reason"] == "tagged shoegaze" and first["tags"][0] == "shoegaze"
    assert first["listeners"] == 12
    top = client.get("/v1/tags/shoegaze/items", params={"n": 2}).json()["items"]
    assert [entry["name"] for entry in top] == names[:2]


def test_unknown_tags_and_untagged_data_answer_404_in_json(served):
    client, bare_client, *_ = served
    response = client.get("/v1/tags/shoegazr/items")
    assert response.status_code == 404
    assert "no item is tagged 'shoegazr'" in response.json()["detail"]
    assert "did you mean: shoegaze" in response.json()["detail"]
    for path in ("/v1/tags", "/v1/tags/shoegaze/items"):
        response = bare_client.get(path)
        assert response.status_code == 404 and "no item tags" in response.json()["detail"]


def test_n_and_the_query_are_capped(served):
    client, *_ = served
    assert client.get("/v1/tags/shoegaze/items", params={"n": 1001}).status_code == 422
    assert client.get("/v1/tags/shoegaze/items", params={"n": 0}).status_code == 422
    assert client.get("/v1/tags", params={"n": 101}).status_code == 422
    assert client.get("/v1/tags", params={"q": "x" * 201}).status_code == 422
    assert client.get("/v1/tags/" + "x" * 201 + "/items").status_code == 422


def test_the_index_is_built_once_per_loaded_model(served):
    bundle = served[2]
    assert tag_index(bundle) is tag_index(bundle)
    index = tag_index(bundle)
    ids, scores = index.top_items(index.resolve("shoegaze"), 1000)
    assert len(ids) == 5 and np.all(np.diff(scores) <= 0)


def test_a_tags_model_serves_the_tags_it_learnt_from_users_assignments(served):
    by_model = served[3]
    body = by_model.get("/v1/tags/britpop/items").json()
    assert [entry["name"] for entry in body["items"]] == ["Ride"]
    names = [e["name"] for e in by_model.get("/v1/tags/shoegaze/items").json()["items"]]
    assert names == ["Ride"]  # users tagged it twice; metadata left out of this model
    assert by_model.get("/v1/tags", params={"q": "brit"}).json()["tags"][0]["tag"] == "britpop"

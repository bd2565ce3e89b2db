"""The playlist fast path: candidates from an index, the track table's arrays, 2-opt ordering.

Where the index is exact (every item in its flat head) a playlist must be the very playlist
of the dense reference path; with an HNSW tail it is approximate but keeps every rule.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from tastemaker.data.interactions import Interactions
from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.synth import synthetic_listens
from tastemaker.data.top_tracks import attach_tracks
from tastemaker.models import create_model
from tastemaker.models.ann import IndexSettings
from tastemaker.playlists.candidates import TieredSearch
from tastemaker.playlists.constraints import PERSONAL_MAX_PER_ARTIST, Rules, violations
from tastemaker.playlists.library import Library
from tastemaker.playlists.ordering import SEPARATION, improve, smooth_order
from tastemaker.playlists.personal import MODES, freshness, personal_playlist
from tastemaker.playlists.playlist import Track
from tastemaker.serving import ServeSettings, create_app
from tastemaker.serving.playlist_routes import library_for

NOW = datetime(2025, 1, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def data() -> Interactions:
    listens = synthetic_listens(users=60, artists=400, listens=20_000, seed=8, bots=0).lazy()
    return attach_tracks(listens, interactions_from_listens(listens))


@pytest.fixture(scope="module")
def model(data):
    return create_model("als", factors=16, iterations=8, seed=0).fit(data)


def described(playlist) -> list[tuple]:
    return [(t.item, t.recording, t.title, t.reason, t.discovery) for t in playlist.tracks]


def test_an_exact_index_gives_the_reference_playlist(model, data):
    reference = Library(model)
    exact_index = TieredSearch(model, IndexSettings(head_items=data.n_items))
    indexed = Library(model, search=exact_index)
    assert exact_index.tiers.tail is None  # every item in the exact flat head
    compared = 0
    for user in range(0, data.n_users, 5):
        for mode in MODES:
            for day in (1, 2):
                now = datetime(2025, 1, day, tzinfo=UTC)
                a = personal_playlist(reference, reference.listener(user=user, now=now), mode)
                b = personal_playlist(indexed, indexed.listener(user=user, now=now), mode)
                assert described(a) == described(b), (user, mode, day)
                assert a.shortfall == b.shortfall
                compared += 1
    # A posted history (fold-in) takes the same way.
    history = sp.csr_matrix(data.user_items[5].toarray())
    a = personal_playlist(reference, reference.listener(history=history, now=NOW), "mix")
    b = personal_playlist(indexed, indexed.listener(history=history, now=NOW), "mix")
    assert described(a) == described(b) and len(a.tracks) == 50
    assert compared == 6 * ((data.n_users + 4) // 5)


def test_an_approximate_index_keeps_every_rule_and_most_tracks(model, data):
    reference = Library(model)
    # A small head: most items live in the HNSW graph.
    indexed = Library(model, search=TieredSearch(model, IndexSettings(head_items=32)))
    shared = total = 0
    for user in range(0, data.n_users, 2):
        for mode in MODES:
            listener = indexed.listener(user=user, now=NOW)
            made = personal_playlist(indexed, listener, mode, n=40, seed=user)
            rules = Rules(40, PERSONAL_MAX_PER_ARTIST, freshness(mode, listener))
            assert violations(made, rules) == []
            assert len(made.tracks) + made.short_by == 40
            exact = personal_playlist(reference, reference.listener(user=user, now=NOW), mode,
                                      n=40, seed=user)  # fmt: skip
            shared += len({t.recording for t in made.tracks} & {t.recording for t in exact.tracks})
            total += len(exact.tracks)
    assert shared / total > 0.9  # measured 0.98 on this data


def test_the_index_needs_a_factor_model(data):
    knn = create_model("itemknn", neighbours=10).fit(data)
    with pytest.raises(TypeError, match="no item vectors"):
        Library(knn, search=TieredSearch(create_model("als", factors=4, iterations=2).fit(data)))


def test_the_track_table_matches_the_tracks_frame(model, data):
    library = Library(model)
    table = library.table
    frame = data.tracks.tracks
    for item in (0, 7, data.n_items - 1):
        rows = frame.filter(frame["item"] == item)
        tracks = library.item_tracks(item)
        assert [t.recording for t in tracks] == rows["recording"].to_list()
        assert [t.plays for t in tracks] == rows["plays"].to_list()
        assert table.total[item] == max(rows["plays"].sum(), 1)
    items = np.asarray([3, 1, 3])
    position, within, rows = table.rows_of(items)
    assert position.tolist() == sorted(position.tolist())
    assert (table.plays_of(rows) == table.plays[rows]).all()
    made = table.tracks(items[position], rows, ["why"] * len(rows), [True] * len(rows))
    assert [t.item for t in made] == items[position].tolist()
    assert all(t.reason == "why" and t.discovery for t in made)


def test_items_without_recordings_become_artist_entries():
    listens = synthetic_listens(users=20, artists=30, listens=2_000, seed=1, bots=0).lazy()
    data = attach_tracks(listens, interactions_from_listens(listens))
    # Keep the recordings of half the items only.
    kept = data.tracks.tracks.filter(data.tracks.tracks["item"] % 2 == 0)
    data = dataclasses.replace(data, tracks=dataclasses.replace(data.tracks, tracks=kept))
    library = Library(create_model("als", factors=4, iterations=3, seed=0).fit(data))
    position, _, rows = library.table.rows_of(np.arange(4))
    assert rows[position == 1].tolist() == [-1] and rows[position == 3].tolist() == [-1]
    assert library.item_tracks(1)[0].title is None
    playlist = personal_playlist(library, library.listener(user=0, now=NOW), "mix", n=20)
    rules = Rules(20, PERSONAL_MAX_PER_ARTIST, freshness("mix", library.listener(user=0, now=NOW)))
    assert violations(playlist, rules) == []


def _crowding(codes: np.ndarray) -> int:
    return sum(int((codes[d:] == codes[:-d]).sum()) for d in range(1, SEPARATION + 1))


def test_two_opt_raises_transitions_and_keeps_artists_apart():
    rng = np.random.default_rng(0)
    for case in range(40):
        k = int(rng.integers(4, 60))
        codes = rng.integers(0, max(2, k // 2), k)
        vectors = rng.normal(size=(k, 6))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        similarity = vectors @ vectors.T
        if case % 2:  # item-KNN's similarity need not be symmetric
            similarity = similarity + 0.3 * rng.random((k, k))
        tracks = [Track(item=i, artist=f"artist {c}", title=f"t{i}") for i, c in enumerate(codes)]
        start = smooth_order(tracks, similarity, shuffle=True)[0]  # an unordered, valid path
        path = np.asarray([t.item for t in start])
        if (codes[path][1:] == codes[path][:-1]).any():
            continue
        better = improve(path.copy(), codes, similarity)
        assert sorted(better.tolist()) == sorted(path.tolist()) and better[0] == path[0]
        assert not (codes[better][1:] == codes[better][:-1]).any()
        assert _crowding(codes[better]) <= _crowding(codes[path])
        before = similarity[path[:-1], path[1:]].sum()
        after = similarity[better[:-1], better[1:]].sum()
        assert after >= before - 1e-9


def test_the_service_hands_its_index_to_playlists(tmp_path, monkeypatch, model):
    directory = model.save(tmp_path / "als")
    monkeypatch.setenv("TASTEMAKER_ANN_THRESHOLD", "1")
    with TestClient(create_app(ServeSettings(model_dir=directory))) as client:
        user = model.interactions_.users.id(4)
        params = {"mode": "mix", "n": 30, "day": "2025-02-01"}
        answer = client.get(f"/v1/users/{user}/playlist", params=params)
        assert answer.status_code == 200 and len(answer.json()["tracks"]) == 30
        bundle = client.app.state.holder.current
        assert library_for(bundle).search is bundle.retriever
    # Every item fits the service's exact head here: the same playlist as without the index.
    reference = Library(model)
    now = datetime(2025, 2, 1, tzinfo=UTC)
    expected = personal_playlist(reference, reference.listener(user=4, now=now), "mix", n=30)
    assert [t["title"] for t in answer.json()["tracks"]] == [t.title for t in expected.tracks]


def test_co_tags_count_like_a_group_by(model, data):
    import polars as pl

    rng = np.random.default_rng(3)
    tags = [f"Tag {t}" for t in rng.integers(0, 12, 3 * data.n_items)]
    frame = pl.DataFrame(
        {"item": np.repeat(np.arange(data.n_items), 3), "tag": tags, "weight": 1}
    ).cast({"item": pl.Int32, "weight": pl.Int64})
    library = Library(model)
    library.track_data = dataclasses.replace(library.track_data, item_tags=frame)
    for _ in range(20):
        items = rng.choice(data.n_items, int(rng.integers(1, 60)), replace=False).tolist()
        counts = (
            frame.filter(pl.col("item").is_in(items))
            .group_by("tag")
            .len()
            .sort(["len", "tag"], descending=[True, False])
        )
        assert library.co_tags(items) == counts["tag"].to_list()


def test_the_transition_bound_bounds_every_order():
    from itertools import permutations

    from tastemaker.playlists.ordering import transition_bound, transition_similarity

    rng = np.random.default_rng(5)
    for _ in range(30):
        k = int(rng.integers(2, 7))
        artists = [f"a{c}" for c in rng.integers(0, 3, k)]
        similarity = rng.random((k, k))
        bound = transition_bound(similarity, artists)
        for order in permutations(range(k)):
            if any(artists[a] == artists[b] for a, b in zip(order, order[1:], strict=False)):
                continue
            assert transition_similarity(similarity, np.asarray(order)) <= bound + 1e-12


def test_a_listener_of_very_many_artists_is_scored_exactly(model, data, monkeypatch):
    import tastemaker.playlists.candidates as candidates

    indexed = Library(model, search=TieredSearch(model, IndexSettings(head_items=32)))
    reference = Library(model)
    user = int(np.argmax(np.diff(data.user_items.indptr)))  # the listener with most artists
    monkeypatch.setattr(candidates, "MAX_INDEX_FETCH", 10)  # every listener is "very many"

    def no_index(*args):
        raise AssertionError("the index was searched")

    monkeypatch.setattr(candidates, "indexed_known_and_new", no_index)
    a = personal_playlist(indexed, indexed.listener(user=user, now=NOW), "exploration")
    b = personal_playlist(reference, reference.listener(user=user, now=NOW), "exploration")
    assert described(a) == described(b)


def test_tracks_made_on_arrays_equal_tracks_made_by_the_constructor(model, data, monkeypatch):
    from tastemaker.playlists import track_table
    from tastemaker.playlists.playlist import normalised

    library = Library(model)
    table = library.table
    frame = data.tracks.tracks
    items = np.asarray([5, 2, 9, 5])
    position, _, rows = table.rows_of(items)
    expected = [
        Track(
            item=int(items[p]),
            artist=library.item_artist[items[p]],
            credit=r["artist"] if r["artist"] != library.item_artist[items[p]] else None,
            title=r["title"],
            release=r["release"],
            recording_mbid=r["recording_mbid"],
            recording=r["recording"],
            reason="because",
            discovery=bool(p % 2),
            plays=r["plays"],
        )
        for p, r in zip(position.tolist(), frame[rows.tolist()].iter_rows(named=True), strict=True)
    ]
    # A cache smaller than one request's rows: cleared as it goes, the tracks unchanged.
    monkeypatch.setattr(track_table, "ROW_CACHE_ROWS", 7)
    for _ in range(2):  # cold, then from the cache
        made = table.tracks(items[position], rows, ["because"] * len(rows),
                            [bool(p % 2) for p in position.tolist()])  # fmt: skip
        assert made == expected
        assert [t.artist_key for t in made] == [normalised(t.artist) for t in expected]
        assert [hash(t) for t in made] == [hash(t) for t in expected]
        assert len(table._rows) <= len(rows)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made[0].title = "changed"  # type: ignore[misc]

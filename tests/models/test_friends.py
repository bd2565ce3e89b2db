"""The friendship relation (HetRec ``user_friends.dat``): read, kept through filters and saves,
and turned into the hybrid's ``friends`` features without leaking held-out listens."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.data.filters import subset_interactions
from tastemaker.data.interactions import Interactions
from tastemaker.data.load import load_interactions
from tastemaker.errors import ArtifactError, UsageError
from tastemaker.models import create_model, load_model
from tastemaker.models.features import Candidates, FeatureBuilder
from tastemaker.models.social import NAMES, FriendListening, FriendSignals


def write_hetrec(root, friends: list[tuple[str, str]]) -> None:
    root.mkdir()
    plays = [("1", "10", "5"), ("1", "11", "2"), ("2", "10", "7"), ("3", "12", "1")]
    plays += [("4", "11", "3")]
    (root / "user_artists.dat").write_text(
        "userID\tartistID\tweight\r\n" + "".join("\t".join(r) + "\r\n" for r in plays)
    )
    artists = "id\tname\turl\tpictureURL\n10\tA\t\t\n11\tB\t\t\n12\tC\t\t\n"
    (root / "artists.dat").write_text(artists)
    (root / "user_friends.dat").write_text(
        "userID\tfriendID\r\n" + "".join(f"{u}\t{f}\r\n" for u, f in friends)
    )


def test_the_hetrec_reader_loads_friends_and_they_survive_save_and_filters(tmp_path):
    # 9 has no listens (dropped), 1-1 is a self-pair (dropped), 1-2 is listed twice.
    write_hetrec(tmp_path / "h", [("1", "2"), ("2", "1"), ("1", "2"), ("1", "9"), ("1", "1")])
    data = load_interactions(tmp_path / "h")
    assert data.friends is not None and data.friends.shape == (4, 4)
    u = {name: data.users.index(name) for name in ("1", "2", "3", "4")}
    pairs = {(int(r), int(c)) for r, c in zip(*data.friends.nonzero(), strict=True)}
    assert pairs == {(u["1"], u["2"]), (u["2"], u["1"])}
    assert set(data.friends.data) == {1.0}

    loaded = Interactions.load(data.save(tmp_path / "saved"))
    assert loaded.friends is not None and (loaded.friends != data.friends).nnz == 0

    keep_users = np.ones(data.n_users, bool)
    keep_users[u["1"]] = False  # the friendship's one end leaves: nothing stays
    subset = subset_interactions(data, keep_users, np.ones(data.n_items, bool))
    assert subset.friends is not None and subset.friends.shape == (3, 3)
    assert subset.friends.nnz == 0


def test_ingest_keeps_the_friends(tmp_path):
    from tastemaker.data.ingest import ingest

    write_hetrec(tmp_path / "h", [("1", "2"), ("2", "1"), ("3", "4")])
    ingest([tmp_path / "h"], tmp_path / "out")
    data = Interactions.load(tmp_path / "out")
    assert data.friends is not None and data.friends.nnz == 3
    assert data.friends[data.users.index("3"), data.users.index("4")] == 1.0


def test_a_friends_file_with_bad_arrays_is_refused(tmp_path):
    write_hetrec(tmp_path / "h", [("1", "2")])
    saved = load_interactions(tmp_path / "h").save(tmp_path / "saved")
    arrays = dict(np.load(saved / "friends.npz"))
    arrays["indices"] = np.asarray([7], arrays["indices"].dtype)  # user 7 of 4
    np.savez(saved / "friends.npz", **arrays)
    with pytest.raises(ArtifactError):
        Interactions.load(saved, verify=False)


def _world(seed: int = 0):
    """Six users in two friend circles; items 0-9. Returns data with friends."""
    rng = np.random.default_rng(seed)
    dense = np.zeros((6, 10), np.float32)
    for user in range(6):
        dense[user, rng.choice(10, 4, replace=False)] = rng.integers(1, 20, 4)
    data = Interactions.from_arrays(
        [f"u{r}" for r in np.nonzero(dense)[0]],
        [f"i{c}" for c in np.nonzero(dense)[1]],
        dense[np.nonzero(dense)],
    )
    circle = [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5)]
    rows = [a for a, b in circle] + [b for a, b in circle]
    cols = [b for a, b in circle] + [a for a, b in circle]
    friends = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(6, 6))
    return dataclasses.replace(data, friends=friends)


def test_the_features_count_what_friends_played_from_the_fitted_matrix_only():
    data = _world()
    m = data.user_items.toarray()
    signals = FriendSignals(data.friends, data.user_items)
    users = np.asarray([0, 3])
    row = np.repeat([0, 1], 10)
    item = np.tile(np.arange(10), 2)
    count, share, play_share, _taste, lift, n_friends = signals.features(users, row, item)
    friends_of = {0: [1, 2], 3: [4, 5]}
    for k, (r, i) in enumerate(zip(row, item, strict=True)):
        circle = friends_of[int(users[r])]
        heard = sum(m[f, i] > 0 for f in circle)
        assert count[k] == pytest.approx(np.log1p(heard))
        assert share[k] == pytest.approx(heard / 2)
        logs = np.log1p(m[circle])
        expected = np.mean([logs[j, i] / logs[j].sum() for j in range(2)])
        assert play_share[k] == pytest.approx(expected, rel=1e-5)
        assert n_friends[k] == pytest.approx(np.log1p(2))
        listener_share = (m[:, i] > 0).mean()
        assert lift[k] == pytest.approx(np.log((heard + 1) / (2 * listener_share + 1)), rel=1e-5)

    # A friend's listen the builder was not fitted on (a held-out pair) never shows.
    held = data.user_items.tolil()
    friend_item = int(np.flatnonzero(m[1])[0])
    held[1, friend_item] = 0
    without = FriendSignals(data.friends, sp.csr_matrix(held))
    before = signals.features(users[:1], np.zeros(1, np.int64), np.asarray([friend_item]))
    after = without.features(users[:1], np.zeros(1, np.int64), np.asarray([friend_item]))
    assert after[1][0] == before[1][0] - 0.5
    # New listeners (fold-in) have no friends in the data: unknown, not zero.
    assert all(np.isnan(column).all() for column in signals.features(None, row, item))
    # A user outside the graph, beside a known one in the same block, has no friends: the
    # friends' figures are unknown and the number of friends is 0.
    mixed = signals.features(np.asarray([-1, 0]), np.asarray([0, 1]), np.asarray([2, 2]))
    assert all(np.isnan(column[0]) for column in mixed[:-1]) and mixed[-1][0] == 0.0
    assert not any(np.isnan(column[1]) for column in mixed)


def test_the_hybrid_uses_friends_where_the_data_has_them_and_saves_them(tmp_path):
    from test_hybrid import SMALL, clusters

    data, _ = clusters()
    # Friends within taste groups (users u, u + 4, u + 8 share a group).
    rows = np.arange(data.n_users - 4)
    friends = sp.csr_matrix(
        (np.ones(2 * len(rows), np.float32), (np.r_[rows, rows + 4], np.r_[rows + 4, rows])),
        shape=(data.n_users, data.n_users),
    )
    model = create_model("hybrid", **SMALL).fit(dataclasses.replace(data, friends=friends))
    assert set(NAMES) <= set(model.feature_names_)
    assert model.builder_.active[-1] == "friends"
    assert list(model.generators_)[-1] == "friends" and "friends_rank" in model.feature_names_
    loaded = load_model(model.save(tmp_path / "m"))
    users = np.arange(10)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    assert isinstance(loaded.generators_["friends"], FriendListening)
    plain = create_model("hybrid", **SMALL).fit(data)
    assert not set(NAMES) & set(plain.feature_names_) and "friends" not in plain.generators_


def test_a_builder_without_friends_in_the_data_leaves_the_group_out():
    data = _world()
    builder = FeatureBuilder(("popularity", "friends")).fit(dataclasses.replace(data, friends=None))
    assert builder.active == ["popularity"]
    candidates = Candidates(
        np.zeros(2, np.int64),
        np.asarray([1, 2]),
        *(np.zeros((2, 0), np.float32) for _ in range(3)),
    )
    with_friends = FeatureBuilder(("friends",)).fit(data)
    assert with_friends.build(data.user_items[:1], np.zeros(1, np.int64), candidates).shape == (
        2,
        len(NAMES),
    )


def test_the_social_generator_proposes_what_friends_play_and_nothing_for_new_listeners():
    data = _world()
    m = data.user_items.toarray()
    model = FriendListening().fit(data)
    scores = model._score_rows(data.user_items[[0, 3]], np.asarray([0, 3]))
    logs = np.log1p(m)
    share = logs / logs.sum(axis=1, keepdims=True)
    for r, friends in enumerate([[1, 2], [4, 5]]):
        expected = share[friends].sum(axis=0)
        played = m[friends].sum(axis=0) > 0
        np.testing.assert_allclose(scores[r, played], expected[played], rtol=1e-5)
        assert np.isneginf(scores[r, ~played]).all()
    assert np.isneginf(model._score_rows(data.user_items[:2], None)).all()
    with pytest.raises(UsageError, match="no friendship relation"):
        FriendListening().fit(dataclasses.replace(data, friends=None))

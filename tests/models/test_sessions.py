"""Session co-listening (ListenBrainz's similar-items method) and what it adds to the hybrid."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions, ListenEvents, Vocabulary, empty_metadata
from tastemaker.errors import UsageError
from tastemaker.models import create_model, load_model
from tastemaker.models.sessions import (
    SessionCoListen,
    item_groups,
    restrict_events,
    session_ids,
    session_pair_counts,
)

# Hand-made listens (user, item, start time in seconds).
#   user 0: items 0, 1, 2 a minute apart; 10 minutes later items 0, 1 again (a 2nd session).
#   user 1: items 0 and 1 together in three separate sessions (hours apart); item 3 alone.
LISTENS = [
    (0, 0, 0), (0, 1, 60), (0, 2, 120), (0, 0, 720), (0, 1, 780),
    (1, 0, 0), (1, 1, 30), (1, 0, 10_000), (1, 1, 10_030), (1, 1, 20_000), (1, 0, 20_040),
    (1, 3, 40_000),
]  # fmt: skip


def _arrays(listens=LISTENS):
    user, item, t = (np.asarray(c) for c in zip(*listens, strict=True))
    return user, item, t


def _pairs(result) -> dict[tuple[int, int], float]:
    return {
        (int(a), int(b)): float(c) for a, b, c in zip(result.a, result.b, result.count, strict=True)
    }


def test_a_gap_over_the_threshold_starts_a_new_session():
    user, _, t = _arrays()
    # Gap measured between start times (track_length 0): 600 s > 300 s splits user 0.
    ids = session_ids(user, t, session_gap=300, track_length=0)
    assert ids.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    # From the assumed end of the previous track (+ 180 s): 720 - 120 - 180 = 420 > 300 still
    # splits, and a wider threshold joins the two sessions of user 0.
    assert session_ids(user, t, 300, 180)[:5].tolist() == [0, 0, 0, 1, 1]
    assert session_ids(user, t, 500, 180)[:5].tolist() == [0, 0, 0, 0, 0]
    # A new user always starts a new session, however close in time.
    assert session_ids(np.array([0, 1]), np.array([0, 1]), 300, 0).tolist() == [0, 1]


def test_pair_counts_with_a_per_user_cap():
    user, item, t = _arrays()
    # Cap 2: user 0 has (0, 1) in 2 sessions, user 1 in 3 -> capped to 2; total 4.
    capped = session_pair_counts(user, item, t, 4, 300, 0, max_contribution=2)
    assert _pairs(capped) == {(0, 1): 4.0, (0, 2): 1.0, (1, 2): 1.0}
    # Cap 1 counts users: two users co-listened 0 and 1.
    once = session_pair_counts(user, item, t, 4, 300, 0, max_contribution=1)
    assert _pairs(once) == {(0, 1): 2.0, (0, 2): 1.0, (1, 2): 1.0}
    # Without a binding cap every session counts: 2 + 3.
    free = session_pair_counts(user, item, t, 4, 300, 0, max_contribution=100)
    assert _pairs(free)[(0, 1)] == 5.0
    # Item occurrences are capped the same way: item 0 in 2 + min(3, 2) sessions; item 3 once.
    assert capped.occurrences.tolist() == [4.0, 4.0, 1.0, 1.0]
    assert capped.n_sessions == 6


def test_repeated_listens_in_one_session_count_once_and_self_pairs_never():
    listens = [(0, 5, 0), (0, 5, 10), (0, 6, 20), (0, 5, 30), (0, 6, 40)]
    result = session_pair_counts(*_arrays(listens), 7, 300, 0, max_contribution=5)
    assert _pairs(result) == {(5, 6): 1.0}


def test_long_sessions_are_cut_into_chunks():
    listens = [(0, i, 10 * i) for i in range(6)]  # one session of 6 distinct items
    whole = session_pair_counts(*_arrays(listens), 6, 300, 0, max_session_items=10)
    assert len(whole.a) == 15  # 6 choose 2
    chunked = session_pair_counts(*_arrays(listens), 6, 300, 0, max_session_items=3)
    assert sorted(_pairs(chunked)) == [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)]


def test_pairs_by_the_same_artist_are_excluded_at_recording_level():
    metadata = pl.DataFrame(
        {"artist_name": ["Low", "LOW", "Can", None], "artist_mbid": [None, None, "m1", None]}
    )
    groups = item_groups(metadata)
    assert groups[0] == groups[1]  # names compared case-insensitively
    assert len(set(groups.tolist())) == 3  # the item without an artist is its own group
    listens = [(0, 0, 0), (0, 1, 10), (0, 2, 20), (0, 3, 30)]
    result = session_pair_counts(*_arrays(listens), 4, 300, 0, item_group=groups)
    assert (0, 1) not in _pairs(result)
    assert len(result.a) == 5


def test_restrict_events_keeps_only_training_pairs():
    events = ListenEvents(
        np.array([0, 0, 1, 1], np.int32), np.array([0, 1, 0, 2], np.int32), np.arange(4)
    )
    train = sp.csr_matrix(np.array([[1, 0, 0], [1, 0, 1]], np.float32))
    kept = restrict_events(events, train)
    assert list(zip(kept.user.tolist(), kept.item.tolist(), strict=True)) == [
        (0, 0),
        (1, 0),
        (1, 2),
    ]


def _with_events(listens, n_users: int, n_items: int, level: str = "artist") -> Interactions:
    user, item, t = _arrays(listens)
    counts = sp.csr_matrix((np.ones(len(user), np.float32), (user, item)), shape=(n_users, n_items))
    ids = [f"i{i}" for i in range(n_items)]
    base = Interactions(
        counts,
        users=Vocabulary([f"u{u}" for u in range(n_users)]),
        items=Vocabulary(ids),
        item_metadata=empty_metadata(ids),
        level=level,
    )
    order = np.lexsort((t, user))
    events = ListenEvents(
        user[order].astype(np.int32), item[order].astype(np.int32), t[order].astype(np.int64)
    )
    return dataclasses.replace(base, events=events)


def checkerboard_sessions() -> tuple[Interactions, np.ndarray]:
    """Even users play even items in sessions, odd users odd items; one item withheld each."""
    listens, withheld = [], []
    for u in range(12):
        liked = np.arange(u % 2, 10, 2)
        held = int(liked[(u // 2) % len(liked)])
        withheld.append(held)
        t = 0
        for _session in range(3):
            for i in liked[liked != held]:
                listens.append((u, int(i), t))
                t += 200
            t += 10_000
    return _with_events(listens, 12, 10), np.asarray(withheld)


def test_the_model_recommends_what_the_user_s_sessions_point_to(tmp_path):
    data, withheld = checkerboard_sessions()
    model = create_model("sessions", max_contribution=2).fit(data)
    users = np.arange(data.n_users)
    ids, _ = model.recommend(users, n=1)
    np.testing.assert_array_equal(ids[:, 0], withheld)
    folded, _ = model.recommend_for_history(data.user_items, n=1)
    np.testing.assert_array_equal(folded[:, 0], withheld)
    # Similar items stay within the parity class (co-listened), never the item itself.
    similar, scores = model.similar_items(np.array([0, 1]), n=3)
    assert set(similar[0][np.isfinite(scores[0])]) <= {2, 4, 6, 8}
    assert set(similar[1][np.isfinite(scores[1])]) <= {3, 5, 7, 9}
    # Batch equals one by one; save / load gives the same scores, without pickle.
    for u in users:
        np.testing.assert_array_equal(model.recommend(np.array([u]), n=3)[0][0],
                                      model.recommend(users, n=3)[0][u])  # fmt: skip
    loaded = load_model(model.save(tmp_path / "sessions"))
    assert isinstance(loaded, SessionCoListen)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))


def test_scores_are_weighted_history_times_similarity():
    data, _ = checkerboard_sessions()
    model = SessionCoListen(weighting="binary").fit(data)
    history = data.user_items[:3]
    expected = (history > 0).astype(np.float32) @ model.similarity_
    np.testing.assert_allclose(model.score_history(history), expected.toarray(), rtol=1e-6)


def test_events_of_pairs_outside_the_training_matrix_are_ignored():
    data, _ = checkerboard_sessions()
    # Add listens of user 0 to item 1 (odd: not in user 0's matrix row) inside its sessions.
    extra = ListenEvents(
        np.r_[data.events.user, np.zeros(3, np.int32)],
        np.r_[data.events.item, np.ones(3, np.int32)],
        np.r_[data.events.timestamp, np.array([100, 10_900, 21_700])],
    )
    order = np.lexsort((extra.timestamp, extra.user))
    leaky = dataclasses.replace(
        data, events=ListenEvents(extra.user[order], extra.item[order], extra.timestamp[order])
    )
    clean = SessionCoListen().fit(data)
    with_extra = SessionCoListen().fit(leaky)
    assert (clean.similarity_ != with_extra.similarity_).nnz == 0


def test_data_without_listen_times_is_refused_with_one_clear_line():
    data = Interactions.from_arrays(["a", "a", "b"], ["x", "y", "x"])
    with pytest.raises(UsageError, match="timestamps"):
        SessionCoListen().fit(data)


@pytest.fixture(scope="module")
def synthetic_split():
    from tastemaker.data.synth import synthetic_interactions
    from tastemaker.evaluation.splits import random_split

    return random_split(synthetic_interactions(users=300, artists=800, listens=60_000, seed=0))


def test_session_candidates_add_recall_on_synthetic_sessions(synthetic_split):
    from tastemaker.models.candidates import propose
    from tastemaker.models.sparse_rows import gather

    split = synthetic_split
    assert split.train.events is not None and len(split.train.events) > 0
    names = ["als", "itemknn", "ease", "popularity", "sessions"]
    generators = {n: create_model(n).fit(split.train) for n in names}
    users = split.test_users
    history, test = split.train.user_items[users], split.test[users]

    def recall(chosen: list[str], n: int = 20) -> float:
        cands, _ = propose({g: generators[g] for g in chosen}, history, users, n)
        return float((gather(test, cands.row, cands.item) > 0).sum() / test.nnz)

    without, with_sessions = recall(names[:-1]), recall(names)
    # Measured 0.424 -> 0.462 (top 20 per generator; 300 users, seed 0).
    assert with_sessions >= without + 0.02
    # Not merely more candidates: sessions alone rivals the best collaborative generator.
    assert recall(["sessions"]) >= 0.9 * max(recall([g]) for g in ("als", "itemknn", "ease"))


def test_counting_in_blocks_of_users_changes_nothing():
    rng = np.random.default_rng(4)
    user = np.repeat(np.arange(40), 50)
    item = rng.integers(0, 30, len(user))
    t = np.tile(np.cumsum(rng.integers(60, 900, 50)), 40)
    whole = session_pair_counts(user, item, t, 30, max_contribution=3)
    blocks = session_pair_counts(user, item, t, 30, max_contribution=3, block_listens=170)
    assert _pairs(whole) == _pairs(blocks) and len(whole.a) > 100
    np.testing.assert_array_equal(whole.occurrences, blocks.occurrences)
    assert whole.n_sessions == blocks.n_sessions

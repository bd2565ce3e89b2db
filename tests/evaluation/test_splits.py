"""Splits: exact hold-out counts, reproducibility, and no test interaction in training."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from tastemaker.data.interactions import UNKNOWN_TIME, Interactions
from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.schema import conform
from tastemaker.errors import UsageError
from tastemaker.evaluation.splits import (
    leave_last_out,
    make_split,
    make_splits,
    random_split,
    sampled_split,
    temporal_split,
    user_kfold,
)


def timed_interactions(n_users: int = 60, n_items: int = 80, seed: int = 3) -> Interactions:
    """Individual timestamped listens reduced to Interactions (with events and tags)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        heard = rng.choice(n_items, size=rng.integers(1, 30), replace=False)
        for item in heard:
            for _ in range(rng.integers(1, 4)):
                rows.append((f"u{u}", f"a{item}", int(rng.integers(1_200_000_000, 1_300_000_000))))
    frame = pl.DataFrame(
        {
            "user": [r[0] for r in rows],
            "artist_id": [r[1] for r in rows],
            "artist_name": [r[1] for r in rows],
            "listened_at": pl.Series([r[2] * 1000 for r in rows]).cast(pl.Datetime("ms", "UTC")),
        }
    )
    inter = interactions_from_listens(conform(frame.lazy()))
    assert inter.events is not None and inter.last_listened is not None
    return inter


@pytest.fixture(scope="module")
def timed() -> Interactions:
    return timed_interactions()


def pair_set(matrix: sp.csr_matrix) -> set[tuple[int, int]]:
    coo = matrix.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


def all_splits(inter: Interactions):
    yield random_split(inter)
    yield temporal_split(inter)
    yield temporal_split(inter, cutoff="2010-06-01")
    yield leave_last_out(inter)
    yield sampled_split(inter, negatives=20)
    yield from user_kfold(inter, folds=3)


def test_no_split_leaks_test_interactions_into_training(timed):
    original = pair_set(timed.user_items)
    last_of = dict(
        zip(
            zip(*timed.user_items.nonzero(), strict=True),
            timed.last_listened.tolist(),
            strict=True,
        )
    )
    for split in all_splits(timed):
        train, test = pair_set(split.train.user_items), pair_set(split.test)
        assert test, split.name
        assert not train & test, f"{split.name}: test pairs in the training matrix"
        assert train | test <= original
        events = split.train.events
        event_pairs = set(zip(events.user.tolist(), events.item.tolist(), strict=True))
        assert not event_pairs & test, f"{split.name}: test pairs in the training events"
        assert event_pairs == train, f"{split.name}: training events do not match the matrix"
        # last_listened stays aligned with the training matrix.
        t = split.train.user_items
        rows, cols = t.nonzero()
        expected = [last_of[(r, c)] for r, c in zip(rows.tolist(), cols.tolist(), strict=True)]
        assert split.train.last_listened.tolist() == expected
        if split.fold_in is not None:
            held = np.unique(split.test.nonzero()[0])
            assert split.train.user_items[held].nnz == 0, "held-out users still train"
            assert not pair_set(split.fold_in) & test
            assert pair_set(split.fold_in) | test == {p for p in original if p[0] in set(held)}
        elif split.params.get("cold_users_dropped"):
            assert train | test < original
        else:
            assert train | test == original


def test_tag_assignments_on_test_pairs_are_dropped(hetrec):
    split = random_split(hetrec)
    tags = split.train.tags
    keys = set(zip(tags.user.tolist(), tags.item.tolist(), strict=True))
    assert not keys & pair_set(split.test)
    full = set(zip(hetrec.tags.user.tolist(), hetrec.tags.item.tolist(), strict=True))
    assert full & pair_set(split.test), "HetRec has tags on some test pairs (else no check)"


def test_random_split_counts_are_exact_and_reproducible(hetrec):
    split = random_split(hetrec)
    lengths = np.diff(hetrec.user_items.indptr)
    expected = np.where(lengths >= 5, np.round(0.2 * lengths), 0)
    assert np.array_equal(np.diff(split.test.indptr), expected)
    assert split.train.nnz + split.test.nnz == hetrec.nnz
    assert set(np.unique(split.test.data)) == {1.0}
    # Play counts survive in training.
    dense_rows = hetrec.user_items[:50].toarray()
    train_rows = split.train.user_items[:50].toarray()
    assert np.all((train_rows == 0) | (train_rows == dense_rows))
    again = random_split(hetrec, seed=0)
    assert (again.test != split.test).nnz == 0
    other = random_split(hetrec, seed=1)
    assert (other.test != split.test).nnz > 0
    assert np.array_equal(split.test_users, np.flatnonzero(expected > 0))


def test_temporal_split_holds_out_each_users_latest(timed):
    split = temporal_split(timed, test_fraction=0.2)
    m = timed.user_items
    for u in range(timed.n_users):
        start, end = m.indptr[u], m.indptr[u + 1]
        times = timed.last_listened[start:end]
        test_items = split.test[u].indices
        assert len(test_items) == (round(0.2 * len(times)) if len(times) >= 5 else 0)
        if len(test_items):
            test_times = times[np.isin(m.indices[start:end], test_items)]
            train_times = times[~np.isin(m.indices[start:end], test_items)]
            assert test_times.min() >= train_times.max()


def test_temporal_cutoff_and_missing_timestamps(timed, hetrec):
    split = temporal_split(timed, cutoff="2010-06-01")
    at = 1275350400  # 2010-06-01T00:00:00Z
    rows, cols = split.test.nonzero()
    assert np.all(np.asarray(timed.user_items[rows, cols]).ravel() > 0)
    assert np.all(split.train.last_listened < at)
    assert split.params["cold_users_dropped"] > 0  # some users only listened after it
    assert set(np.unique(rows)) <= set(np.flatnonzero(np.diff(split.train.user_items.indptr)))
    with pytest.raises(UsageError, match="timestamps"):
        temporal_split(hetrec)
    with pytest.raises(UsageError, match="timestamps"):
        leave_last_out(hetrec)
    assert UNKNOWN_TIME < 0


def test_leave_last_out_and_sampled(timed, hetrec):
    split = leave_last_out(timed)
    assert np.all(np.diff(split.test.indptr) <= 1)
    for u in split.test_users[:20]:
        start, end = timed.user_items.indptr[u], timed.user_items.indptr[u + 1]
        item = split.test[u].indices[0]
        times = timed.last_listened[start:end]
        assert times[timed.user_items.indices[start:end] == item][0] == times.max()

    sampled = sampled_split(hetrec, negatives=50)
    assert sampled.params["holdout"] == "random"  # HetRec has no timestamps
    assert sampled.candidates.shape == (len(sampled.test_users), 51)
    assert "SAMPLED" in sampled.label
    for row, u in enumerate(sampled.test_users[:100]):
        cand = sampled.candidates[row]
        assert len(np.unique(cand)) == 51
        heard = set(hetrec.user_items[u].indices.tolist())
        test_item = sampled.test[u].indices[0]
        assert test_item in cand
        assert not (set(cand.tolist()) - {test_item}) & heard
    again = sampled_split(hetrec, negatives=50)
    assert np.array_equal(again.candidates, sampled.candidates)


def test_user_kfold_covers_every_eligible_user_once(hetrec):
    folds = make_splits(hetrec, "random", folds=4)
    assert len(folds) == 4
    seen = np.concatenate([f.test_users for f in folds])
    lengths = np.diff(hetrec.user_items.indptr)
    assert len(seen) == len(np.unique(seen)) == int((lengths >= 5).sum())
    for fold in folds:
        held = fold.test_users
        # The visible history plus the test items is the user's whole history.
        assert np.array_equal(
            np.diff(fold.fold_in.indptr)[held] + np.diff(fold.test.indptr)[held], lengths[held]
        )


def test_make_split_rejects_unknown_names(hetrec):
    with pytest.raises(UsageError, match="unknown split"):
        make_split(hetrec, "bogus")
    with pytest.raises(UsageError, match="folds"):
        make_splits(hetrec, "sampled", folds=3)
    with pytest.raises(UsageError, match="bad parameters"):
        make_split(hetrec, "random", fraction=0.3)

"""Filters: k-core against a brute-force reference, date range, bots, and the CLI options."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from tastemaker.cli import app
from tastemaker.data.filters import (
    Filters,
    apply_filters,
    apply_k_core,
    filter_table,
    k_core,
)
from tastemaker.data.interactions import Interactions
from tastemaker.data.listens import encode_listens
from tastemaker.data.pairs import interactions_from_table
from tastemaker.data.schema import conform
from tastemaker.errors import UsageError

DAY = 86_400
T0 = 1_600_000_000  # 2020-09-13


def brute_force_core(dense: np.ndarray, min_user_items: int, min_item_users: int):
    users = np.ones(dense.shape[0], bool)
    items = np.ones(dense.shape[1], bool)
    while True:
        sub = dense[np.ix_(users, items)] > 0
        drop_users = np.flatnonzero(users)[sub.sum(axis=1) < min_user_items]
        drop_items = np.flatnonzero(items)[sub.sum(axis=0) < min_item_users]
        if not len(drop_users) and not len(drop_items):
            return users, items
        users[drop_users] = False
        items[drop_items] = False


@pytest.mark.parametrize("seed", range(5))
def test_k_core_is_the_largest_subset_meeting_both_minimums(seed):
    rng = np.random.default_rng(seed)
    dense = (rng.random((60, 80)) < rng.uniform(0.03, 0.12)) * rng.integers(1, 9, (60, 80))
    matrix = sp.csr_matrix(dense.astype(np.float32))
    users, items = k_core(matrix, 3, 2)
    expected_users, expected_items = brute_force_core(dense, 3, 2)
    np.testing.assert_array_equal(users, expected_users)
    np.testing.assert_array_equal(items, expected_items)


def test_apply_k_core_keeps_everything_aligned(hetrec):
    core, step = apply_k_core(hetrec, 5, 5)
    m = core.user_items
    assert (np.diff(m.indptr) >= 5).all() and (np.diff(m.tocsc().indptr) >= 5).all()
    assert step.users == hetrec.n_users - core.n_users
    assert step.items == hetrec.n_items - core.n_items
    assert step.interactions == hetrec.nnz - core.nnz
    # A kept cell has the same play count as before.
    user, item = core.users.id(0), core.items.id(int(m.indices[0]))
    before = hetrec.user_items[hetrec.users.index(user), hetrec.items.index(item)]
    assert m[0, m.indices[0]] == before
    assert core.tags.item.max() < core.n_items and core.tags.user.max() < core.n_users
    assert core.item_metadata["item"].to_list() == core.items.to_list()


def listens(rows: list[tuple[str, str, int]]) -> pl.LazyFrame:
    frame = pl.DataFrame(
        {
            "user": [r[0] for r in rows],
            "artist_name": [r[1] for r in rows],
            "listened_at": pl.Series([r[2] * 1000 for r in rows]).cast(pl.Datetime("ms", "UTC")),
        }
    )
    return conform(frame.lazy())


def test_date_range_start_inclusive_end_exclusive():
    table = encode_listens(
        listens([("u1", "A", T0 - 1), ("u1", "B", T0), ("u2", "A", T0 + DAY), ("u2", "C", T0 + 5)])
    )
    start = datetime.fromtimestamp(T0, UTC)
    end = datetime.fromtimestamp(T0 + DAY, UTC)
    kept, steps = filter_table(table, Filters(start=start, end=end))
    assert kept.listens == 2
    assert sorted(kept.items.to_list()) == ["b", "c"]
    assert (steps[0].listens, steps[0].users, steps[0].items) == (2, 0, 1)
    assert kept.time.min() >= T0 and kept.time.max() < T0 + DAY


def test_bot_users_are_dropped_entirely():
    human = [("human", f"artist {i}", T0 + i * 200) for i in range(60)]
    bot = [("bot", "A", T0 + DAY * 3 + i) for i in range(101)]  # 101 on one day
    busy_but_spread = [("night owl", "A", T0 + (i % 3) * DAY + i) for i in range(150)]
    table = encode_listens(listens(human + bot + busy_but_spread))
    kept, steps = filter_table(table, Filters(max_listens_per_day=100))
    assert kept.users.to_list() == ["human", "night owl"]
    assert steps[0].listens == 101 and steps[0].users == 1
    inter = interactions_from_table(kept)
    assert inter.user_items.sum() == 210


def test_filters_on_interactions_through_events():
    rows = [("u1", "A", T0), ("u1", "A", T0 + 10 * DAY), ("u2", "B", T0), ("u2", "A", T0)]
    inter = interactions_from_table(encode_listens(listens(rows)))
    start = datetime.fromtimestamp(T0 + DAY, UTC)
    filtered, report = apply_filters(inter, Filters(start=start))
    assert filtered.users.to_list() == ["u1"] and filtered.user_items.sum() == 1
    assert report.steps[0].listens == 3
    counted = Interactions.from_arrays(["u1"], ["A"], [5])
    with pytest.raises(UsageError, match="ingest"):
        apply_filters(counted, Filters(max_listens_per_day=3))


def test_filter_settings_are_checked():
    with pytest.raises(UsageError):
        Filters(min_user_items=0)
    with pytest.raises(UsageError):
        Filters(start=datetime(2021, 1, 1, tzinfo=UTC), end=datetime(2020, 1, 1, tzinfo=UTC))


def test_cli_filters(tmp_path, listenbrainz_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(
        app,
        [
            "ingest",
            str(listenbrainz_path),
            "--out",
            str(out),
            "--start",
            "2021-07-01",
            "--end",
            "2021-07-31",
            "--max-listens-per-day",
            "1000",
            "--min-user-items",
            "2",
            "--listens",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "date range" in result.stdout and "bots" in result.stdout and "k-core" in result.stdout
    inter = Interactions.load(out)
    # --end is a whole day: listens of 2021-07-31 are in, August is out.
    frame = pl.read_parquet(out / "listens.parquet")
    july = frame.filter(pl.col("listened_at").dt.strftime("%Y-%m") == "2021-07").height
    assert len(inter.events) == july == 38
    bad = CliRunner().invoke(
        app, ["ingest", str(listenbrainz_path), "--out", str(out), "--start", "x"]
    )
    assert bad.exit_code != 0

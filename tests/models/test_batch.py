"""The nightly batch (``recommend --all``): the file holds exactly the per-user lists."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from tastemaker.artifacts import output_kind
from tastemaker.data.interactions import UNKNOWN_TIME
from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.models.ann import BatchFactorIndex, IndexSettings, recall
from tastemaker.models.batch import (
    RECOMMENDATIONS_KIND,
    ExactRanker,
    write_recommendations,
)

PARAMS = {
    "popularity": {},
    "als": {"factors": 8, "iterations": 5, "seed": 0},
    "bpr": {"factors": 8, "iterations": 20, "seed": 0},
    "itemknn": {"neighbours": 20},
    "userknn": {"neighbours": 10},
    "ease": {"regularization": 5.0, "min_listeners": 1},
}
N = 15


@pytest.fixture(scope="module")
def data():
    return synthetic_interactions(users=90, artists=400, listens=9000, seed=3)


@pytest.fixture(scope="module")
def models(data):
    return {name: create_model(name, **params).fit(data) for name, params in PARAMS.items()}


def lists(path) -> dict[str, list[tuple[str, float]]]:
    frame = pl.read_parquet(path).sort("user", "rank")
    out: dict[str, list] = {}
    for user, item, score in frame.select("user", "item", "score").iter_rows():
        out.setdefault(user, []).append((item, score))
    return out


@pytest.mark.parametrize("name", list(PARAMS))
def test_the_batch_equals_recommend_one_user_at_a_time(name, models, data, tmp_path):
    model = models[name]
    path = write_recommendations(model, tmp_path / "recs.parquet", N, block_users=16).path
    written = lists(path)
    assert len(written) == data.n_users
    for user in range(data.n_users):
        ids, scores = model.recommend(np.array([user]), N)
        keep = ids[0] >= 0
        expected = [data.items.id(i) for i in ids[0][keep]]
        got = written[data.users.id(user)]
        assert [item for item, _ in got] == expected
        np.testing.assert_allclose([s for _, s in got], scores[0][keep], rtol=1e-5, atol=1e-6)
        heard = set(data.user_items[user].indices.tolist())
        assert not heard & {data.items.index(item) for item, _ in got}


class CountingRanker(ExactRanker):
    def __init__(self, model):
        super().__init__(model)
        self.sizes: list[int] = []

    def rank(self, users, n, exclude_heard):
        self.sizes.append(len(users))
        return super().rank(users, n, exclude_heard)


def test_users_are_ranked_and_written_in_bounded_blocks(models, data, tmp_path):
    ranker = CountingRanker(models["als"])
    done: list[int] = []
    path = tmp_path / "recs.parquet"
    write_recommendations(models["als"], path, N, ranker, block_users=20, on_block=done.append)
    assert max(ranker.sizes) == 20 and sum(ranker.sizes) == data.n_users
    assert done == [20, 40, 60, 80, 90]
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 5
    assert max(parquet.metadata.row_group(i).num_rows for i in range(5)) <= 20 * N
    assert output_kind(path) == RECOMMENDATIONS_KIND


def test_keep_heard_flags_heard_items_with_their_last_listened_time(models, data, tmp_path):
    model = models["als"]
    path = tmp_path / "recs.parquet"
    write_recommendations(model, path, N, keep_heard=True, block_users=32)
    frame = pl.read_parquet(path).sort("user", "rank")
    assert frame["heard"].sum() > data.n_users  # ALS ranks heard artists high
    position = {(u, i): p for u in range(data.n_users) for p, i in _row_items(data, u)}
    for user_id, item_id, heard, last in frame.select(
        "user", "item", "heard", "last_listened"
    ).iter_rows():
        key = (data.users.index(user_id), data.items.index(item_id))
        assert heard == (key in position)
        if heard:
            expected = data.last_listened[position[key]]
            assert expected != UNKNOWN_TIME and int(last.timestamp()) == expected
        else:
            assert last is None
    ids, _ = model.recommend(np.arange(data.n_users), N, exclude_heard=False)
    first = frame.filter(pl.col("user") == data.users.id(0))["item"].to_list()
    assert first == [data.items.id(i) for i in ids[0]]


def _row_items(data, user):
    start, end = data.user_items.indptr[user], data.user_items.indptr[user + 1]
    return zip(range(start, end), data.user_items.indices[start:end], strict=True)


def test_the_faiss_index_finds_the_exact_lists_and_never_a_heard_item(models, data):
    model = models["als"]
    # A small head sends most users to the HNSW tier too.
    index = BatchFactorIndex(model, IndexSettings(head_items=40, ef_search=64))
    users = np.arange(data.n_users)
    assert recall(model, index, users, N) >= 0.95
    assert index.tail_queries > 0
    ids, scores = index.rank(users, N, exclude_heard=True)
    for user in users:
        assert not set(ids[user].tolist()) & set(data.user_items[user].indices.tolist())
        assert np.all(np.diff(scores[user]) <= 1e-6)  # best first


def test_the_cli_writes_replaces_and_refuses_like_every_output(models, tmp_path, capsys):
    model_dir = models["ease"].save(tmp_path / "ease")
    out = tmp_path / "recs.parquet"
    run = ["recommend", str(model_dir), "--all", "--n", "5", "--out", str(out)]
    assert run_cli(capsys, *run)[0] == 0
    assert pl.read_parquet(out).height == 5 * models["ease"].interactions_.n_users
    code, _, _ = run_cli(capsys, *run, "--keep-heard", "--block-users", "7")
    assert code == 0  # an output of its own kind is replaced
    assert "heard" in pl.read_parquet(out).columns
    foreign = tmp_path / "mine.parquet"
    foreign.write_bytes(b"PAR1 not ours")
    code, _, err = run_cli(capsys, *run[:-1], str(foreign))
    assert code == 2 and "--force" in err
    assert foreign.read_bytes() == b"PAR1 not ours"
    code, _, err = run_cli(capsys, *run, "--index", "faiss")
    assert code == 2 and "factor model" in err  # EASE has no factors
    assert run_cli(capsys, *run, "--user", "1")[0] == 2
    code, _, err = run_cli(capsys, "recommend", str(model_dir), "--user", "1", "--keep-heard")
    assert code == 2 and "--all" in err
    code, _, err = run_cli(capsys, *run[:-2])
    assert code == 2 and "--out" in err


class FailingRanker(ExactRanker):
    def rank(self, users, n, exclude_heard):
        if users[0] > 0:
            raise RuntimeError("killed mid-batch")
        return super().rank(users, n, exclude_heard)


def test_a_batch_that_fails_midway_leaves_the_old_file_and_no_leftovers(models, tmp_path):
    path = tmp_path / "recs.parquet"
    write_recommendations(models["als"], path, N, block_users=30)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="mid-batch"):
        write_recommendations(models["als"], path, 5, FailingRanker(models["als"]), block_users=30)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recs.parquet"]

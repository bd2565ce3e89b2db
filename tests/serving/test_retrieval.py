"""Retrieval for the service: the exact path and the norm-ranged faiss index (recall, filtering)."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from tastemaker.data.interactions import Interactions
from tastemaker.models import create_model
from tastemaker.models.base import FactorModel, Recommender
from tastemaker.serving.retrieval import (
    TOP_GROUPS,
    AnnSettings,
    ExactRetriever,
    FactorIndex,
    build_retriever,
    top_candidates,
)


class PureSVD(Recommender, FactorModel):
    """Truncated SVD of log plays (Cremonesi et al.'s PureSVD): a small exact factor model, so
    that these tests check retrieval independently of how ALS is trained."""

    name = "puresvd-test"

    def __init__(self, factors: int = 16) -> None:
        self.factors = factors

    def _fit(self, interactions: Interactions) -> None:
        matrix = interactions.user_items.copy()
        matrix.data = np.log1p(matrix.data)
        u, s, vt = svds(matrix.astype(np.float64), k=self.factors, random_state=0)
        self.user_factors_ = (u * s).astype(np.float32)
        self.item_factors_ = vt.T.astype(np.float32)

    def user_vectors(self, users):
        return self.user_factors_[users]

    def history_vectors(self, history):
        h = sp.csr_matrix(history, dtype=np.float32)
        h.data = np.log1p(h.data)
        return np.asarray(h @ self.item_factors_, dtype=np.float32)

    def item_vectors(self):
        return self.item_factors_

    def _score_rows(self, history, users):
        vectors = self.history_vectors(history) if users is None else self.user_vectors(users)
        return vectors @ self.item_factors_.T

    def _similar(self, items):
        unit = self.item_factors_ / np.maximum(
            np.linalg.norm(self.item_factors_, axis=1, keepdims=True), 1e-12
        )
        return unit[items] @ unit.T


def _interactions(users=600, items=3000, per_user=40, seed=0) -> Interactions:
    """Users with one of 30 tastes listening to popular items of their taste (Zipf counts)."""
    rng = np.random.default_rng(seed)
    taste_of_item = rng.integers(0, 30, items)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    rows, cols = [], []
    for user in range(users):
        taste = rng.integers(0, 30)
        weights = popularity * np.where(taste_of_item == taste, 20.0, 1.0)
        chosen = rng.choice(items, per_user, replace=False, p=weights / weights.sum())
        rows += [f"u{user}"] * per_user
        cols += [f"i{c}" for c in chosen]
    counts = rng.zipf(2.0, len(rows)).clip(1, 500)
    return Interactions.from_arrays(rows, cols, counts)


@pytest.fixture(scope="module")
def model():
    return PureSVD(factors=16).fit(_interactions())


def _recall(index, model, users, n=10) -> float:
    exact, _ = model.recommend(users, n, exclude_heard=True)
    hits = 0
    for row, user in zip(exact, users, strict=True):
        ids, _ = index.for_user(int(user), n, True)
        hits += len(np.intersect1d(ids, row))
    return hits / (n * len(users))


def test_small_catalogues_and_non_factor_models_are_served_exactly(model):
    assert isinstance(build_retriever(model, ann_threshold=10**6), ExactRetriever)
    popularity = create_model("popularity").fit(_interactions(users=50, items=200))
    assert isinstance(build_retriever(popularity, ann_threshold=1), ExactRetriever)
    exact = ExactRetriever(model)
    ids, scores = exact.for_user(3, 10, True)
    ref_ids, ref_scores = model.recommend(np.asarray([3]), 10, True)
    np.testing.assert_array_equal(ids, ref_ids[0])
    np.testing.assert_allclose(scores, ref_scores[0])


def test_head_only_index_equals_exact_scoring(model):
    # Every item in the exact flat tier: the answer must be the exact one, scores included.
    index = FactorIndex(model, AnnSettings(head_items=model.n_items_))
    assert index.tail is None
    users = np.arange(0, 600, 7)
    exact_ids, exact_scores = model.recommend(users, 10, exclude_heard=True)
    for user, ref_ids, ref_scores in zip(users, exact_ids, exact_scores, strict=True):
        ids, scores = index.for_user(int(user), 10, True)
        np.testing.assert_array_equal(ids, ref_ids)  # the same items in the same order
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)


def test_the_head_keeps_no_mark_of_the_last_query(model):
    # The head is scored into a buffer kept per thread, heard rows set to -inf: the next
    # query (heard items allowed back, or another user) must not see those marks.
    index = FactorIndex(model, AnnSettings(head_items=model.n_items_))
    user = 5
    heard = model.user_items_[user].indices
    excluded, _ = index.for_user(user, 30, exclude_heard=True)
    assert not np.isin(excluded, heard).any()
    allowed, scores = index.for_user(user, 30, exclude_heard=False)
    ref_ids, ref_scores = model.recommend(np.asarray([user]), 30, exclude_heard=False)
    np.testing.assert_array_equal(allowed, ref_ids[0])
    np.testing.assert_allclose(scores, ref_scores[0], rtol=1e-4, atol=1e-5)
    assert np.isin(allowed, heard).any()
    # A user who heard almost every head item: the few left come back, then padding.
    tiny = PureSVD(factors=4).fit(_interactions(users=40, items=60, per_user=10, seed=1))
    index = FactorIndex(tiny, AnnSettings(head_items=tiny.n_items_))
    for user in range(5):
        heard = tiny.user_items_[user].indices
        ids, scores = index.for_user(user, 55, exclude_heard=True)
        assert (ids >= 0).sum() == tiny.n_items_ - len(heard)
        assert not np.isin(ids, heard).any() and np.isneginf(scores[ids < 0]).all()


def test_two_tier_index_recall_and_heard_items_excluded(model):
    # A small exact head forces many queries through the HNSW tail.
    index = build_retriever(
        model, ann_threshold=100, settings=AnnSettings(head_items=50, hnsw_m=16), recall_users=200
    )
    assert isinstance(index, FactorIndex)
    assert index.tail is not None and index.tail.ntotal == model.n_items_ - 50
    assert index.recall_at_10 is not None and index.recall_at_10 >= 0.95
    assert 0.0 < index.tail_share <= 1.0  # the tail was actually searched
    # Independent check on other users than the ones sampled at build time.
    users = np.arange(1, 600, 5)
    assert _recall(index, model, users) >= 0.95
    for user in users[:40]:
        ids, scores = index.for_user(int(user), 20, exclude_heard=True)
        heard = model.user_items_[user].indices
        assert not np.isin(ids, heard).any()
        assert (ids >= 0).all() and len(set(ids.tolist())) == 20
        assert np.all(np.diff(scores) <= 1e-6)  # best first


def test_including_heard_items_and_history_queries(model):
    index = FactorIndex(model, AnnSettings(head_items=200))
    user = 11
    heard = model.user_items_[user].indices
    ids, _ = index.for_user(user, 50, exclude_heard=False)
    ref, _ = model.recommend(np.asarray([user]), 50, exclude_heard=False)
    assert len(np.intersect1d(ids, ref[0])) >= 45
    assert np.isin(ids, heard).any()  # heard items are allowed back in
    history = model.user_items_[user]
    h_ids, _ = index.for_history(history, 10, exclude_heard=True)
    ref_ids, _ = model.recommend_for_history(history, 10)
    assert not np.isin(h_ids, heard).any()
    assert len(np.intersect1d(h_ids, ref_ids[0])) >= 9


def test_the_heard_filter_leaves_nothing_behind_for_the_next_query(model):
    # The heard items are marked in a mask kept per thread and cleared after each search: a
    # mark left behind would hide those items from every later query of that thread.
    index = build_retriever(
        model, ann_threshold=100, settings=AnnSettings(head_items=50), recall_users=0
    )
    user = 3
    heard = model.user_items_[user].indices
    first, _ = index.for_user(user, 50, exclude_heard=True)
    assert not np.isin(first, heard).any()
    assert not index._heard_mask().any()
    again, _ = index.for_user(user, 50, exclude_heard=False)
    ref, _ = model.recommend(np.asarray([user]), 50, exclude_heard=False)
    assert len(np.intersect1d(again, ref[0])) >= 45 and np.isin(again, heard).any()
    # Another thread has a mask of its own and gets the same answer.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        other, _ = pool.submit(index.for_user, user, 50, True).result()
    np.testing.assert_array_equal(other, first)


def test_asking_for_more_than_the_catalogue_pads(model):
    index = FactorIndex(model, AnnSettings(head_items=100))
    n = model.n_items_ + 5
    # Over the fetch limit the index defers to exact scoring, which pads with -1 / -inf.
    ids, scores = index.for_user(0, n, exclude_heard=True)
    heard = len(model.user_items_[0].indices)
    assert (ids >= 0).sum() == model.n_items_ - heard
    assert np.isneginf(scores[ids < 0]).all()
    small = PureSVD(factors=4).fit(_interactions(users=40, items=60, per_user=10, seed=1))
    tiny = FactorIndex(small, AnnSettings(head_items=10, hnsw_m=8))
    ids, scores = tiny.for_user(0, 60, exclude_heard=True)
    assert (ids >= 0).sum() == small.n_items_ - len(small.user_items_[0].indices)
    assert len(set(ids[ids >= 0].tolist())) == (ids >= 0).sum()


def _top_by_argpartition(scores: np.ndarray, k: int) -> np.ndarray:
    """What ``FactorIndex._head`` picked before ``top_candidates``: argpartition's top k."""
    return np.sort(np.argpartition(scores, len(scores) - k)[len(scores) - k :])


@pytest.mark.parametrize("size", [10, 500, 4 * TOP_GROUPS, 8192, 8191, 20_000])
@pytest.mark.parametrize("k", [1, 10, 33, 100, 1000])
def test_top_candidates_hold_the_top_k(size, k):
    rng = np.random.default_rng(size * 7 + k)
    for trial in range(20):
        k_ = min(k, size)
        scores = rng.standard_normal(size).astype(np.float32)
        if trial % 4 == 1:  # heard items: rows set to -inf, as the head does
            scores[rng.choice(size, size // 3, replace=False)] = -np.inf
        if trial % 4 == 2:  # sorted by norm like the head: groups must not be contiguous
            scores = np.sort(scores)[::-1].copy()
        if trial % 4 == 3:  # ties, of the k-th among them
            scores = np.round(scores, 1)
        found = top_candidates(scores, k_)
        assert len(np.unique(found)) == len(found) >= k_
        kth = np.sort(scores)[size - k_]
        # Every score from the k-th up (ties included), maybe a few below: what _head then
        # orders by (score, item) gives the same top k as ordering all the scores.
        assert set(np.flatnonzero(scores >= kth).tolist()) <= set(found.tolist())
        best = found[np.lexsort((found, -scores[found]))[:k_]]
        assert np.array_equal(best, np.lexsort((np.arange(size), -scores))[:k_])
        if trial % 4 != 3:  # distinct scores: exactly argpartition's top k
            assert np.array_equal(np.sort(best), _top_by_argpartition(scores, k_))


def test_top_candidates_with_nan_fall_back_to_argpartition():
    scores = np.arange(8192, dtype=np.float32)
    scores[::100] = np.nan
    assert np.array_equal(np.sort(top_candidates(scores, 10)), _top_by_argpartition(scores, 10))

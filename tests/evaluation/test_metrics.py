"""Ranking metrics against hand-computed values and a brute-force per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions, Vocabulary, empty_metadata
from tastemaker.evaluation.metrics import metric_names, ranking_metrics
from tastemaker.evaluation.splits import Split
from tastemaker.models.base import Recommender


class FixedScores(Recommender):
    """A 'model' whose scores are a given matrix (users x items)."""

    name = "fixed"

    def __init__(self, table: np.ndarray | None = None) -> None:
        self.table = table

    def _fit(self, interactions: Interactions) -> None:
        pass

    def _score_rows(self, history, users):
        if users is None:  # fold-in: score by the history's first column to have something
            return np.tile(self.table[0], (history.shape[0], 1)).astype(np.float32)
        return self.table[users].astype(np.float32)

    def _similar(self, items):
        return np.zeros((len(items), self.table.shape[1]), np.float32)


def make_split(train_rows, test_rows, n_items, candidates=None) -> Split:
    n_users = len(train_rows)

    def csr(rows):
        r = [u for u, items in enumerate(rows) for _ in items]
        c = [i for items in rows for i in items]
        return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_users, n_items))

    ids = [f"i{i}" for i in range(n_items)]
    train = Interactions(
        csr(train_rows),
        Vocabulary([f"u{u}" for u in range(n_users)]),
        Vocabulary(ids),
        empty_metadata(ids),
    )
    return Split(train, csr(test_rows), "handmade", {}, candidates=candidates)


def evaluate(table, split, ks=(3,), **kw):
    model = FixedScores(np.asarray(table, np.float64)).fit(split.train)
    return ranking_metrics(model, split, ks=ks, **kw)


HAND_SCORES = [
    [9, 5, 4, 4, 1, 3],  # user 0: history {0}; ranks 1, 2, 3 (tie -> lower index), 5, 4
    [1, 1, 1, 1, 1, 1],  # user 1: history {1}; all tied -> index order 0, 2, 3, 4, 5
    [0, 0, 0, 0, 0, 0],  # user 2: training only
]
HAND_SPLIT = ([[0], [1], [0]], [[2, 5], [0], []])


def test_hand_computed_values_at_k3():
    split = make_split(*HAND_SPLIT, n_items=6)
    m = evaluate(HAND_SCORES, split, ks=(3,))
    l3 = 1 / math.log2(3)
    # user 0: top-3 = [1, 2, 3], one hit at rank 2, two test items.
    u0 = {
        "precision@3": 1 / 3,
        "recall@3": 1 / 2,
        "ndcg@3": l3 / (1 + l3),
        "map@3": (1 / 2) / 2,
        "hit_rate@3": 1.0,
        "mrr@3": 1 / 2,
    }
    # user 1: top-3 = [0, 2, 3], hit at rank 1, one test item.
    u1 = {
        "precision@3": 1 / 3,
        "recall@3": 1.0,
        "ndcg@3": 1.0,
        "map@3": 1.0,
        "hit_rate@3": 1.0,
        "mrr@3": 1.0,
    }
    for key in u0:
        assert m[key] == pytest.approx((u0[key] + u1[key]) / 2), key
    # AUC user 0: positives 2 (4), 5 (3) vs negatives 1 (5), 3 (4), 4 (1):
    # (2,1)=0 (2,3)=.5 (2,4)=1 (5,1)=0 (5,3)=0 (5,4)=1 -> 2.5 / 6; user 1: all ties -> 0.5.
    assert m["auc"] == pytest.approx((2.5 / 6 + 0.5) / 2)
    # Recommended: {1, 2, 3} and {0, 2, 3} -> 4 of 6 items.
    assert m["coverage@3"] == pytest.approx(4 / 6)
    # Listeners in training: item 0 by 2 of 3 users, item 1 by 1, others none (counted as 1).
    info = {0: -math.log2(2 / 3), 1: -math.log2(1 / 3)}
    bit = -math.log2(1 / 3)
    u0_nov = (info[1] + bit + bit) / 3
    u1_nov = (info[0] + bit + bit) / 3
    assert m["novelty@3"] == pytest.approx((u0_nov + u1_nov) / 2)
    assert list(m) == metric_names([3])


def test_fewer_test_items_than_k():
    split = make_split(*HAND_SPLIT, n_items=6)
    m = evaluate(HAND_SCORES, split, ks=(5,))
    l3, l5 = 1 / math.log2(3), 1 / math.log2(5)
    # user 0: top-5 = [1, 2, 3, 5, 4], hits at 2 and 4; ideal DCG over min(5, 2) = 2.
    u0_ndcg = (l3 + l5) / (1 + l3)
    u0_map = (1 / 2 + 2 / 4) / 2
    assert m["ndcg@5"] == pytest.approx((u0_ndcg + 1.0) / 2)
    assert m["map@5"] == pytest.approx((u0_map + 1.0) / 2)
    assert m["precision@5"] == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert m["recall@5"] == pytest.approx(1.0)


def test_k_larger_than_candidates_pads_without_hits():
    split = make_split([[0, 1, 2, 3], [0]], [[4], [1]], n_items=5)
    m = evaluate([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]], split, ks=(3, 10))
    assert m["hit_rate@10"] == 1.0
    assert m["precision@10"] == pytest.approx(0.1)
    assert m["ndcg@3"] == pytest.approx(1.0)


def brute_force(table, train_rows, test_rows, k):
    """Per-user loops straight from the definitions (ties broken by the lower index)."""
    sums = dict.fromkeys(["precision", "recall", "ndcg", "map", "hit_rate", "mrr", "auc"], 0.0)
    users = [u for u, t in enumerate(test_rows) if t]
    for u in users:
        history, test = set(train_rows[u]), set(test_rows[u])
        cands = [i for i in range(table.shape[1]) if i not in history]
        ranked = sorted(cands, key=lambda i: (-table[u, i], i))[:k]
        hits = [i in test for i in ranked]
        n_hits = sum(hits)
        sums["precision"] += n_hits / k
        sums["recall"] += n_hits / len(test)
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(test))))
        sums["ndcg"] += dcg / idcg
        ap, seen = 0.0, 0
        for r, h in enumerate(hits):
            if h:
                seen += 1
                ap += seen / (r + 1)
        sums["map"] += ap / min(k, len(test))
        sums["hit_rate"] += float(n_hits > 0)
        sums["mrr"] += next((1 / (r + 1) for r, h in enumerate(hits) if h), 0.0)
        negs = table[u, [i for i in cands if i not in test]]
        correct = [(negs < table[u, p]).sum() + 0.5 * (negs == table[u, p]).sum() for p in test]
        sums["auc"] += sum(correct) / (len(test) * len(negs))
    return {
        (f"{name}@{k}" if name != "auc" else name): value / len(users)
        for name, value in sums.items()
    }


@pytest.mark.parametrize(
    "seed, n_items, max_items, levels",
    [
        (0, 30, 15, 4),  # exact top-k path, lots of ties
        (1, 30, 15, 4),
        (2, 9000, 120, 3),  # sampled-threshold top-k; users with > 32 test items (sort path)
        (3, 9000, 120, None),  # continuous scores
    ],
)
def test_matches_brute_force_reference(seed, n_items, max_items, levels):
    rng = np.random.default_rng(seed)
    n_users = 40
    train_rows, test_rows = [], []
    for _ in range(n_users):
        items = rng.permutation(n_items)[: rng.integers(0, max_items)]
        cut = rng.integers(0, len(items) + 1)
        train_rows.append(sorted(items[:cut].tolist()))
        test_rows.append(sorted(items[cut:].tolist()))
    if levels is None:
        table = rng.standard_normal((n_users, n_items)).astype(np.float32)
    else:
        table = rng.integers(0, levels, size=(n_users, n_items)).astype(np.float64)
        table[:, ::7] = 5.0  # a block of ties at the very top
    split = make_split(train_rows, test_rows, n_items)
    expected = brute_force(table, train_rows, test_rows, 5)
    for batch in (7, None):
        ours = evaluate(table, split, ks=(5,), batch_size=batch)
        for key, value in expected.items():
            assert ours[key] == pytest.approx(value), (key, batch)


def test_sampled_candidates_rank_only_their_list():
    # One user, 8 items; test item 3, candidates {1, 3, 6}: only those compete.
    candidates = np.array([[1, 3, 6]])
    split = make_split([[0]], [[3]], n_items=8, candidates=candidates)
    scores = [[9, 1, 8, 5, 9, 9, 2, 9]]  # items 2, 4, 5, 7 outrank 3 but are not candidates
    m = evaluate(scores, split, ks=(1, 2))
    assert m["hit_rate@1"] == 1.0
    assert m["ndcg@1"] == 1.0
    assert m["auc"] == 1.0
    assert m["coverage@1"] == pytest.approx(1 / 8)
    scores = [[9, 6, 8, 5, 9, 9, 2, 9]]  # now item 1 beats the test item
    m = evaluate(scores, split, ks=(1, 2))
    assert m["hit_rate@1"] == 0.0 and m["hit_rate@2"] == 1.0
    assert m["mrr@2"] == pytest.approx(0.5)
    assert m["auc"] == pytest.approx(0.5)


def test_fold_in_users_are_scored_from_their_history():
    split = make_split([[], [0, 1]], [[2], []], n_items=4)
    fold_in = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    split = Split(split.train, split.test, "kfold", {}, fold_in=fold_in)
    # Fold-in scores use table row 0: item 0 (history) masked, then 2 beats 1 and 3.
    m = evaluate([[5, 1, 4, 3], [0, 0, 0, 0]], split, ks=(1,))
    assert m["hit_rate@1"] == 1.0
    assert m["auc"] == 1.0

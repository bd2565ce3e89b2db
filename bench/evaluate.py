"""Evaluation throughput: tastemaker's ranking_metrics against implicit's ranking_metrics_at_k.

Both evaluate the SAME fitted factors (an implicit ALS model, 64 factors, 15 iterations,
log1p weighting) on the SAME split (the default random protocol) at k = 10. Prints users per
second for each, the ratio, and checks that the metrics agree where the definitions match:

- NDCG@10 and MAP@10: identical definitions (binary relevance, ideal DCG / normaliser over
  min(k, |test|), averaged over test users) -> must agree to 1e-6;
- precision: implicit divides all hits by the sum of min(k, |test|) over users (micro
  average); ours is hits / k per user (DESIGN.md) -> compared after converting;
- AUC: implicit's is computed from the top-k list only (everything below k counted as tied);
  ours ranks every non-training item -> reported, not compared.

Two timings of ours, both end to end (scoring included): with the top-k metrics only (what
implicit computes: its AUC comes free from the top-k list; ours adds recall, MRR, hit rate,
coverage and novelty), and with our exact full-ranking AUC on top (one comparison pass over
the user's scores per test item), which implicit does not compute at all.

    .venv/bin/python bench/evaluate.py [--data PATH] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from tastemaker.data.interactions import Interactions
from tastemaker.data.load import load_interactions
from tastemaker.data.weighting import apply_weighting
from tastemaker.evaluation.metrics import ranking_metrics
from tastemaker.evaluation.splits import random_split
from tastemaker.models.base import Recommender

HETREC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hetrec2011-lastfm-2k"


class FixedFactors(Recommender):
    """Scores = user_factors @ item_factors.T, taken from an already fitted implicit model."""

    name = "fixed-factors"

    def __init__(self, user_factors=None, item_factors=None) -> None:
        self.user_factors = user_factors
        self.item_factors = item_factors

    def _fit(self, interactions: Interactions) -> None:
        pass

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self.item_factors[items] @ self.item_factors.T


def best_of(repeats: int, fn):
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HETREC)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS / implicit threads")
    args = parser.parse_args()

    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.evaluation import ranking_metrics_at_k

    interactions = load_interactions(args.data)
    split = random_split(interactions)
    weighted = apply_weighting(split.train.user_items, "log1p")
    with threadpool_limits(args.threads):
        als = AlternatingLeastSquares(
            factors=64, regularization=0.05, iterations=15, random_state=0,
            num_threads=args.threads,
        )  # fmt: skip
        als.fit(weighted, show_progress=False)
        ours_model = FixedFactors(als.user_factors, als.item_factors).fit(split.train)
        train = split.train.user_items
        test = split.test
        users = len(split.test_users)
        t_ours, ours = best_of(args.repeats, lambda: ranking_metrics(ours_model, split, ks=(10,)))
        t_topk, _ = best_of(
            args.repeats, lambda: ranking_metrics(ours_model, split, ks=(10,), auc=False)
        )
        t_theirs, theirs = best_of(
            args.repeats,
            lambda: ranking_metrics_at_k(
                als, train, test, K=10, show_progress=False, num_threads=args.threads
            ),
        )

    print(f"data: {args.data} ({interactions.n_users:,} users x {interactions.n_items:,} items)")
    print(f"split: {split.label}")
    print(f"threads: {args.threads}; best of {args.repeats}")
    print(f"test users: {users:,}; users / s, higher is better; ratio = ours / implicit")
    print(f"{'':34}{'tastemaker':>12}{'implicit':>12}{'ratio':>8}")
    for name, seconds in (
        ("top-k metrics (as implicit's)", t_topk),
        ("+ full-ranking AUC", t_ours),
    ):
        print(
            f"{name:34}{users / seconds:12,.0f}{users / t_theirs:12,.0f}{t_theirs / seconds:8.2f}"
        )
    n_test = np.diff(test.indptr)[split.test_users]
    micro_precision = ours["precision@10"] * 10 * users / np.minimum(n_test, 10).sum()
    rows = [
        ("ndcg@10", ours["ndcg@10"], theirs["ndcg"], True),
        ("map@10", ours["map@10"], theirs["map"], True),
        ("precision (implicit's def.)", micro_precision, theirs["precision"], True),
        ("auc (different defs.)", ours["auc"], theirs["auc"], False),
    ]
    agree = True
    for name, a, b, compare in rows:
        status = ""
        if compare:
            ok = abs(a - b) <= 1e-6
            agree &= ok
            status = "agree" if ok else "DIFFER"
        print(f"{name:34}{a:12.6f}{b:12.6f}  {status}")
    print("definitions that match agree" if agree else "MISMATCH where definitions match")
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

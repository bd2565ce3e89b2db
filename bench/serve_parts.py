"""In-process CPU of the serving hot path's parts, ours against the reference in the same run.

- fold-in of a posted 50-item history: ``ALS.history_vectors`` (our cached-Gram Cholesky
  solve) against weighting + implicit's ``recalculate_user`` (what it replaced);
- the HNSW tail at several efSearch: CPU per tail search and recall@10 against exact scoring;
- a whole ANN user query (``FactorIndex.for_user``) with the heard filter as served (a
  per-thread mask over the items) against the Python set it replaced, same answers checked.

CPU is this thread's (``time.thread_time``): on a shared machine wall time mostly measures the
wait for a core. Uses the model ``bench/serve.py --out DIR`` trains (DIR/model).

    .venv/bin/python bench/serve_parts.py --model /tmp/serve-model/model [--graph /tmp/graph.faiss]
    .venv/bin/python bench/serve_parts.py --model /tmp/serve-model/model --parts heard
"""

from __future__ import annotations

import argparse
import time
import types
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import tastemaker.threads as thread_policy
from busy import load_average
from tastemaker.models import load_model
from tastemaker.serving.retrieval import AnnSettings, FactorIndex


def cpu_us(calls, repeats: int = 5) -> float:
    """Best of ``repeats`` passes over ``calls``: CPU microseconds per call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        for call in calls:
            call()
        best = min(best, time.thread_time() - start)
    return 1e6 * best / len(calls)


def fold_in(model, rounds: int, rng) -> None:
    n_items = model.item_factors_.shape[0]
    histories = [
        sp.csr_matrix(
            (rng.integers(1, 30, 50).astype(np.float32), (np.zeros(50, int), items)),
            shape=(1, n_items),
        )
        for items in (rng.choice(n_items, 50, replace=False) for _ in range(200))
    ]
    solver = model._fitted_solver()
    ours = [lambda h=h: model.history_vectors(h) for h in histories]
    reference = [
        lambda h=h: solver.recalculate_user(np.arange(1), model._weigh(h)) for h in histories
    ]
    diff = max(
        float(np.abs(model.history_vectors(h) - r()).max())
        for h, r in zip(histories, reference, strict=True)
    )
    print(f"fold-in, 50 items: max |ours - implicit| {diff:.1e}")
    for round_ in range(rounds):
        a, b = cpu_us(reference), cpu_us(ours)
        print(
            f"  round {round_ + 1}: implicit {a:.1f} us, ours {b:.1f} us ({b / a:.2f}x); "
            f"{load_average()}"
        )


def tail(model, index: FactorIndex, users, queries, heard, ef_values) -> None:
    exact, _ = model.recommend(users, 10, exclude_heard=True)
    for ef in ef_values:
        index.settings = AnnSettings(ef_search=ef)
        index.tail.hnsw.efSearch = ef
        hits = 0
        for user, row in zip(users, exact, strict=True):
            ids, _ = index.for_user(int(user), 10, True)
            hits += len(np.intersect1d(ids, row[row >= 0]))
        calls = [
            lambda q=q, h=h: index._tail(q, h[~index.in_head[h]], 10)
            for q, h in zip(queries, heard, strict=True)
        ]
        print(
            f"efSearch {ef}: recall@10 {hits / (10 * len(users)):.4f}, "
            f"tail search {cpu_us(calls, 2):.1f} us; {load_average()}"
        )


def set_filter_tier(self, index, items, query, heard, n):
    """``FactorIndex._tier`` with the heard filter it had before: a Python set per search."""
    k = min(n + len(heard), len(items))
    scores, positions = index.search(query.reshape(1, self.dim), k)
    found = positions[0] >= 0
    ids = items[positions[0][found]]
    scores = scores[0][found]
    if len(heard):
        skip = set(heard.tolist())
        keep = np.fromiter((i not in skip for i in ids.tolist()), bool, len(ids))
        ids, scores = ids[keep], scores[keep]
    return ids[:n], scores[:n]


def heard_filter(index: FactorIndex, users, rounds: int) -> None:
    sizes = [int(index.in_head[index.model.user_items_[int(u)].indices].sum()) for u in users]
    calls = [lambda u=int(u): index.for_user(u, 10, True) for u in users]
    mask_answers = [c()[0] for c in calls]
    reference = types.MethodType(set_filter_tier, index)
    index._tier = reference
    same = all(np.array_equal(c()[0], a) for c, a in zip(calls, mask_answers, strict=True))
    del index._tier
    print(
        f"user query, n = 10, heard items in the head: median {int(np.median(sizes))}, "
        f"max {max(sizes)}; same answers: {same}"
    )
    for round_ in range(rounds):
        index._tier = reference
        a = cpu_us(calls, 3)
        del index._tier
        b = cpu_us(calls, 3)
        print(
            f"  round {round_ + 1}: set {a:.1f} us, mask {b:.1f} us ({b / a:.2f}x; "
            f"{a - b:.1f} us saved); {load_average()}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--graph", type=Path, default=None, help="HNSW graph file to reuse")
    parser.add_argument("--parts", default="fold-in,tail,heard", help="comma-separated")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    model = load_model(args.model)
    thread_policy.pin(1)  # as the server does
    rng = np.random.default_rng(0)
    print(f"start: {load_average()}")
    if "fold-in" in parts:
        fold_in(model, args.rounds, rng)
    index = FactorIndex(model, AnnSettings(), tail_file=args.graph)
    matrix = model.user_items_
    users = np.sort(rng.choice(matrix.shape[0], min(args.users, matrix.shape[0]), replace=False))
    queries = np.ascontiguousarray(model.user_vectors(users), np.float32)
    heard = [
        matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]].astype(np.int64) for u in users
    ]
    if "heard" in parts:
        heard_filter(index, users, args.rounds)
    if "tail" in parts:
        tail(model, index, users, queries, heard, (128, 96, 64, 48, 32))


if __name__ == "__main__":
    main()

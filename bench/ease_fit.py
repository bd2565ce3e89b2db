"""EASE fit time and quality on HetRec 2K: tastemaker's pruned float32 Cholesky inverse against
the reference implementation (Steck's published code: ``np.linalg.inv`` of the float64 Gram).

- ours: ``ease`` with its defaults (lambda 200, items with >= 2 training listeners, float32,
  LAPACK potrf + potri), the whole ``fit``; median of ``--repeats`` (target <= 10 s);
- reference, same items: the textbook dense float64 inverse on the same pruned Gram matrix
  (isolates the Cholesky / float32 gain; must give the same recommendations);
- with ``--full``: the reference over ALL items (no pruning; on HetRec ~17,000 x 17,000, about
  5 GB and minutes of compute), the number DESIGN.md quotes (NDCG@10 0.230 in 180 s).

Each row reports NDCG@10 / recall@10 on the default random split, so the price of pruning is
visible beside its speed.

    .venv/bin/python bench/ease_fit.py [--data PATH] [--repeats 3] [--full] [--blas-threads N]
                                       [--busy]

On a 2-core machine shared with other work, OpenBLAS's spinning threads make the LAPACK calls
several times slower than one thread; ``fit`` picks its threads from the cores free
(tastemaker.threads). ``--busy`` times our fit again beside a CPU-burning neighbour on one
core (bench/busy.py), with the chosen threads and with BLAS forced as wide as the machine.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import tastemaker.threads
from busy import add_busy_argument, load_average, quiet_and_busy
from tastemaker.evaluation.metrics import ranking_metrics
from tastemaker.evaluation.splits import random_split
from tastemaker.models import create_model

HETREC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hetrec2011-lastfm-2k"
TARGET_SECONDS = 10.0


def reference_weights(train, items: np.ndarray, regularization: float) -> np.ndarray:
    """Steck (2019), listing 1: B = P / -diag(P), diag(B) = 0, P = inv(X'X + lambda I)."""
    x = train.user_items[:, items]
    x.data[:] = 1.0
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += regularization
    inverse = np.linalg.inv(gram)
    weights = inverse / -np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HETREC))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also invert over all items")
    parser.add_argument(
        "--blas-threads", type=int, default=0, help="limit BLAS threads (0: library default)"
    )
    add_busy_argument(parser)
    args = parser.parse_args()
    print(load_average())
    if args.blas_threads:
        # Kept for the whole run: the reference inverts under the same limit.
        threadpool_limits(args.blas_threads, "blas")
        tastemaker.threads.request(args.blas_threads)
    threads = threadpool_info()[0]["num_threads"] if threadpool_info() else "?"

    from tastemaker.data.load import load_interactions

    split = random_split(load_interactions(args.data))
    train = split.train
    times = []
    for _ in range(args.repeats):
        model = create_model("ease")
        start = time.perf_counter()
        model.fit(train)
        times.append(time.perf_counter() - start)
    ours_s = statistics.median(times)
    kept = model.kept_items_
    lam = float(model.regularization)
    print(
        f"data: {train.n_users:,} users x {train.n_items:,} items; EASE lambda {lam:g}, "
        f"{len(kept):,} items with >= {model.min_listeners} listeners kept; BLAS threads "
        f"{threads}"
    )

    def quality(m) -> str:
        r = ranking_metrics(m, split, ks=(10,), auc=False)
        return f"NDCG@10 {r['ndcg@10']:.4f}  recall@10 {r['recall@10']:.4f}"

    rows = [(f"tastemaker ({len(kept):,} items, float32 Cholesky)", ours_s, quality(model))]

    start = time.perf_counter()
    weights = reference_weights(train, kept, lam)
    ref_s = time.perf_counter() - start
    reference = copy.copy(model)
    reference._set_weights(kept, weights)
    rows.append((f"reference ({len(kept):,} items, float64 inv)", ref_s, quality(reference)))
    users = np.arange(train.n_users)
    agree = np.mean(model.recommend(users, 10)[0] == reference.recommend(users, 10)[0])

    if args.full:
        everything = np.arange(train.n_items)
        start = time.perf_counter()
        weights = reference_weights(train, everything, lam)
        full_s = time.perf_counter() - start
        full = copy.copy(model)
        full._set_weights(everything, weights)
        rows.append((f"reference (all {train.n_items:,} items)", full_s, quality(full)))
        del weights

    for label, seconds, text in rows:
        print(f"{label:44s} fit {seconds:7.2f} s  {text}")
    print(f"our runs: {' '.join(f'{t:.2f}' for t in times)} s")
    print(
        f"ratio tastemaker / reference on the same items: {ours_s / ref_s:.2f}x; "
        f"identical top-10 entries: {agree:.4f}; fit {ours_s:.2f} s against a target of "
        f"<= {TARGET_SECONDS:g} s: {'OK' if ours_s <= TARGET_SECONDS else 'MISSED'}"
    )
    if not args.full:
        print("all-items dense inverse not run (--full; ~5 GB and minutes on 2 cores)")
    if args.busy:

        def fit() -> float:
            start = time.perf_counter()
            create_model("ease").fit(train)
            return time.perf_counter() - start

        quiet_and_busy("EASE fit", fit, args.repeats, busy=True)


if __name__ == "__main__":
    main()

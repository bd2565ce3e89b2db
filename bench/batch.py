"""The nightly batch: every user's top-n from ALS, against implicit's own batch ``recommend``.

A synthetic ListenBrainz-like world (``synthetic_interactions``: 20,000 users x 200,000
artists by default) and one ALS fit (64 factors); then, on the SAME factors and in the same
run, alternating which goes first:

- implicit: ``AlternatingLeastSquares.recommend(all users, user_items, N=n,
  filter_already_liked_items=True)``, arrays in memory;
- ours, exact ranking: ``rank_blocks`` (the model's ``recommend`` in blocks of users), arrays
  only, the same work as implicit's;
- ours, the whole job: ``write_recommendations`` (ranking + user / item ids + zstd Parquet);
- ours, approximate: ``BatchFactorIndex`` (norm-ranged faiss), its build time, users per
  second over a sample of ``--ann-users`` users and recall@n against the exact lists.

Prints users per second of each, the ratios against implicit (target >= 1.0x for exact
ranking) and the load average (the machine is shared; figures are for that load).

    .venv/bin/python bench/batch.py [--users 20000] [--artists 200000] [--listens 4000000]
        [--n 1000] [--repeats 2 (0: faiss only)] [--ann-users 2000]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.models.ann import BatchFactorIndex, IndexSettings, recall
from tastemaker.models.base import single_blas_thread
from tastemaker.models.batch import ExactRanker, rank_blocks, write_recommendations

TARGET_RATIO = 1.0


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--artists", type=int, default=200_000)
    parser.add_argument("--listens", type=int, default=4_000_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recall-users", type=int, default=500)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--ann-users", type=int, default=2000, help="users timed (0: skip)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")

    started = time.perf_counter()
    data = synthetic_interactions(args.users, args.artists, args.listens, seed=0)
    print(
        f"data: {data.n_users:,} users x {data.n_items:,} artists, {data.nnz:,} pairs "
        f"({time.perf_counter() - started:.1f} s)"
    )
    model = create_model("als", factors=args.factors, iterations=args.iterations, seed=0)
    print(f"ALS fit: {timed(lambda: model.fit(data)):.1f} s ({args.factors} factors)")
    solver = model._fitted_solver()
    users = np.arange(data.n_users)
    n = args.n

    def implicit_batch() -> None:
        with single_blas_thread():
            solver.recommend(users, data.user_items, N=n, filter_already_liked_items=True)

    def ours_ranking() -> None:
        for _ in rank_blocks(ExactRanker(model), data.n_users, n):
            pass

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recs.parquet"

        def ours_job() -> None:
            write_recommendations(model, out, n)

        sides = {"implicit": implicit_batch, "ours ranking": ours_ranking, "ours job": ours_job}
        times: dict[str, list[float]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
            for name in order:
                times[name].append(timed(sides[name]))
        size = out.stat().st_size if args.repeats else 0

    rate = {"implicit": float("nan")}
    if args.repeats:
        best = {name: min(values) for name, values in times.items()}
        rate = {name: data.n_users / seconds for name, seconds in best.items()}
        for name in sides:
            print(
                f"{name:>14}: {rate[name]:8,.0f} users/s (best of {args.repeats}: "
                f"{best[name]:.1f} s; all: {', '.join(f'{t:.1f}' for t in times[name])})"
            )
        ranking_ratio = rate["ours ranking"] / rate["implicit"]
        print(
            f"exact ranking / implicit: {ranking_ratio:.2f}x (target >= {TARGET_RATIO}x); "
            f"whole job (with Parquet, {size / 1e6:.0f} MB) / implicit: "
            f"{rate['ours job'] / rate['implicit']:.2f}x"
        )
    if args.ann_users:
        approximate(model, args, rate["implicit"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak RSS {peak:.2f} GB; load average at end: {os.getloadavg()}")


def approximate(model, args, implicit_rate: float) -> None:
    """The faiss index: build time, users/s over a sample of users, recall@n against exact."""
    n_users = model.user_items_.shape[0]
    index = BatchFactorIndex(model, IndexSettings(ef_search=args.ef_search))
    rng = np.random.default_rng(0)
    timed_users = np.sort(rng.choice(n_users, min(args.ann_users, n_users), replace=False))
    started = time.perf_counter()
    for start in range(0, len(timed_users), 1024):
        index.rank(timed_users[start : start + 1024], args.n, exclude_heard=True)
    ann_rate = len(timed_users) / (time.perf_counter() - started)
    sample = timed_users[: args.recall_users]
    found = recall(model, index, sample, args.n)
    print(
        f"faiss (head {index.settings.head_items}, HNSW M {index.settings.hnsw_m}, efSearch "
        f">= {args.ef_search}): built in {index.build_seconds:.1f} s; {ann_rate:,.0f} users/s "
        f"over {len(timed_users):,} users ({ann_rate / implicit_rate:.2f}x implicit); "
        f"recall@{args.n} {found:.4f} on {len(sample)} users; "
        f"{index.tail_queries / max(index.queries, 1):.0%} of queries searched the HNSW tier"
    )


if __name__ == "__main__":
    main()

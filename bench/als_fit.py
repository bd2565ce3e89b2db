"""ALS fit time: tastemaker's ``als`` model against implicit called directly.

Both fit the SAME weighted matrix (HetRec 2K training part of the default random split,
``log1p`` of the play counts) with the same hyperparameters (64 factors, regularization 0.05,
alpha 1, 15 iterations, seed 0) and BLAS pinned to one thread, in the same run, alternating
which goes first. Ours includes everything ``fit`` does (weighting, its statistics, the
catalogue bookkeeping). Prints the median of each, the ratio (target <= 1.1x) and checks that
the learned factors are the same.

    .venv/bin/python bench/als_fit.py [--data PATH] [--repeats 5] [--factors 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from tastemaker.data.load import load_interactions
from tastemaker.data.weighting import apply_weighting
from tastemaker.evaluation.splits import random_split
from tastemaker.models import create_model

HETREC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hetrec2011-lastfm-2k"
TARGET_RATIO = 1.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HETREC))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    args = parser.parse_args()

    train = random_split(load_interactions(args.data)).train
    params = {"factors": args.factors, "regularization": 0.05, "alpha": 1.0}
    params |= {"iterations": args.iterations, "seed": 0}
    weighted = apply_weighting(train.user_items, "log1p")
    print(
        f"data: {train.n_users:,} users x {train.n_items:,} items, {train.nnz:,} non-zeros; "
        f"ALS {params}, log1p weighting"
    )

    def ours() -> tuple[float, np.ndarray]:
        model = create_model("als", weighting="log1p", **params)
        start = time.perf_counter()
        model.fit(train)
        return time.perf_counter() - start, model.item_factors_

    def direct() -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=args.factors,
                regularization=0.05,
                alpha=1.0,
                iterations=args.iterations,
                random_state=0,
            )
            model.fit(weighted, show_progress=False)
        return time.perf_counter() - start, model.item_factors

    ours()  # warm-up: imports, first-touch allocations
    times = {"tastemaker": [], "implicit": []}
    for repeat in range(args.repeats):
        order = [("tastemaker", ours), ("implicit", direct)]
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            seconds, factors = run()
            times[name].append(seconds)
            if name == "tastemaker":
                ours_factors = factors
            else:
                direct_factors = factors
    ours_s, direct_s = (statistics.median(times[k]) for k in ("tastemaker", "implicit"))
    ratio = ours_s / direct_s
    same = np.allclose(ours_factors, direct_factors, rtol=1e-4, atol=1e-5)
    print(f"{'':12s} {'median s':>9s}  runs")
    for name in times:
        runs = " ".join(f"{t:.2f}" for t in times[name])
        print(f"{name:12s} {statistics.median(times[name]):9.3f}  {runs}")
    print(
        f"ratio tastemaker / implicit: {ratio:.3f}x (target <= {TARGET_RATIO}x) "
        f"{'OK' if ratio <= TARGET_RATIO else 'MISSED'}; same factors: {same}"
    )


if __name__ == "__main__":
    main()

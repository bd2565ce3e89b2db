"""ALS fit time: tastemaker's ``als`` model against implicit called directly.

Both fit the SAME weighted matrix (HetRec 2K training part of the default random split,
``log1p`` of the play counts) with the same hyperparameters (64 factors, regularization 0.05,
alpha 1, 15 iterations, seed 0) and BLAS pinned to one thread, in the same run, alternating
which goes first. Ours includes everything ``fit`` does (weighting, its statistics, the
catalogue bookkeeping). Prints wall and CPU time of each, the median of the per-repeat
ratios (target <= 1.1x; pairing adjacent runs cancels most of the drift a shared machine
adds) and checks that the learned factors are the same.

    .venv/bin/python bench/als_fit.py [--data PATH] [--repeats 5] [--factors 64] [--busy]

``--busy`` also times our fit beside a CPU-burning neighbour on one core (bench/busy.py), with
the threads tastemaker.threads picks and with implicit's OpenMP team forced machine-wide.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from busy import add_busy_argument, load_average, quiet_and_busy
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
    add_busy_argument(parser)
    args = parser.parse_args()
    print(load_average())

    train = random_split(load_interactions(args.data)).train
    params = {"factors": args.factors, "regularization": 0.05, "alpha": 1.0}
    params |= {"iterations": args.iterations, "seed": 0}
    weighted = apply_weighting(train.user_items, "log1p")
    print(
        f"data: {train.n_users:,} users x {train.n_items:,} items, {train.nnz:,} non-zeros; "
        f"ALS {params}, log1p weighting"
    )

    def ours() -> tuple[float, float, np.ndarray]:
        model = create_model("als", weighting="log1p", **params)
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(train)
        return time.perf_counter() - start, time.process_time() - cpu, model.item_factors_

    def direct() -> tuple[float, float, np.ndarray]:
        start, cpu = time.perf_counter(), time.process_time()
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=args.factors,
                regularization=0.05,
                alpha=1.0,
                iterations=args.iterations,
                random_state=0,
            )
            model.fit(weighted, show_progress=False)
        return time.perf_counter() - start, time.process_time() - cpu, model.item_factors

    ours()  # warm-up: imports, first-touch allocations
    wall = {"tastemaker": [], "implicit": []}
    cpu = {"tastemaker": [], "implicit": []}
    factors = {}
    for repeat in range(args.repeats):
        order = [("tastemaker", ours), ("implicit", direct)]
        for name, run in order if repeat % 2 == 0 else order[::-1]:
            seconds, cpu_seconds, factors[name] = run()
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    same = np.allclose(factors["tastemaker"], factors["implicit"], rtol=1e-4, atol=1e-5)
    print(f"{'':12s} {'wall best':>9s} {'median':>7s} {'cpu median':>10s}  wall runs")
    for name, runs in wall.items():
        print(
            f"{name:12s} {min(runs):9.3f} {statistics.median(runs):7.3f} "
            f"{statistics.median(cpu[name]):10.3f}  " + " ".join(f"{t:.2f}" for t in runs)
        )
    # Each repeat runs both back to back, so the per-repeat ratio cancels most of the drift
    # a shared machine adds; its median is the verdict. CPU time (all threads) is beside it.
    pairs = zip(wall["tastemaker"], wall["implicit"], strict=True)
    paired = statistics.median(o / d for o, d in pairs)
    cpu_ratio = statistics.median(cpu["tastemaker"]) / statistics.median(cpu["implicit"])
    print(
        f"ratio tastemaker / implicit: {paired:.3f}x wall (median of paired runs), "
        f"{cpu_ratio:.3f}x CPU time; target <= {TARGET_RATIO}x: "
        f"{'OK' if paired <= TARGET_RATIO else 'MISSED'}; same factors: {same}"
    )
    if args.busy:
        quiet_and_busy("ALS fit", lambda: ours()[0], args.repeats, busy=True)


if __name__ == "__main__":
    main()

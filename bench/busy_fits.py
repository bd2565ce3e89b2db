"""Fits on a busy machine: EASE, ALS and item-KNN on HetRec 2K, quiet and beside a CPU-burning
neighbour on one core (bench/busy.py), with the threads tastemaker.threads picks and with the
BLAS / OpenMP team forced as wide as the machine (the libraries' default). Target: busy within
2.5x of quiet for every model.

    .venv/bin/python bench/busy_fits.py [--data PATH] [--repeats 3] [--models ease,als,itemknn]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from busy import load_average, quiet_and_busy
from tastemaker.data.load import load_interactions
from tastemaker.evaluation.splits import random_split
from tastemaker.models import create_model

HETREC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hetrec2011-lastfm-2k"
TARGET_RATIO = 2.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HETREC))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="ease,als,itemknn")
    args = parser.parse_args()
    print(load_average())
    train = random_split(load_interactions(args.data)).train
    print(f"data: {train.n_users:,} users x {train.n_items:,} items, {train.nnz:,} non-zeros")
    verdicts = []
    for name in args.models.split(","):

        def fit(name=name) -> float:
            model = create_model(name)
            start = time.perf_counter()
            model.fit(train)
            return time.perf_counter() - start

        fit()  # warm-up: imports, first-touch allocations
        rows = quiet_and_busy(name, fit, args.repeats, busy=True)
        verdicts.append((name, rows[1][1] / rows[0][1]))
    print(f"\ntargets (busy / quiet <= {TARGET_RATIO}x, threads chosen; {load_average()}):")
    for name, ratio in verdicts:
        print(f"  {'PASS' if ratio <= TARGET_RATIO else 'MISS'}  {name}: {ratio:.2f}x")


if __name__ == "__main__":
    main()

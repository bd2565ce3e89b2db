"""EASE at catalogue scale: the sparse approximate form on the 200,000-artist synthetic
catalogue that bench/serve.py builds (20,000 users; the issue's target: fit <= 10 minutes and
<= 8 GB), and exact EASE beside it.

Each fit runs in a child process of its own, so its peak resident memory is its own. Printed
per fit: wall and CPU seconds, peak RSS (and its rise above the loaded data), kept items and
stored weights; for the full catalogue the dense inverse is not run (it would need
``2 x 4 x kept^2`` bytes: hundreds of GB) and the memory it would take is printed instead.
``--compare-artists`` builds a smaller catalogue of the same shape on which both forms fit
and prints both fits, their NDCG@10 on the default random split and the ratios. The load
average is printed beside the figures: on a shared machine the wall time is mostly waiting.

    nice .venv/bin/python bench/ease_scale.py                       # 200k, and both at 8k
    nice .venv/bin/python bench/ease_scale.py --artists 50000 --compare-artists 5000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 600.0
TARGET_GB = 8.0


def _rss_gb() -> float:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def child(args: argparse.Namespace) -> None:
    """Build the catalogue, fit one form, print one JSON line."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serve import synthetic_catalogue
    from tastemaker.evaluation.metrics import ranking_metrics
    from tastemaker.evaluation.splits import random_split
    from tastemaker.models import create_model

    data = synthetic_catalogue(args.users, args.artists, seed=args.seed)
    split = random_split(data) if args.quality else None
    train = split.train if split else data
    base_gb = _rss_gb()
    model = create_model("ease", solver=args.child, neighbours=args.neighbours)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(train)
    result = {
        "solver": args.child,
        "artists": data.n_items,
        "pairs": data.nnz,
        "kept": len(model.kept_items_),
        "stored": int(model.weights_.nnz if model.is_sparse else model.weights_.size),
        "wall_s": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu,
        "peak_gb": _rss_gb(),
        "data_gb": base_gb,
    }
    if split:
        result["ndcg@10"] = ranking_metrics(model, split, ks=(10,), auc=False)["ndcg@10"]
    print(json.dumps(result), flush=True)


def run_child(args: argparse.Namespace, solver: str, artists: int, quality: bool) -> dict:
    command = [sys.executable, __file__, "--child", solver, "--artists", str(artists)]
    command += ["--users", str(args.users), "--seed", str(args.seed)]
    command += ["--neighbours", str(args.neighbours)] + (["--quality"] if quality else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def show(r: dict) -> None:
    quality = f"  NDCG@10 {r['ndcg@10']:.4f}" if "ndcg@10" in r else ""
    print(
        f"  {r['solver']:6s} {r['artists']:>8,} artists ({r['kept']:,} kept, {r['pairs']:,} "
        f"pairs): fit {r['wall_s']:7.1f} s wall, {r['cpu_s']:7.1f} s CPU; peak RSS "
        f"{r['peak_gb']:.2f} GB ({r['peak_gb'] - r['data_gb']:+.2f} over the data); "
        f"{r['stored']:,} weights{quality}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artists", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--compare-artists", type=int, default=8_000, help="0: skip")
    parser.add_argument("--neighbours", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["exact", "sparse"], help=argparse.SUPPRESS)
    parser.add_argument("--quality", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} cores", flush=True)
    if args.compare_artists:
        print(f"both forms, {args.compare_artists:,}-artist catalogue (default random split):")
        exact = run_child(args, "exact", args.compare_artists, quality=True)
        show(exact)
        sparse = run_child(args, "sparse", args.compare_artists, quality=True)
        show(sparse)
        print(
            f"  sparse / exact: fit wall {sparse['wall_s'] / exact['wall_s']:.2f}x, CPU "
            f"{sparse['cpu_s'] / exact['cpu_s']:.2f}x, peak RSS "
            f"{sparse['peak_gb'] / exact['peak_gb']:.2f}x, NDCG@10 "
            f"{sparse['ndcg@10'] / exact['ndcg@10']:.4f}x",
            flush=True,
        )
    print(f"sparse form, {args.artists:,}-artist catalogue (all pairs):")
    big = run_child(args, "sparse", args.artists, quality=False)
    show(big)
    dense_gb = 2 * 4 * big["kept"] ** 2 / 1e9
    print(f"  exact: not run (its dense Gram matrix and weights need {dense_gb:,.1f} GB)")
    ok = big["wall_s"] <= TARGET_SECONDS and big["peak_gb"] <= TARGET_GB
    print(
        f"target fit <= {TARGET_SECONDS:.0f} s and <= {TARGET_GB:g} GB: "
        f"{'OK' if ok else 'MISSED'}; load average at end: {os.getloadavg()}"
    )


if __name__ == "__main__":
    main()

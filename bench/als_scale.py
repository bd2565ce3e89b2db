"""ALS at recording level, scaled towards the whole ListenBrainz dump: time per iteration and
peak memory, single machine (implicit) against Spark ``local[2]``.

The base is a recording-level ``Interactions`` ingested from a synthetic dump (e.g.
``tastemaker synth --listens 20000000`` then ``tastemaker ingest DUMP --level recording``).
``--copies C`` scales it C times. ``--tile users`` (the default) stacks C copies of the rows
over the same recordings: C times the listeners and pairs of one catalogue, the way a dump
grows as it gains listeners. ``--tile diagonal`` lays the copies on the diagonal (C times the
recordings too: C independent worlds), an upper bound on the item side, since a real dump's
listeners share recordings.

Each size runs in its own process so that its peak RSS (VmHWM) is its own. Ours is the ``als``
model's solver (implicit's CPU ALS, the thread count tastemaker.threads picks) on the
weighting ``als`` applies by default; bench/als_fit.py shows the model's fit is implicit's
within 10 %. Spark is ``pyspark.ml`` ALS (implicitPrefs) through tastemaker's Spark engine,
on the same weighted pairs, under ``--spark-timeout`` seconds per size: where it does not
finish, the size at which it stopped is printed.

    .venv/bin/python bench/als_scale.py --data INGESTED --copies 1,4,16 --iterations 3
    .venv/bin/python bench/als_scale.py --data INGESTED --copies 1 --spark
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from busy import load_average

FACTORS = 64


def peak_rss_gb(pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def tiled(matrix: sp.csr_matrix, copies: int, tile: str = "users") -> sp.csr_matrix:
    """``copies`` copies of ``matrix``'s rows, over the same columns (``users``) or on the
    diagonal (``diagonal``), built straight as CSR (no COO copy)."""
    if copies == 1:
        return matrix
    n_users, n_items = matrix.shape
    nnz = matrix.nnz
    index = np.int64 if nnz * copies >= 2**31 else np.int32
    indptr = np.empty(n_users * copies + 1, dtype=index)
    indptr[0] = 0
    indices = np.empty(nnz * copies, dtype=np.int32)
    data = np.empty(nnz * copies, dtype=np.float32)
    for c in range(copies):
        rows = slice(c * n_users + 1, (c + 1) * n_users + 1)
        indptr[rows] = matrix.indptr[1:] + c * nnz
        shift = c * n_items if tile == "diagonal" else 0
        indices[c * nnz : (c + 1) * nnz] = matrix.indices + shift
        data[c * nnz : (c + 1) * nnz] = matrix.data
    n_columns = n_items * copies if tile == "diagonal" else n_items
    return sp.csr_matrix((data, indices, indptr), shape=(n_users * copies, n_columns))


def weighted_base(data: str) -> sp.csr_matrix:
    """The ingested play counts with the ``als`` model's default weighting."""
    from tastemaker.data.interactions import Interactions
    from tastemaker.data.weighting import apply_weighting, weighting_statistics
    from tastemaker.models import create_model

    model = create_model("als")
    counts = Interactions.load(data).user_items
    assert model.weighting == "bm25", "the als default this bench mirrors"
    weighted = apply_weighting(
        counts,
        model.weighting,
        statistics=weighting_statistics(counts),
        K1=float(model.bm25_k1),
        B=float(model.bm25_b),
    )
    return sp.csr_matrix(weighted, dtype=np.float32)


def child_ours(data: str, copies: int, iterations: int, tile: str) -> dict:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    import tastemaker.threads as threads
    from tastemaker.models import create_model

    matrix = tiled(weighted_base(data), copies, tile)
    default = create_model("als")
    solver = AlternatingLeastSquares(
        factors=FACTORS,
        regularization=default.regularization,
        alpha=default.alpha,
        iterations=1,
        calculate_training_loss=False,
        random_state=0,
        num_threads=threads.pick(),
    )
    per_iteration = []
    with threadpool_limits(1, "blas"):
        for i in range(iterations):
            start = time.perf_counter()
            # One iteration per call after the first continues from the learned factors.
            solver.fit(matrix, show_progress=False) if i == 0 else _one_more(solver, matrix)
            per_iteration.append(time.perf_counter() - start)
    return {
        "users": matrix.shape[0],
        "items": matrix.shape[1],
        "pairs": int(matrix.nnz),
        "first_iteration_s": per_iteration[0],
        "per_iteration_s": float(np.median(per_iteration[1:] or per_iteration)),
        "peak_gb": peak_rss_gb(),
        "load": load_average(),
    }


def _one_more(solver, matrix: sp.csr_matrix) -> None:
    """One more ALS sweep from the current factors (implicit re-initialises in ``fit`` only
    when the factors are missing or of another shape)."""
    solver.fit(matrix, show_progress=False)


def child_spark(data: str, copies: int, iterations: int, tile: str) -> dict:
    from tastemaker.engines.spark import spark_session
    from tastemaker.models import create_model

    matrix = tiled(weighted_base(data), copies, tile).tocoo()
    with spark_session(app_name="als-scale", master="local[2]") as spark:
        jvm_pid = spark.sparkContext._gateway.proc.pid
        import pyarrow as pa
        from pyspark.ml.recommendation import ALS

        table = pa.table(
            {
                "user": matrix.row.astype(np.int32),
                "item": matrix.col.astype(np.int32),
                "rating": matrix.data.astype(np.float32),
            }
        )
        del matrix
        frame = spark.createDataFrame(table.to_pandas())
        start = time.perf_counter()
        ALS(
            rank=FACTORS,
            maxIter=iterations,
            implicitPrefs=True,
            alpha=float(create_model("als").alpha),
            userCol="user",
            itemCol="item",
            ratingCol="rating",
            seed=0,
        ).fit(frame)
        seconds = time.perf_counter() - start
        peak = peak_rss_gb() + peak_rss_gb(str(jvm_pid))
    return {
        "per_iteration_s": seconds / iterations,
        "peak_gb": peak,
        "load": load_average(),
    }


def run_child(kind: str, args: argparse.Namespace, copies: int, timeout: float | None) -> dict:
    command = [sys.executable, __file__, "--child", kind, args.data, str(copies)]
    command += [str(args.iterations), args.tile]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"stopped": f"did not finish in {timeout:.0f} s"}
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"stopped": f"exit {result.returncode}: {last[:200]}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a recording-level ingested Interactions directory")
    parser.add_argument("--copies", default="1,4", help="comma-separated tile counts")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--spark", action="store_true", help="also Spark local[2]")
    parser.add_argument("--spark-timeout", type=float, default=1800.0)
    parser.add_argument("--tile", choices=("users", "diagonal"), default="users")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, data, copies, iterations, tile = args.child
        child = child_ours if kind == "ours" else child_spark
        print(json.dumps(child(data, int(copies), int(iterations), tile)))
        return
    if not args.data:
        parser.error("--data is required")
    print(
        f"ALS {FACTORS} factors, {args.iterations} iterations per size, tiled by {args.tile}; "
        f"{load_average()}"
    )
    for copies in (int(c) for c in args.copies.split(",")):
        ours = run_child("ours", args, copies, None)
        print(f"copies {copies:>3}  ours  {json.dumps(ours)}", flush=True)
        if args.spark:
            spark = run_child("spark", args, copies, args.spark_timeout)
            print(f"copies {copies:>3}  spark {json.dumps(spark)}", flush=True)
            if "per_iteration_s" in spark and "per_iteration_s" in ours:
                ratio = spark["per_iteration_s"] / ours["per_iteration_s"]
                print(f"            Spark / ours per iteration: {ratio:.1f}x")


if __name__ == "__main__":
    main()

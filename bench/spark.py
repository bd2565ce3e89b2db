"""Benchmark: ingest and ALS at 20 M synthetic listens, single machine vs Spark ``local[*]``.

Each side runs in its own subprocess, so times and peak memory are measured per side (for
Spark, the driver JVM's peak is read from /proc before it stops, plus the Python process).

* ingest: ``tastemaker.data.ingest.ingest`` (polars) vs ``tastemaker.engines.spark.spark_ingest``
  of the same ListenBrainz-format dump to an artist-level ``Interactions`` directory;
* ALS: the ``als`` model (implicit, 64 factors, 15 iterations, BLAS threads 1) vs ``SparkALS``
  (pyspark.ml ALS, implicitPrefs=True, same hyperparameters) on the ingested matrix.

Spark is expected to be slower on one machine (published figures put implicit 19-30x ahead per
ALS iteration); this prints what this machine shows, and the ratios.

    .venv/bin/python bench/spark.py                      # 20 M listens, 20 k users, 200 k artists
    .venv/bin/python bench/spark.py --listens 2000000    # a quick run
    .venv/bin/python bench/spark.py --data DIR --keep    # reuse a synthesized dump
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_gb(pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def child_ingest(engine: str, dump: str, out: str) -> dict:
    if engine == "polars":
        from tastemaker.data.ingest import ingest

        start = time.perf_counter()
        interactions = ingest([dump], out, keep_events=False, listens=True)
        return {
            "seconds": time.perf_counter() - start,
            "peak_gb": peak_rss_gb(),
            "nnz": interactions.nnz,
        }
    from tastemaker.engines import spark as engine_module

    start = time.perf_counter()
    with engine_module.spark_session(app_name="warm-up") as spark:
        jvm_pid = spark.sparkContext._gateway.proc.pid
        startup = time.perf_counter() - start
    begin = time.perf_counter()
    # spark_ingest opens its own session on the already running gateway JVM.
    interactions = engine_module.spark_ingest([dump], out)
    seconds = time.perf_counter() - begin
    return {
        "seconds": seconds,
        "startup_seconds": startup,
        "peak_gb": peak_rss_gb() + peak_rss_gb(str(jvm_pid)),
        "nnz": interactions.nnz,
    }


def child_als(engine: str, data: str) -> dict:
    from tastemaker.data.interactions import Interactions
    from tastemaker.models import create_model

    interactions = Interactions.load(data)
    params = {"factors": 64, "iterations": 15, "regularization": 0.05}
    jvm_pid = None
    if engine == "polars":
        model = create_model("als", **params)
    else:
        from tastemaker.engines.spark import spark_model, spark_session

        # Start the gateway JVM first (not timed) to know its pid: the fit's session runs in
        # it, and the JVM outlives the session, so its peak can be read after the fit.
        with spark_session(app_name="warm-up") as spark:
            jvm_pid = spark.sparkContext._gateway.proc.pid
        model = spark_model("als", params)
    start = time.perf_counter()
    model.fit(interactions)
    seconds = time.perf_counter() - start
    peak = peak_rss_gb() + (peak_rss_gb(str(jvm_pid)) if jvm_pid else 0.0)
    return {
        "seconds": seconds,
        "peak_gb": peak,
        "per_iteration": seconds / params["iterations"],
    }


def run_child(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listens", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--artists", type=int, default=200_000)
    parser.add_argument("--data", type=Path, help="an existing synthesized dump to reuse")
    parser.add_argument("--keep", action="store_true", help="keep the synthesized dump")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job, *rest = args.child
        out = child_ingest(*rest) if job == "ingest" else child_als(*rest)
        print(json.dumps(out))
        return

    work = Path(tempfile.mkdtemp(prefix="tastemaker-spark-bench-"))
    try:
        dump = args.data
        if dump is None:
            from tastemaker.data.synth import synthesize

            dump = work / "dump"
            start = time.perf_counter()
            synthesize(dump, users=args.users, artists=args.artists, listens=args.listens)
            print(f"synthesized {args.listens:,} listens in {time.perf_counter() - start:.1f} s")
        rows = {}
        for engine in ("polars", "spark"):
            rows[f"ingest/{engine}"] = run_child("ingest", engine, str(dump), str(work / engine))
            print(f"ingest {engine:7s} {json.dumps(rows[f'ingest/{engine}'])}", flush=True)
        for engine in ("polars", "spark"):
            rows[f"als/{engine}"] = run_child("als", engine, str(work / "polars"))
            print(f"als    {engine:7s} {json.dumps(rows[f'als/{engine}'])}", flush=True)
        print()
        print(f"{'step':8s} {'ours (polars/implicit)':>24s} {'Spark local[*]':>16s} {'ratio':>7s}")
        for step in ("ingest", "als"):
            ours, spark = rows[f"{step}/polars"], rows[f"{step}/spark"]
            print(
                f"{step:8s} {ours['seconds']:>20.1f} s {spark['seconds']:>14.1f} s "
                f"{spark['seconds'] / ours['seconds']:>6.1f}x"
            )
            print(f"{'  peak':8s} {ours['peak_gb']:>19.2f} GB {spark['peak_gb']:>13.2f} GB")
        print(f"Spark start-up: {rows['ingest/spark']['startup_seconds']:.1f} s (not in the times)")
    finally:
        if args.keep or args.data:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: ingest of a ListenBrainz Parquet dump to an artist-level Interactions.

Synthesizes a dump (``tastemaker synth``; 20 M listens, 20 k users, 200 k artists by default),
then times, each in its own subprocess so that peak RSS is measured per side:

* ours: ``tastemaker.data.ingest.ingest`` to an artist-level ``Interactions`` directory, as
  ``tastemaker ingest`` runs it by default (dumps merged and deduplicated, MBID-or-name item
  keys, metadata, last-listened times, per-listen events; no ``listens.parquet`` copy of a
  Parquet dump); ``matrix-only`` without the events (``--no-events``: what the reference
  builds, plus deduplication, MBID keys, metadata and last-listened times); ``with-table``
  also writing the canonical ``listens.parquet`` (``--listens``);
* reference: a bare polars ``scan_parquet -> group_by(user_id, artist_name) -> len`` collected
  with the streaming engine, then a scipy CSR.

The dump's files are read once before the first side runs, so every side finds them in the
page cache. Prints both times, the ratio and both peak RSS. Targets: <= 1.2x the bare
group-by and <= 1.5 GB peak at 20 M listens; <= 6 GB peak at 100 M (``--listens 100000000``).

    .venv/bin/python bench/ingest.py                       # 20 M listens
    .venv/bin/python bench/ingest.py --listens 100000000   # the streaming path
    .venv/bin/python bench/ingest.py --data DIR            # reuse a dump (kept with --keep)
    .venv/bin/python bench/ingest.py --data DIR --profile  # where our time goes (cProfile)
    .venv/bin/python bench/ingest.py --ours ingest         # only the full pipeline
    # against another checkout's code (e.g. before a change), alternating, 3 runs each:
    .venv/bin/python bench/ingest.py --data DIR --ours ingest --against /tmp/before/src --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 1.2
TARGET_PEAK_GB = {20_000_000: 1.5, 100_000_000: 6.0}


def peak_rss_gb() -> float:
    """Peak resident set size of this process, in GB.

    Linux's VmHWM belongs to the address space, so it starts afresh at exec; ru_maxrss would
    carry over the parent's peak into a forked child (it survives exec).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


# Our sides: the ingest pipeline as the CLI runs it, without the events, with the table,
# and spilled (``--memory-limit``: the budget is added by ``run_ours``).
OURS = {
    "ingest": {},
    "matrix-only": {"keep_events": False},
    "with-table": {"listens": True},
    "spilled": {},
}
DEFAULT_SIDES = ("ingest", "matrix-only", "with-table")


def events_in(directory: Path) -> int:
    """Events of an ingested directory, from the header of events.npz (not loaded)."""
    import zipfile

    import numpy as np

    path = directory / "events.npz"
    if not path.exists():
        return 0
    with zipfile.ZipFile(path) as archive, archive.open("user.npy") as member:
        np.lib.format.read_magic(member)
        shape, _, _ = np.lib.format.read_array_header_1_0(member)
    return int(shape[0])


def run_ours(side: str, data: Path, profile: bool, memory_limit: str | None = None) -> dict:
    from tastemaker.data.ingest import ingest
    from tastemaker.data.spill import parse_size

    options = dict(OURS[side])
    if side == "spilled":
        options["memory_limit"] = parse_size(memory_limit or "1GB")
    events = [0]

    def work():
        with tempfile.TemporaryDirectory(dir=data.parent) as tmp:
            result = ingest([data], Path(tmp) / "ingested", level="artist", **options)
            events[0] = events_in(Path(tmp) / "ingested")
            return result

    started = time.perf_counter()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(work)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    else:
        result = work()
    seconds = time.perf_counter() - started
    return {
        "side": side,
        "seconds": seconds,
        "peak_gb": peak_rss_gb(),
        "users": result.n_users,
        "items": result.n_items,
        "nnz": result.nnz,
        "events": events[0],
        "listens": int(result.source.get("listens", 0)),
        "load": os.getloadavg()[0],
        "duplicates_dropped": result.source.get("duplicates_dropped"),
    }


def run_reference(data: Path) -> dict:
    import numpy as np
    import polars as pl
    import scipy.sparse as sp

    started = time.perf_counter()
    pairs = (
        pl.scan_parquet(data / "*" / "*.parquet")
        .group_by("user_id", "artist_name")
        .agg(pl.len().alias("plays"))
        .collect(engine="streaming")
    )
    indexed = pairs.select(
        (pl.col("user_id").rank("dense") - 1).alias("u"),
        (pl.col("artist_name").rank("dense") - 1).alias("i"),
        "plays",
    )
    rows, cols = indexed["u"].to_numpy(), indexed["i"].to_numpy()
    matrix = sp.csr_matrix(
        (indexed["plays"].to_numpy().astype(np.float32), (rows, cols)),
        shape=(int(rows.max()) + 1, int(cols.max()) + 1),
    )
    seconds = time.perf_counter() - started
    return {
        "side": "polars group_by",
        "seconds": seconds,
        "peak_gb": peak_rss_gb(),
        "users": matrix.shape[0],
        "items": matrix.shape[1],
        "nnz": matrix.nnz,
    }


def warm_page_cache(data: Path) -> None:
    """Read every file of the dump once, so that no side pays for the disk: the reference
    reads two columns, ours several more, and a cold cache would bill ours for both."""
    for file in sorted(data.rglob("*.parquet")):
        with open(file, "rb") as fh:
            while fh.read(1 << 24):
                pass


def child(
    side: str,
    data: Path,
    profile: bool = False,
    src: Path | None = None,
    memory_limit: str | None = None,
) -> dict:
    """Run one side in a fresh interpreter; its peak RSS is its own. ``src``: import
    tastemaker from that source folder instead (another checkout's ``src``)."""
    command = [sys.executable, __file__, "--side", side, "--data", str(data)]
    if profile:
        command.append("--profile")
    if memory_limit:
        command += ["--memory-limit", memory_limit]
    env = None
    if src is not None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
        }
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if profile and done.stderr:
        print(done.stderr, file=sys.stderr)
    if done.returncode != 0:
        sys.exit(f"{side} side failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare_against(src: Path, sides: list[str], data: Path, repeat: int) -> None:
    """Our sides with this checkout and with ``src``, alternating (a busy machine's load
    drifts): median seconds and peaks of each, and the ratio."""
    import statistics

    for side in sides:
        runs: dict[str, list[dict]] = {"this": [], "against": []}
        for _ in range(repeat):
            runs["against"].append(child(side, data, src=src))
            runs["this"].append(child(side, data))
        this, base = (statistics.median(r["seconds"] for r in runs[k]) for k in ("this", "against"))
        peaks = {k: max(r["peak_gb"] for r in runs[k]) for k in runs}
        items = {k: runs[k][0]["items"] for k in runs}
        print(
            f"{side:<16}this {this:6.1f} s (peak {peaks['this']:.2f} GB, {items['this']:,} items)"
            f"   against {base:6.1f} s (peak {peaks['against']:.2f} GB, "
            f"{items['against']:,} items)   ratio {this / base:.3f}  (median of {repeat}; "
            f"runs this {[round(r['seconds'], 1) for r in runs['this']]}, against "
            f"{[round(r['seconds'], 1) for r in runs['against']]})"
        )
        print(f"{'':<16}load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def synthesize_dump(out: Path, listens: int, users: int, artists: int, seed: int) -> dict:
    from tastemaker.data.synth import SUMMARY_FILE, synthesize

    started = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 10:
            last[0] = time.perf_counter()
            print(f"  synth {done:,} / {total:,}", file=sys.stderr, flush=True)

    synthesize(out, users=users, artists=artists, listens=listens, seed=seed, progress=progress)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    size = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    return {
        "seconds": time.perf_counter() - started,
        "bytes": size,
        "peak_gb": peak_rss_gb(),
        "summary": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listens", type=int, default=20_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--artists", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="an existing dump (skips synth)")
    parser.add_argument("--workdir", type=Path, help="where to synthesize (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the synthesized dump")
    parser.add_argument(
        "--ours",
        default=",".join(DEFAULT_SIDES),
        help=f"comma-separated sides of ours to time, from: {', '.join(OURS)} "
        "(spilled: added with --memory-limit)",
    )
    parser.add_argument(
        "--memory-limit",
        help="also time the spilled ingest under this budget (e.g. 1GB; the 'spilled' side)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile our sides to stderr")
    parser.add_argument(
        "--against",
        type=Path,
        help="also time our sides with tastemaker imported from this src folder (a baseline)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per side with --against")
    parser.add_argument("--side", choices=[*OURS, "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:  # inside a child process
        if args.side == "reference":
            result = run_reference(args.data)
        else:
            result = run_ours(args.side, args.data, args.profile, args.memory_limit)
        print(json.dumps(result))
        return

    sides = [s.strip() for s in args.ours.split(",") if s.strip()]
    if args.memory_limit and "spilled" not in sides:
        sides.append("spilled")
    unknown = [s for s in sides if s not in OURS]
    if unknown:
        sys.exit(f"unknown side(s) {unknown}; choose from {', '.join(OURS)}")
    workdir = Path(tempfile.mkdtemp(prefix="tastemaker-bench-", dir=args.workdir))
    try:
        data = args.data
        listens = args.listens
        if data is None:
            data = workdir / "dump"
            print(
                f"synthesizing {listens:,} listens, {args.users:,} users, {args.artists:,} artists"
            )
            made = synthesize_dump(data, listens, args.users, args.artists, args.seed)
            rows = made["summary"]["rows"]
            print(
                f"{'synth':<16}{made['seconds']:7.1f} s   peak {made['peak_gb']:5.2f} GB   "
                f"{made['bytes'] / 1e9:.2f} GB of parquet, {rows['full'] + rows['incremental']:,}"
                f" rows ({made['summary']['duplicates']:,} repeated across dumps)"
            )
        else:
            summary = data / "synth.json"
            if summary.exists():
                listens = json.loads(summary.read_text())["listens"]
        warm_page_cache(data)
        print(
            f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
        )
        reference = child("reference", data)
        if args.against is not None:
            compare_against(args.against, sides, data, args.repeat)
        results = [
            child(side, data, args.profile, memory_limit=args.memory_limit) for side in sides
        ]
        print(
            f"{'polars group_by':<16}{reference['seconds']:7.1f} s   peak "
            f"{reference['peak_gb']:5.2f} GB   {reference['users']:,} users x "
            f"{reference['items']:,} artist names, {reference['nnz']:,} non-zeros "
            "(scan -> group_by -> len -> CSR)"
        )
        target_gb = TARGET_PEAK_GB.get(listens)
        for ours in results:
            ratio = ours["seconds"] / reference["seconds"]
            peak = f"peak {ours['peak_gb']:.2f} GB" + (
                f" (target <= {target_gb} GB)" if target_gb else ""
            )
            print(
                f"{ours['side']:<16}{ours['seconds']:7.1f} s   peak {ours['peak_gb']:5.2f} GB   "
                f"{ours['users']:,} users x {ours['items']:,} items, {ours['nnz']:,} non-zeros, "
                f"{ours['events']:,} events, {ours['duplicates_dropped']:,} duplicates dropped"
            )
            print(
                f"{'':<16}ratio {ratio:.2f} x the bare group_by (target <= {TARGET_RATIO} x); "
                + peak
                + f"; {ours['listens'] / ours['seconds'] * 60 / 1e6:.1f} M listens a minute"
                + f" (load average {ours['load']:.1f} at its end)"
            )
        by_side = {ours["side"]: ours for ours in results}
        if "spilled" in by_side and "ingest" in by_side:
            spilled, memory = by_side["spilled"], by_side["ingest"]
            print(
                f"{'spilled':<16}{spilled['seconds'] / memory['seconds']:.2f} x the in-memory "
                f"ingest's time; peak {spilled['peak_gb']:.2f} GB against a budget of "
                f"{args.memory_limit} (in memory: {memory['peak_gb']:.2f} GB)"
            )
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

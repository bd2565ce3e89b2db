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
    # against other checkouts' code (e.g. before a change), alternating with ours and the
    # reference, 3 rounds; prints the median seconds of each ingest step too:
    .venv/bin/python bench/ingest.py --data DIR --ours ingest --against /tmp/before/src \
        --against /work/main/src --repeat 3
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


def run_ours(
    side: str,
    data: Path,
    profile: bool,
    memory_limit: str | None = None,
    output: Path | None = None,
) -> dict:
    from tastemaker.data import ingest as ingest_module
    from tastemaker.data.ingest import ingest

    # The seconds of each step ingest times (open, encode, ..., tracks, write): its report,
    # which prints them on a console, hands them here instead (any checkout's ingest has it).
    steps: dict[str, float] = {}
    ingest_module._Steps.report = lambda self: steps.update(self.timings)  # type: ignore[method-assign]

    options = dict(OURS[side])
    if side == "spilled":
        from tastemaker.data.spill import parse_size  # not in checkouts older than spilling

        options["memory_limit"] = parse_size(memory_limit or "1GB")
    events = [0]

    def work():
        if output is not None:  # kept, to compare the files of two checkouts
            result = ingest([data], output, level="artist", **options)
            events[0] = events_in(output)
            return result
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
        "steps": steps,
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
    output: Path | None = None,
) -> dict:
    """Run one side in a fresh interpreter; its peak RSS is its own. ``src``: import
    tastemaker from that source folder instead (another checkout's ``src``); ``output``:
    ingest into that directory and keep it."""
    command = [sys.executable, __file__, "--side", side, "--data", str(data)]
    if output is not None:
        command += ["--output", str(output)]
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


def steps_line(runs: list[dict]) -> str:
    """Median seconds per ingest step over ``runs`` ("encode 6.3 s · tracks 1.1 s ...")."""
    import statistics

    names = list(dict.fromkeys(name for run in runs for name in run.get("steps", {})))
    medians = {n: statistics.median(r["steps"].get(n, 0.0) for r in runs) for n in names}
    return " · ".join(f"{name} {seconds:.1f} s" for name, seconds in medians.items())


def same_files(this: Path, other: Path) -> str:
    """Whether two ingested directories hold the same files (their manifests' checksums)."""
    files = [json.loads((d / "manifest.json").read_text())["files"] for d in (this, other)]
    differ = sorted(
        n for n in files[0].keys() | files[1].keys() if files[0].get(n) != files[1].get(n)
    )
    return "same files, byte for byte" if not differ else f"files differ: {', '.join(differ)}"


def kept(outputs: Path | None, side: str, name: str, round_: int) -> Path | None:
    """Where a side's ingest is kept (its first round only), or None."""
    return None if outputs is None or round_ else outputs / f"{side}-{name}"


def compare_against(
    srcs: list[Path], sides: list[str], data: Path, repeat: int, outputs: Path | None = None
) -> None:
    """Our sides with this checkout and with each of ``srcs``, and the polars reference,
    alternating round by round (a busy machine's load drifts): median seconds, per-step
    medians and peaks of each, and the ratios to this checkout and to the reference.
    ``outputs``: keep each checkout's first ingest there and compare their files."""
    import statistics

    for side in sides:
        runs: dict[str, list[dict]] = {"this": [], "reference": []}
        runs |= {str(src): [] for src in srcs}
        loads = []

        for round_ in range(repeat):
            runs["reference"].append(child("reference", data))
            for k, src in enumerate(srcs):
                runs[str(src)].append(
                    child(side, data, src=src, output=kept(outputs, side, str(k), round_))
                )
            runs["this"].append(child(side, data, output=kept(outputs, side, "this", round_)))
            loads.append(os.getloadavg()[0])
        median = {k: statistics.median(r["seconds"] for r in runs[k]) for k in runs}
        print(f"{side} (median of {repeat}; reference: polars group_by, same rounds)")
        for key, label in [("this", "this checkout"), *[(str(s), str(s)) for s in srcs]]:
            peak = max(r["peak_gb"] for r in runs[key])
            print(
                f"  {label:<28}{median[key]:7.1f} s  peak {peak:5.2f} GB  "
                f"{runs[key][0]['items']:,} items  this/it {median['this'] / median[key]:.3f}  "
                f"it/reference {median[key] / median['reference']:.2f}  runs "
                f"{[round(r['seconds'], 1) for r in runs[key]]}"
            )
            print(f"  {'':<28}{steps_line(runs[key])}")
            if outputs is not None and key != "this":
                other = outputs / f"{side}-{srcs.index(Path(key))}"
                print(f"  {'':<28}{same_files(outputs / f'{side}-this', other)}")
        print(f"  {'polars group_by':<28}{median['reference']:7.1f} s")
        print(
            f"  load average after each round {[round(x, 1) for x in loads]}; now "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
        )


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
        action="append",
        help="also time our sides with tastemaker imported from this src folder (a baseline; "
        "repeat the option for several)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per side with --against")
    parser.add_argument(
        "--outputs",
        type=Path,
        help="with --against: keep each checkout's first ingest in this new folder and "
        "compare their files (manifest checksums)",
    )
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=[*OURS, "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:  # inside a child process
        if args.side == "reference":
            result = run_reference(args.data)
        else:
            result = run_ours(args.side, args.data, args.profile, args.memory_limit, args.output)
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
        if args.against:
            compare_against(args.against, sides, data, args.repeat, args.outputs)
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
            print(f"{'':<16}steps: {steps_line([ours])}")
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

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
    # the spilled path against another checkout, under one budget (--memory-limit):
    nice .venv/bin/python bench/ingest.py --data DIR --ours spilled --memory-limit 100MB \
        --against /work/main/src --outputs /tmp/compare
    # --append: the dump split by time into a full dump and 3 incrementals (5 % each);
    # full ingest with --keep-runs + 3 appends against one ingest of everything, alternating:
    nice .venv/bin/python bench/ingest.py --data DIR --append 3 --memory-limit 600MB

``--append N`` (``append_mode``): each step in its own process (its own peak RSS): the
full dump ingested with ``keep_runs``, then each incremental appended
(``tastemaker.data.append``), against ``ingest`` of all the dumps together under the same
budget; the two final directories are compared (every checksum but the kept runs').
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
    # (``_Steps`` in checkouts older than data.append.)
    steps_class = getattr(ingest_module, "Steps", None) or ingest_module._Steps  # type: ignore[attr-defined]
    steps_class.report = lambda self: steps.update(self.timings)

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
    srcs: list[Path],
    sides: list[str],
    data: Path,
    repeat: int,
    outputs: Path | None = None,
    memory_limit: str | None = None,
) -> None:
    """Our sides with this checkout and with each of ``srcs``, and the polars reference,
    alternating round by round (a busy machine's load drifts): median seconds, per-step
    medians and peaks of each, and the ratios to this checkout and to the reference.
    ``outputs``: keep each checkout's first ingest there and compare their files;
    ``memory_limit``: the spilled side's budget."""
    import statistics

    for side in sides:
        runs: dict[str, list[dict]] = {"this": [], "reference": []}
        runs |= {str(src): [] for src in srcs}
        loads = []

        for round_ in range(repeat):
            runs["reference"].append(child("reference", data))
            for k, src in enumerate(srcs):
                output = kept(outputs, side, str(k), round_)
                runs[str(src)].append(child(side, data, False, src, memory_limit, output))
            output = kept(outputs, side, "this", round_)
            runs["this"].append(child(side, data, False, None, memory_limit, output))
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


def split_dump(dump: Path, out: Path, pieces: int, share: float) -> list[Path]:
    """``dump``'s full dump split by time: a full dump, then ``pieces`` incrementals of
    ``share`` of its listens each (ListenBrainz's layout); each incremental repeats the last
    1,000 listens of the one before (duplicates the append must drop), the last also holds
    ``dump``'s own incremental."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted((dump / "full-dump-1").glob("*.parquet"), key=lambda p: int(p.stem))
    full = pa.concat_tables([pq.read_table(f) for f in files])
    times = pc.cast(full["listened_at"], pa.int64()).to_numpy()
    cuts = [1 - share * k for k in range(pieces, 0, -1)]
    bounds = [-np.inf, *np.quantile(times, cuts), np.inf]
    folders, previous = [], None
    for number, (low, high) in enumerate(zip(bounds[:-1], bounds[1:], strict=True), 1):
        piece = full.filter(pa.array((times >= low) & (times < high)))
        if previous is not None:
            piece = pa.concat_tables([previous.slice(max(previous.num_rows - 1000, 0)), piece])
        if number == pieces + 1:
            extra = sorted((dump / "incremental-dump-2").glob("*.parquet"))
            piece = pa.concat_tables([piece, *map(pq.read_table, extra)])
        folder = out / (f"incremental-dump-{number}" if number > 1 else "full-dump-1")
        folder.mkdir(parents=True)
        pq.write_table(piece, folder / "0.parquet", row_group_size=500_000)
        folders.append(folder)
        previous = piece
    return folders


def run_append_step(step: str, sources: list[Path], out: Path, memory_limit: str | None) -> dict:
    """One step of ``append_mode`` in this process: ``together``, ``keep-runs`` or ``append``."""
    from tastemaker.data.append import append
    from tastemaker.data.ingest import ingest
    from tastemaker.data.spill import parse_size

    budget = parse_size(memory_limit) if memory_limit else None
    started = time.perf_counter()
    if step == "append":
        result = append(sources, out, memory_limit=budget)
        assert result is not None
    else:
        result = ingest(sources, out, memory_limit=budget, keep_runs=step == "keep-runs")
    return {
        "step": step,
        "seconds": time.perf_counter() - started,
        "peak_gb": peak_rss_gb(),
        "listens": int(result.source["listens"]),
        "load": os.getloadavg()[0],
    }


def append_child(step: str, sources: list[Path], out: Path, memory_limit: str | None) -> dict:
    command = [sys.executable, __file__, "--side", "append-step", "--step", step]
    command += ["--step-out", str(out), "--memory-limit", memory_limit or ""]
    command += ["--step-sources", *map(str, sources)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{step} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def comparable(out: Path) -> dict:
    """An ingested directory's manifest without the kept runs and the source paths."""
    content = json.loads((out / "manifest.json").read_text())
    content["files"] = {k: v for k, v in content["files"].items() if not k.startswith("runs/")}
    del content["source"]["paths"]
    return content


def append_mode(data: Path, workdir: Path, pieces: int, share: float, args) -> None:
    """Full ingest with kept runs + ``pieces`` appends against one ingest of everything."""
    dumps = split_dump(data, workdir / "split", pieces, share)
    warm_page_cache(workdir / "split")
    limit = args.memory_limit
    sizes = [sum(f.stat().st_size for f in d.glob("*.parquet")) / 1e6 for d in dumps]
    print(f"split: {', '.join(f'{d.name} {s:.0f} MB' for d, s in zip(dumps, sizes, strict=True))}")
    for run in range(args.repeat):
        together = append_child("together", [dumps[0].parent], workdir / "together", limit)
        chain = [append_child("keep-runs", dumps[:1], workdir / "appended", limit)]
        chain += [append_child("append", [d], workdir / "appended", limit) for d in dumps[1:]]
        same = comparable(workdir / "together") == comparable(workdir / "appended")
        kept = (workdir / "appended" / "runs").rglob("*")
        runs = sum(f.stat().st_size for f in kept if f.is_file())
        total = sum(step["seconds"] for step in chain)
        print(
            f"run {run + 1}: together {together['seconds']:.1f} s, peak "
            f"{together['peak_gb']:.2f} GB (load {together['load']:.1f}); "
            f"{together['listens']:,} listens; --memory-limit {limit or 'default'}"
        )
        for step in chain:
            print(
                f"  {step['step']:<10}{step['seconds']:7.1f} s   peak {step['peak_gb']:.2f} GB   "
                f"{step['listens']:,} listens after it   "
                f"{step['seconds'] / together['seconds']:.2f} x together (load {step['load']:.1f})"
            )
        appends = [s["seconds"] for s in chain[1:]]
        print(
            f"  full + {pieces} appends {total:.1f} s = {total / together['seconds']:.2f} x "
            f"together; one append {min(appends):.1f}-{max(appends):.1f} s "
            f"({min(appends) / together['seconds']:.2f}-{max(appends) / together['seconds']:.2f}"
            f" x together); peak {max(s['peak_gb'] for s in chain):.2f} GB; kept runs "
            f"{runs / 1e6:.0f} MB; same directory: {same}"
        )
        print(f"  load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        shutil.rmtree(workdir / "together")
        shutil.rmtree(workdir / "appended")


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
        "--append",
        type=int,
        default=0,
        metavar="N",
        help="time a full ingest with --keep-runs + N appended incrementals against one "
        "ingest of everything (the dump is split by time; see the docstring)",
    )
    parser.add_argument(
        "--append-share", type=float, default=0.05, help="each incremental's share of listens"
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--step-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--step-sources", type=Path, nargs="*", help=argparse.SUPPRESS)
    parser.add_argument(
        "--outputs",
        type=Path,
        help="with --against: keep each checkout's first ingest in this new folder and "
        "compare their files (manifest checksums)",
    )
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--side", choices=[*OURS, "reference", "append-step"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.side == "append-step":
        step = run_append_step(args.step, args.step_sources, args.step_out, args.memory_limit)
        print(json.dumps(step))
        return
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
        if args.append:
            append_mode(data, workdir, args.append, args.append_share, args)
            return
        reference = child("reference", data)
        if args.against:
            compare_against(args.against, sides, data, args.repeat, args.outputs, args.memory_limit)
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

"""Metadata loading benchmark (issue 15): joining 10 M tag rows to a 1 M-item catalogue.

Target: under 30 s and under 2 GB on this machine. The fixture is synthetic: a catalogue of
``--items`` artists (half keyed by MBID, half by name, as ingested data mixes them; some names
accented) saved as an ingested directory, and a CSV of ``--rows`` ``item,tag,weight`` rows
naming half of its items by MBID and half by a differently-cased name (which the matching rule
folds), over a Zipf vocabulary of 5,000 tags. Each measurement runs in a fresh process, so its
peak resident memory (``VmHWM``, catalogue loading included) is its own:

* ours: ``Interactions.load`` + ``attach_metadata`` (read, check every row, match, build the
  item x tag matrix);
* reference: polars ``read_csv`` of the same file, the floor of reading it at all.

    .venv/bin/python bench/metadata.py                        # 1 M items, 10 M rows
    .venv/bin/python bench/metadata.py --items 100000 --rows 1000000   # quicker
    # against another checkout's code (e.g. before a change), alternating, 3 runs each,
    # on a fixture kept in a folder (made there the first time):
    .venv/bin/python bench/metadata.py --fixture /tmp/fx --against /tmp/before/src --repeat 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

TARGET_SECONDS = 30.0
TARGET_BYTES = 2 << 30


def _catalogue(n_items: int, seed: int) -> tuple[list[str], list[str]]:
    """Item ids (MBIDs for even items, folded names for odd ones) and display names."""
    rng = np.random.default_rng(seed)
    words = np.asarray(["Velvet", "Neon", "Glass", "Echo", "Sólo", "Night", "Dream", "Ríver"])
    first = words[rng.integers(0, len(words), n_items)]
    names = [f"{w} Band {i:x}" for i, w in enumerate(first.tolist())]
    hex_digits = rng.integers(0, 16, (n_items, 32))
    table = np.asarray(list("0123456789abcdef"))
    raw = ["".join(row) for row in table[hex_digits].tolist()]
    mbids = [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in raw]
    ids = [mbids[i] if i % 2 == 0 else names[i].lower() for i in range(n_items)]
    return ids, names


def make_fixture(folder: Path, n_items: int, n_rows: int, seed: int = 0) -> tuple[Path, Path]:
    from tastemaker.data.interactions import Interactions, Vocabulary, empty_metadata

    ids, names = _catalogue(n_items, seed)
    rng = np.random.default_rng(seed + 1)
    n_users = 1000
    rows = np.repeat(np.arange(n_users), 20)
    cols = rng.integers(0, n_items, len(rows))
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), (n_users, n_items))
    metadata = empty_metadata(ids, names).with_columns(artist_name=pl.Series(names))
    data = Interactions(
        matrix, Vocabulary([f"u{u}" for u in range(n_users)]), Vocabulary(ids), metadata
    )
    data.save(folder / "data")
    item = rng.integers(0, n_items, n_rows)
    tag = np.minimum(rng.zipf(1.3, n_rows), 5000)
    by_id = item % 2 == 0
    frame = pl.DataFrame(
        {
            "index": item,
            "tag": pl.Series([f"tag {t}" for t in range(5001)]).gather(tag),
            "weight": rng.integers(1, 100, n_rows),
        }
    )
    reference = pl.Series(np.where(by_id, np.asarray(ids, dtype=object)[item], None), dtype=pl.Utf8)
    upper = pl.Series(np.asarray(names, dtype=object)[item], dtype=pl.Utf8).str.to_uppercase()
    frame = frame.with_columns(item=reference.fill_null(upper)).select("item", "tag", "weight")
    frame.write_csv(folder / "tags.csv")
    return folder / "data", folder / "tags.csv"


def _peak_bytes() -> int:
    """This process's peak resident memory. ``ru_maxrss`` is not it: Linux carries it across
    the fork and exec that start a spawned child, so a child reports its parent's peak
    (the fixture's generation) when that is higher; ``VmHWM`` belongs to the new process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _ours(data: str, csv: str, src: str | None, out) -> None:
    if src:  # another checkout's code (a spawned child imports tastemaker afresh)
        sys.path.insert(0, src)
    from tastemaker.data.interactions import Interactions
    from tastemaker.data.metadata.attach import attach_metadata

    started = time.perf_counter()
    catalogue = Interactions.load(data)
    loaded = time.perf_counter()
    result = attach_metadata(catalogue, [csv])
    done = time.perf_counter()
    report = result.source["metadata"][0]
    out.put(
        {
            "seconds": done - loaded,
            "load_seconds": loaded - started,
            "peak": _peak_bytes(),
            "matched_rows": report["tag_rows_matched"],
            "items_matched": report["items_matched"],
            "tags": len(result.metadata.tags),
        }
    )


def _reference(csv: str, out) -> None:
    started = time.perf_counter()
    frame = pl.read_csv(csv, infer_schema=False)
    out.put(
        {
            "seconds": time.perf_counter() - started,
            "peak": _peak_bytes(),
            "rows": frame.height,
        }
    )


def _run(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def _median_run(data: Path, csv: Path, src: str | None, runs: list[dict]) -> dict:
    runs.append(_run(_ours, str(data), str(csv), src))
    return runs[-1]


def _summary(runs: list[dict]) -> dict:
    """The median run by time (its peak memory is the median's too: one run's own figures)."""
    middle = statistics.median_low(r["seconds"] for r in runs)
    return next(r for r in runs if r["seconds"] == middle)


def _measure(data: Path, csv: Path, args: argparse.Namespace) -> None:
    this: list[dict] = []
    against: list[dict] = []
    for _ in range(args.repeat):
        _median_run(data, csv, None, this)
        if args.against:
            _median_run(data, csv, str(args.against), against)
    reference = _run(_reference, str(csv))
    ours = _summary(this)
    print(
        f"ours: {ours['seconds']:.1f} s (catalogue load {ours['load_seconds']:.1f} s before "
        f"it), peak {ours['peak'] / 2**30:.2f} GiB; {ours['matched_rows']:,} rows matched, "
        f"{ours['items_matched']:,} items, {ours['tags']:,} tags"
        + (
            f" (median of {args.repeat}: {[round(r['seconds'], 1) for r in this]})"
            if args.repeat > 1
            else ""
        )
    )
    if against:
        base = _summary(against)
        print(
            f"against {args.against}: {base['seconds']:.1f} s, peak {base['peak'] / 2**30:.2f} "
            f"GiB; runs {[round(r['seconds'], 1) for r in against]}; this / against "
            f"{ours['seconds'] / base['seconds']:.2f}x"
        )
    print(
        f"reference (polars read_csv): {reference['seconds']:.1f} s, peak "
        f"{reference['peak'] / 2**30:.2f} GiB"
    )
    print(
        f"ratio: {ours['seconds'] / reference['seconds']:.1f}x the time, "
        f"{ours['peak'] / reference['peak']:.1f}x the memory"
    )
    seconds_ok = ours["seconds"] < TARGET_SECONDS
    memory_ok = ours["peak"] < TARGET_BYTES
    print(
        f"target < {TARGET_SECONDS:.0f} s: {'met' if seconds_ok else 'MISSED'}; "
        f"< 2 GiB: {'met' if memory_ok else 'MISSED'}"
    )
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--fixture", type=Path, help="keep the fixture here (reused if there)")
    parser.add_argument("--against", type=Path, help="another checkout's src/ to time too")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.fixture or Path(tmp)
        data, csv = folder / "data", folder / "tags.csv"
        if not csv.exists():
            folder.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            make_fixture(folder, args.items, args.rows)
            print(f"fixture made in {time.perf_counter() - started:.0f} s")
        print(f"fixture: {folder} ({csv.stat().st_size / 1e6:.0f} MB CSV)")
        _measure(data, csv, args)


if __name__ == "__main__":
    main()

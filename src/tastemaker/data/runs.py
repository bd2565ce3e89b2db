"""Kept runs: a spilled ingest's runs left in the output (``ingest --keep-runs``), so that
incremental ListenBrainz dumps can be added later without re-reading the full dump
(``data.append``).

An ingested directory with kept runs holds ``runs/`` beside its other files, covered by the
directory's manifest like every file (a changed run fails its checksum before it is read):

    runs/p{k}/*.parquet  the spill's runs (``data.spill``): user, time, count, item and track
                         combination hashes, global row, and the ListenBrainz dedup key
                         (``ms``: listened_at in ms; ``msid``: a hash of recording_msid)
    runs/items.parquet   the item combinations (listens, last row), as the spill keeps them
    runs/tracks.parquet  the distinct track combinations
    runs/state.json      partitions, rows so far, the ingest's level, filters and events
                         setting, the names of the dumps read, the polars version (its
                         hashes key the runs, and polars does not promise them stable)

The rule an appended dump follows is ``readers.listenbrainz.merge_dumps``'s: a listen whose
(user, listened_at, recording_msid) is already in the runs, or earlier in the same dump, is
dropped (the first copy is kept), so appending dumps one at a time equals ingesting them
together.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import polars as pl

from tastemaker.artifacts import file_sha256, read_manifest, strict_json
from tastemaker.data.filters import Filters
from tastemaker.data.interactions import KIND
from tastemaker.data.readers import SourceData
from tastemaker.data.readers.listenbrainz import DEDUP_KEYS
from tastemaker.data.spill import Spill, dedup_key
from tastemaker.data.spill_tracks import progress_bar
from tastemaker.errors import ArtifactError, DataError, UsageError

RUNS = "runs"
STATE = "state.json"
STATE_KIND = "spill-runs"
STATE_VERSION = 1
# Small files rewritten by every append: copied into the new output, never linked.
REWRITTEN = ("items.parquet", "tracks.parquet", STATE)
FILTER_FIELDS = ("min_user_items", "min_item_users", "start", "end", "max_listens_per_day")


def kept_parts(
    keep: bool, source: SourceData, listens: bool | None, metadata: Sequence[Any], parts: int
) -> int:
    """The partitions of an ingest (``parts``: what the budget needs); with ``keep``
    (``--keep-runs``) at least two, for ListenBrainz Parquet dumps without a listens table
    or metadata (an append would have to extend them)."""
    if not keep:
        return parts
    if source.format != "listenbrainz":
        raise UsageError(
            f"--keep-runs keeps ListenBrainz Parquet dumps' runs; this source is {source.format}"
        )
    if listens:
        raise UsageError("--keep-runs writes no listens table; leave out --listens")
    if metadata:
        raise UsageError("--keep-runs takes no --metadata; add it with tastemaker metadata")
    return max(parts, 2)


def start_keeping(spill: Spill, source: SourceData, filters: Filters, keep_events: bool) -> None:
    """Make ``spill`` keep its runs as the output's ``runs/`` when it closes."""
    spill.state = {
        "filters": {
            name: (value.isoformat() if isinstance(value, datetime) else value)
            for name in FILTER_FIELDS
            for value in [getattr(filters, name)]
        },
        "events": keep_events,
        "dumps": [name for path in source.paths for name in dump_names(Path(path))],
    }
    spill.on_close = keep_runs


def keep_runs(spill: Spill) -> None:
    """What the next append reads: the runs, both combination tables, ``state.json``; the
    spill's folder becomes ``runs/`` (the manifest, written next, covers it)."""
    folder = spill.folder
    for path in folder.glob("*.npy"):
        path.unlink()  # the partitions' pairs and events: every append reduces again
    if not (folder / "items.parquet").exists():
        raise DataError("no listens to keep runs of")
    frames = [pl.read_parquet(p) for p in sorted((folder / "tracks").glob("*.parquet"))]
    if spill.prefix:  # an append: the kept combinations first
        frames.insert(0, pl.read_parquet(folder / "tracks.parquet"))
    tracks = pl.concat(frames).unique(["track", "check_track"], keep="first", maintain_order=True)
    _replace(folder / "tracks.parquet", tracks.write_parquet)
    shutil.rmtree(folder / "tracks", ignore_errors=True)
    state = {
        "kind": STATE_KIND,
        "version": STATE_VERSION,
        "polars": pl.__version__,
        "level": spill.level,
        "parts": spill.parts,
        "rows": spill.rows,
        "has_time": spill.has_time,
        "single": bool(spill.single),
        "appends": int(spill.prefix[1:-1]) if spill.prefix else 0,
        "settings": spill.state,
    }
    _replace(folder / STATE, lambda path: path.write_text(json.dumps(state, indent=2) + "\n"))
    folder.rename(folder.with_name(RUNS))


def _replace(path: Path, write: Any) -> None:
    """Write through a new file (``path`` may be linked to the previous output's)."""
    new = path.with_name(path.name + ".new")
    write(new)
    os.replace(new, path)


def read_state(out: Path) -> tuple[dict, dict]:
    """The manifest and kept-runs state of the ingested directory ``out``; one clear error
    if it is not one, or was ingested without ``--keep-runs``."""
    manifest = read_manifest(out, kind=KIND, verify=False)
    files = manifest["files"]
    if f"{RUNS}/{STATE}" not in files:
        raise UsageError(
            f"{out} was ingested without --keep-runs, so there is nothing to append to; "
            "ingest the full dump again with --keep-runs"
        )
    path = out / RUNS / STATE
    if not path.is_file() or file_sha256(path) != files[f"{RUNS}/{STATE}"]:
        raise ArtifactError(f"{path}: checksum mismatch; the directory is corrupted")
    try:
        state = strict_json(path.read_bytes())
        if state.get("kind") != STATE_KIND or state.get("version") != STATE_VERSION:
            raise ValueError("not a kept-runs state this tastemaker reads")
        for key, kind in (("parts", int), ("rows", int), ("appends", int), ("level", str)):
            if type(state[key]) is not kind:
                raise ValueError(f"{key} must be {kind.__name__}")
        if not all(isinstance(n, str) for n in state["settings"]["dumps"]):
            raise ValueError("dumps must be names")
        filters(state)
    except (ValueError, KeyError, TypeError, AttributeError, UsageError) as exc:
        raise ArtifactError(f"{path}: unreadable kept-runs state ({exc})") from None
    if state["polars"] != pl.__version__:
        raise UsageError(
            f"{out}: its runs were written with polars {state['polars']} (whose hashes key "
            f"them), this is polars {pl.__version__}; append with that version, or ingest again"
        )
    return manifest, state


def filters(state: dict) -> Filters:
    """The filters of the ingest that kept the runs."""
    given = state["settings"]["filters"]
    values = {name: given[name] for name in FILTER_FIELDS}
    for name in ("start", "end"):
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    return Filters(**values)


def copy_runs(out: Path, manifest: dict, folder: Path, console: Any | None = None) -> None:
    """The runs of ``out`` into ``folder`` (hard links where the file system allows; the
    files rewritten by an append are copied), each checked against the manifest."""
    listed = {
        name.removeprefix(f"{RUNS}/"): digest
        for name, digest in manifest["files"].items()
        if name.startswith(f"{RUNS}/")
    }
    source = out / RUNS
    found = {p.relative_to(source).as_posix() for p in source.rglob("*") if not p.is_dir()}
    for name in sorted(found - set(listed)):
        raise ArtifactError(f"{source / name}: not covered by the manifest's checksums")
    for name in sorted(set(listed) - found):
        raise ArtifactError(f"{source / name}: listed in the manifest, missing")
    with progress_bar(console) as progress:
        task = progress and progress.add_task("checking kept runs", total=len(listed))
        for name, digest in listed.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(source / name, target, copy=name in REWRITTEN)
            if file_sha256(target) != digest:
                raise ArtifactError(f"{source / name}: checksum mismatch; the runs were changed")
            if progress:
                progress.advance(task)


def _link_or_copy(source: Path, target: Path, copy: bool) -> None:
    if source.is_symlink() or not source.is_file():
        raise ArtifactError(f"{source}: not a regular file; kept runs hold files")
    if not copy:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another file system, or links not allowed: a copy
    shutil.copyfile(source, target)


def resume(folder: Path, state: dict, memory_limit: int, console: Any | None = None) -> Spill:
    """A ``Spill`` over the kept runs copied into ``folder`` (``copy_runs``), ready to
    ``partition`` more listens after its rows and to keep its runs again."""
    spill = Spill(folder, state["level"], state["parts"], memory_limit, console, keep=True)
    spill.rows, spill.has_time, spill.single = state["rows"], state["has_time"], state["single"]
    spill.state, spill.on_close = state["settings"], keep_runs
    spill.prefix = f"a{state['appends'] + 1}-"
    spill.add_combinations(pl.read_parquet(folder / "items.parquet"))
    spill.tracks.add(pl.read_parquet(folder / "tracks.parquet"))
    return spill


def fresh_listens(folder: Path, listens: pl.LazyFrame) -> pl.LazyFrame:
    """The listens of one dump not already in the runs in ``folder``, nor earlier in the
    dump itself (``merge_dumps``' rule: the first copy is kept)."""
    listens = listens.unique(subset=DEDUP_KEYS, keep="first", maintain_order=True)
    keyed = listens.with_columns(dedup_key())
    keys = keyed.select("user", "ms", "msid").unique().collect(engine="streaming")
    if keys.is_empty():
        return listens
    low, high = cast(int, keys.get_column("ms").min()), cast(int, keys.get_column("ms").max())
    files = sorted(folder.glob("p*/*.parquet"))
    if not files:
        return listens
    seen = (
        pl.scan_parquet(files)
        .select("user", "ms", "msid")
        .filter(pl.col("ms").is_between(low, high))
        .join(keys.lazy(), on=["user", "ms", "msid"], how="semi")
        .collect(engine="streaming")
    )
    if seen.is_empty():
        return listens
    fresh = keyed.join(seen.lazy(), on=["user", "ms", "msid"], how="anti", maintain_order="left")
    return fresh.drop("ms", "msid")


def dump_names(path: Path) -> list[str]:
    """The names of the ListenBrainz dumps at ``path`` (as the reader finds them: a file,
    a dump folder, or a folder of dump folders), in the order the reader reads them."""
    if path.is_file():
        return [path.parent.name]
    if any(path.glob("*.parquet")):
        return [path.name]
    folders = [p for p in path.iterdir() if p.is_dir() and any(p.glob("*.parquet"))]
    return sorted((p.name for p in folders), key=natural_key)


def natural_key(name: str) -> list:
    """Names in dump order: ``incremental-dump-10`` after ``incremental-dump-9``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


__all__ = [
    "RUNS",
    "STATE",
    "copy_runs",
    "dump_names",
    "filters",
    "fresh_listens",
    "keep_runs",
    "kept_parts",
    "natural_key",
    "read_state",
    "resume",
    "start_keeping",
]

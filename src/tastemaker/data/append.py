"""``ingest --append``: incremental ListenBrainz dumps added to a directory ingested with
``--keep-runs``, without re-reading the full dump.

ListenBrainz publishes a full dump every two weeks and an incremental every day. An
ingest with ``--keep-runs`` leaves its spilled runs in the output (``data.runs``); each
appended dump is then

1. checked: the directory's runs against its manifest (a changed file is an error, and
   nothing is written), the dump's name against those already read (an older dump is an
   error, the same one again a no-op);
2. deduplicated against the runs and within itself by ``merge_dumps``' rule (same user,
   ``listened_at`` and ``recording_msid``: the first copy is kept);
3. partitioned into the same runs, with row indices after the existing ones;

and everything is reduced again from the runs (``Spill.reduce``: the identity rule is
global, so a new spelling can move old listens to another item), a partition at a time,
into a new directory that replaces the old one atomically. The result is the directory an
ingest of all the dumps together writes, byte for byte, apart from the manifest's
``source.paths`` and the runs themselves (tests/data/test_append.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from tastemaker.artifacts import atomic_directory
from tastemaker.data.filters import FilterReport
from tastemaker.data.ingest import Steps, k_core_step, write_with_tracks
from tastemaker.data.interactions import KIND, Interactions
from tastemaker.data.readers import ReaderOptions, final_stats, read_sources, reading
from tastemaker.data.runs import (
    copy_runs,
    dump_names,
    filters,
    fresh_listens,
    natural_key,
    read_state,
    resume,
)
from tastemaker.data.spill import FOLDER, Spill, default_memory_limit, estimate_listens
from tastemaker.errors import UsageError


@dataclasses.dataclass
class _Read:
    """What the appended dumps add to the manifest's ``source``."""

    paths: list[str] = dataclasses.field(default_factory=list)
    dropped: int = 0
    skipped: int = 0
    example: str | None = None
    left_out: list[str] = dataclasses.field(default_factory=list)


def append(
    sources: Sequence[str | Path],
    out: str | Path,
    memory_limit: int | None = None,
    level: str | None = None,
    console: Any | None = None,
) -> Interactions | None:
    """Append the ListenBrainz dumps ``sources`` (each one dump, oldest first) to ``out``,
    ingested with ``keep_runs``; the new ``Interactions``, or None when every dump was
    already appended (nothing is written). ``level`` (None: the directory's) must be the
    directory's; the filters and events setting are those of the first ingest."""
    out = Path(out)
    manifest, state = read_state(out)
    if level is not None and level != state["level"]:
        raise UsageError(f"{out} is at {state['level']} level; --append keeps its level")
    paths = _new_dumps([Path(s) for s in sources], state["settings"]["dumps"], out)
    if not paths:
        return None
    steps, budget = Steps(console), memory_limit or default_memory_limit()
    rule, events = filters(state), bool(state["settings"]["events"])
    read = _Read()
    with atomic_directory(out, kind=KIND, inputs=map(str, paths)) as tmp:
        folder = tmp / FOLDER
        folder.mkdir()
        with steps.step("check", "", status=False):
            copy_runs(out, manifest, folder, console)
        spill = resume(folder, state, budget, console)
        with steps.step("append", "", status=False):
            for path in paths:
                _append_dump(spill, path, state["level"], read)
                spill.state["dumps"].append(dump_names(path)[0])
        with steps.step("spill", "", status=False):
            result = spill.reduce(rule, events)
        report = FilterReport(result.filter_steps)
        interactions = k_core_step(steps, result.interactions, rule, report, spill)
        info = _source_info(manifest["source"], read, result, report)
        interactions = dataclasses.replace(interactions, source=info)
        interactions = write_with_tracks(steps, None, interactions, spill, tmp, out)
    steps.report()
    return interactions


def _new_dumps(paths: list[Path], done: list[str], out: Path) -> list[Path]:
    """The dumps of ``paths`` still to append, checked: one dump each, in order, none older
    than the last one read; a dump appended already is left out (an idempotent no-op)."""
    last = max(done, key=natural_key) if done else None
    fresh: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory")
        names = dump_names(path)
        if len(names) != 1:
            raise UsageError(
                f"{path}: holds {len(names)} dumps; --append takes one dump per source "
                "(give each dump folder, oldest first)"
            )
        name = names[0]
        if name in done:
            if fresh:
                raise UsageError(f"{path}: dump {name} was appended already, before the others")
            continue
        if last is not None and natural_key(name) <= natural_key(last):
            raise UsageError(
                f"{path}: dump {name} is older than {last}, the last dump in {out}; dumps are "
                "appended oldest first (ingest again with --keep-runs to add an older one)"
            )
        fresh.append(path)
        last = name
    return fresh


def _append_dump(spill: Spill, path: Path, level: str, read: _Read) -> Any:
    """One dump's new listens into the runs; what it adds to ``read``."""
    source = read_sources([path], format="listenbrainz", options=ReaderOptions(level=level))
    before = spill.rows
    with reading(source):
        rows = source.listens.select(pl.len()).collect(engine="streaming").item()
        spill.partition(fresh_listens(spill.folder, source.listens), estimate_listens([path]))
    stats = final_stats(source)
    read.paths.extend(source.paths)
    read.dropped += rows - (spill.rows - before) + int(stats.get("duplicates_dropped", 0))
    read.skipped += int(stats.get("skipped_rows", 0))
    read.example = read.example or stats.get("skipped_example")
    read.left_out.extend(stats.get("left_out", []))
    return source


def _source_info(old: dict, read: _Read, result: Any, report: FilterReport) -> dict[str, Any]:
    """The manifest's ``source`` of the ingest of everything, in ``ingest``'s key order."""
    info: dict[str, Any] = {
        "format": old["format"],
        "paths": [*old["paths"], *read.paths],
        "level": old["level"],
        "listens": result.listens,
        "duplicates_dropped": int(old["duplicates_dropped"]) + read.dropped,
        "skipped_rows": int(old["skipped_rows"]) + read.skipped,
        "rows_without_item": result.rows_without_item,
        "filters": old["filters"],
        "filtered": report.as_dicts(),
        "listens_table": None,
    }
    if result.identity is not None:
        info["identity"] = result.identity
    example = old.get("skipped_example") or read.example
    if example:
        info["skipped_example"] = example
    if "skipped" in old:
        info["skipped"] = old["skipped"]
    if old.get("left_out") or read.left_out:
        info["left_out"] = [*old.get("left_out", []), *read.left_out]
    return info


__all__ = ["append"]

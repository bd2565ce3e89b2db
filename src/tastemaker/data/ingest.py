"""The ingest pipeline: raw sources -> canonical listens table + ``Interactions`` directory.

``ingest`` reads one or several sources (merging ListenBrainz dumps so a repeated listen
counts once), streams the canonical listens into ``listens.parquet``, reduces them to an
``Interactions`` at the chosen level, applies the filters, and writes everything into one
directory atomically: the directory appears complete or not at all, and its manifest
carries the checksums of every file, ``listens.parquet`` included.

Layout of an ingested directory (see ``Interactions.write_into``)::

    manifest.json     kind "interactions", level, counts, source (format, paths, listens,
                      duplicates dropped, rows skipped, filters and what each removed)
    matrix.npz        user x item play counts (CSR; rows are users) and last-listened times
    users.parquet     user ids, in index order
    items.parquet     item ids and metadata, in index order
    events.npz        every timestamped listen (user, item, time), by user then time
    tags.npz, tag_names.parquet   tag assignments (HetRec; per user)
    metadata_*.npz / .parquet     item x tag weights, tag names, facts (``--metadata``)
    listens.parquet   the canonical listens (``tastemaker.data.schema.LISTENS_SCHEMA``):
                      every listen read, after deduplication and bad-row skipping; the date,
                      bot and k-core filters shape the matrix, not this table. Written by
                      default for text sources (JSON, TSV, CSV: re-reading them is slow);
                      not for sources that already are Parquet (a ListenBrainz dump, another
                      ingested table), where it would be a larger copy of the same listens

Past a memory budget (``memory_limit``, ``--memory-limit``) the listens are spilled to disk
by user and reduced a partition at a time (``tastemaker.data.spill``): same files, byte for
byte. Costs (measured in ``bench/ingest.py``): the source is read once, hashing each string into
a categorical code as it streams; everything after works on integer arrays. With the
listens table the source is read once to write it and the table once more; that write is
the largest single cost (a 20 M-listen dump: about 2.2x the time of the ingest without it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tastemaker.artifacts import atomic_directory
from tastemaker.data.filters import FilterReport, Filters, FilterStep, filter_table, k_core_subset
from tastemaker.data.interactions import KIND, LEVELS, Interactions
from tastemaker.data.listens import encode_listens
from tastemaker.data.load import (
    index_friends,
    index_tags,
    require_interactions,
    resolve_sources,
)
from tastemaker.data.metadata.attach import attach_metadata
from tastemaker.data.pairs import interactions_from_table
from tastemaker.data.readers import (
    LISTENS_FILE,
    ReaderOptions,
    SourceData,
    final_stats,
    read_sources,
    reading,
)
from tastemaker.data.runs import kept_parts, start_keeping
from tastemaker.data.spill import FOLDER as SPILL_FOLDER
from tastemaker.data.spill import Spill, default_memory_limit, estimate_listens, spill_partitions
from tastemaker.data.top_tracks import TrackCollector
from tastemaker.errors import DataError, UsageError

# How the ingest summary names the rows a reader leaves out by rule (``stats["skipped_*"]``).
SKIP_REASONS = {
    "skipped_podcasts": "podcast episodes",
    "skipped_unnamed": "plays naming no track",
}
# Sources that already are Parquet: a canonical copy of them is not written by default.
PARQUET_FORMATS = ("listenbrainz", "listens")


class Steps:  # public: data.append re-runs the steps after the reduction on kept runs
    """A status line per step on a rich console (when given) and the time each took; the
    times are printed once at the end, so a failed run leaves only its error line."""

    def __init__(self, console: Any | None) -> None:
        self.console = console
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str, message: str, status: bool = True) -> Iterator[None]:
        """Time the block; ``status``: show ``message`` meanwhile (off where the block shows
        its own progress bars: rich runs one live display at a time)."""
        started = time.perf_counter()
        live = self.console.status(message) if self.console is not None and status else None
        with live if live is not None else contextlib.nullcontext():
            yield
        self.timings[name] = round(time.perf_counter() - started, 3)

    def report(self) -> None:
        if self.console is not None:
            times = " · ".join(f"{name} {seconds:.1f} s" for name, seconds in self.timings.items())
            self.console.print(f"[dim]{times}[/]")


def ingest(
    sources: Sequence[str | Path],
    out: str | Path,
    format: str | None = None,
    level: str = "artist",
    options: ReaderOptions | None = None,
    filters: Filters | None = None,
    keep_events: bool = True,
    listens: bool | None = None,
    console: Any | None = None,
    force: bool = False,
    metadata: Sequence[str | Path] = (),
    memory_limit: int | None = None,
    keep_runs: bool = False,
) -> Interactions:
    """Ingest ``sources`` into the directory ``out`` and return the ``Interactions``.

    ``format`` overrides detection; ``level``: artist, release or recording; ``options``: the
    CSV columns and bad-row policy; ``filters``: dates, bots, k-core. ``keep_events`` keeps
    every timestamped listen; ``listens`` writes ``listens.parquet`` (None: unless the sources
    are Parquet). ``console`` shows a line per step. ``out`` never overlaps a source and
    replaces only an ingested directory unless ``force`` (``artifacts.check_output``).
    ``metadata``: item tag / fact files, joined after the filters. Past ``memory_limit`` (bytes;
    None: ``spill.default_memory_limit``) or with ``keep_runs`` (kept for ``data.append``) the
    listens spill by user (``data.spill``): same files, byte for byte; no events returned.
    """
    if level not in LEVELS:
        raise UsageError(f"--level must be one of {', '.join(LEVELS)}; got {level!r}")
    filters = filters or Filters()
    # Data set names (tastemaker datasets list) become their cached files, fetched if missing.
    sources, format, options = resolve_sources(list(sources), format, options, level)
    options = dataclasses.replace(options or ReaderOptions(), level=level)
    steps, out = Steps(console), Path(out)
    with steps.step("open", "checking sources"):
        source = read_sources(sources, format=format, options=options)
    if listens is None:
        listens = source.format not in PARQUET_FORMATS
    expected = estimate_listens(source.paths)
    budget = default_memory_limit() if memory_limit is None else memory_limit
    parts = kept_parts(keep_runs, source, listens, metadata, spill_partitions(expected, budget))
    spill: Spill | None = None
    created = _missing_parents(out)
    try:
        with atomic_directory(out, kind=KIND, inputs=map(str, sources), force=force) as tmp:
            if listens:
                with steps.step("listens", "reading sources into listens.parquet"), reading(source):
                    # Uncompressed: lz4 made the table ~15 % smaller but its write ~1.7x
                    # slower (20 M listens), and this write is the largest cost of an ingest.
                    source.listens.sink_parquet(tmp / LISTENS_FILE, compression="uncompressed")
                scan = pl.scan_parquet(tmp / LISTENS_FILE)
            frame = scan if listens else source.listens
            if parts:
                spill = Spill(tmp / SPILL_FOLDER, level, parts, budget, console, keep_runs)
                with steps.step("spill", "", status=False):  # its own progress bars
                    reduced = _reduce_spilled(spill, source, frame, expected, filters, keep_events)
            else:
                reduced = _reduce_in_memory(steps, source, frame, level, filters, keep_events)
            interactions, listens_read, identity, filter_steps, rows_without_item, tracks = reduced
            interactions = _with_side_relations(interactions, source, level)
            report = FilterReport(filter_steps)
            interactions = k_core_step(steps, interactions, filters, report, spill)
            if metadata:
                with steps.step("metadata", "reading and matching metadata"):
                    interactions = attach_metadata(interactions, metadata, options=options)
            table_name = LISTENS_FILE if listens else None
            info = _source_info(source, level, listens_read, rows_without_item, filters, report)
            info |= _skipped_info(source, table_name, identity, options)
            if "metadata" in interactions.source:
                info["metadata"] = interactions.source["metadata"]
            interactions = dataclasses.replace(interactions, source=info)
            if not interactions.nnz:
                if listens_read and (filter_steps or filters.k_core):
                    raise UsageError("the filters removed every listen; loosen them")
                require_interactions(interactions, source.paths, level)
            interactions = write_with_tracks(steps, tracks, interactions, spill, tmp, out)
    except BaseException:
        _remove_empty(created)
        raise
    steps.report()
    return interactions


def k_core_step(
    steps: Steps,
    interactions: Interactions,
    filters: Filters,
    report: FilterReport,
    spill: Spill | None,
) -> Interactions:
    """The k-core filter over the merged matrix (the spilled runs follow what it keeps)."""
    if not filters.k_core:
        return interactions
    with steps.step("k-core", "k-core filter"):
        interactions, step, kept_users, kept_items = k_core_subset(
            interactions, filters.min_user_items, filters.min_item_users
        )
        if spill is not None:
            spill.restrict(kept_users, kept_items)
    report.steps.append(step)
    return interactions


def write_with_tracks(
    steps: Steps,
    tracks: TrackCollector | None,
    interactions: Interactions,
    spill: Spill | None,
    tmp: Path,
    out: Path,
) -> Interactions:
    """Top recordings for playlists (from the encoded listens' codes, or the spilled runs),
    then every file."""
    if spill is not None:
        with steps.step("tracks", "", status=False):  # its own progress bar
            interactions = spill.attach_tracks(interactions)
    else:
        assert tracks is not None  # the in-memory path collects its codes
        with steps.step("tracks", "keeping top recordings for playlists"):
            interactions = tracks.attach(interactions)
    with steps.step("write", f"writing {out}", status=spill is None):
        if spill is not None:  # the events stream from the runs, then the runs go
            spill.write_events(tmp / "events.npz")
            spill.close()
        # Last: the manifest's checksums must cover listens.parquet too.
        interactions.write_into(tmp)
    return interactions


def _with_side_relations(
    interactions: Interactions, source: SourceData, level: str
) -> Interactions:
    """The source's per-user tag assignments (artist level) and friends, in index space."""
    if source.tag_assignments is not None and level == "artist":
        tags = index_tags(interactions, source.tag_assignments)
        interactions = dataclasses.replace(interactions, tags=tags)
    if source.friends is not None:
        friends = index_friends(interactions, source.friends)
        interactions = dataclasses.replace(interactions, friends=friends)
    return interactions


def _source_info(
    source: SourceData,
    level: str,
    listens_read: int,
    rows_without_item: int,
    filters: Filters,
    report: FilterReport,
) -> dict[str, Any]:
    """The manifest's ``source``: what was read, dropped and filtered."""
    stats = final_stats(source)
    return {
        "format": source.format,
        "paths": source.paths,
        "level": level,
        "listens": listens_read,
        "duplicates_dropped": int(stats.get("duplicates_dropped", 0)),
        "skipped_rows": int(stats.get("skipped_rows", 0)),
        "rows_without_item": rows_without_item,
        "filters": filters.describe(),
        "filtered": report.as_dicts(),
    }


def _skipped_info(
    source: SourceData, table_name: str | None, identity: dict | None, options: ReaderOptions
) -> dict[str, Any]:
    """The rest of the manifest's ``source`` (in its order): the listens table, the identity
    report, and the rows the readers skipped, by reason."""
    stats = final_stats(source)
    info: dict[str, Any] = {"listens_table": table_name}
    if identity is not None:
        info["identity"] = identity
    if "skipped_example" in stats:
        info["skipped_example"] = stats["skipped_example"]
    # Rows a reader leaves out by rule (Spotify's podcasts, short plays), by reason.
    reasons = SKIP_REASONS | {"skipped_short_plays": f"plays under {options.min_play_seconds:g} s"}
    skipped = {
        reasons.get(key, key.removeprefix("skipped_").replace("_", " ")): int(value)
        for key, value in stats.items()
        if key.startswith("skipped_") and key not in ("skipped_rows", "skipped_example")
    }
    if skipped:
        info["skipped"] = skipped
    if stats.get("left_out"):
        info["left_out"] = list(stats["left_out"])
    return info


# interactions, listens read, identity report, filter steps, rows without an item, and the
# in-memory path's track codes (the spilled path keeps its own: Spill.attach_tracks).
Reduced = tuple[Interactions, int, dict | None, list[FilterStep], int, TrackCollector | None]


def _reduce_in_memory(
    steps: Steps,
    source: SourceData,
    frame: pl.LazyFrame,
    level: str,
    filters: Filters,
    keep_events: bool,
) -> Reduced:
    """The listens as one table in memory: encoded (with the track codes, ``TrackCollector``),
    filtered, reduced to pairs and events."""
    tracks = TrackCollector()
    with steps.step("encode", "reading and encoding listens"), reading(source):
        table = encode_listens(frame, level, tracks=tracks.add)
    listens_read, identity, dropped = table.listens, table.identity, table.rows_without_item
    with steps.step("filter", "filtering"):
        table, filter_steps = filter_table(table, filters)
    with steps.step("reduce", f"building the user x {level} matrix"):
        interactions = interactions_from_table(table, keep_events=keep_events, consume=True)
        del table
    return interactions, listens_read, identity, filter_steps, dropped, tracks


def _reduce_spilled(
    spill: Spill,
    source: SourceData,
    frame: pl.LazyFrame,
    expected: int,
    filters: Filters,
    keep_events: bool,
) -> Reduced:
    """The listens partitioned by user on disk, each partition reduced alone (data.spill)."""
    if spill.keep:  # ingest --keep-runs: the runs stay in the output (data.runs)
        start_keeping(spill, source, filters, keep_events)
    with reading(source):
        spill.partition(frame, expected)
    result = spill.reduce(filters, keep_events)
    return (
        result.interactions,
        result.listens,
        result.identity,
        result.filter_steps,
        result.rows_without_item,
        None,
    )


def _missing_parents(out: Path) -> list[Path]:
    """Ancestors of ``out`` that do not exist yet (atomic_directory creates them)."""
    missing = []
    parent = out.absolute().parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this run created, if they are still empty (innermost first)."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def summary(interactions: Interactions) -> dict[str, Any]:
    """The figures the CLI prints after an ingest."""
    source = interactions.source
    return {
        "users": interactions.n_users,
        "items": interactions.n_items,
        "interactions": interactions.nnz,
        "listens": int(source.get("listens", 0)),
        "listens_kept": int(round(float(interactions.user_items.data.sum(dtype=np.float64)))),
        "duplicates_dropped": int(source.get("duplicates_dropped", 0)),
        "skipped_rows": int(source.get("skipped_rows", 0)),
        "rows_without_item": int(source.get("rows_without_item", 0)),
    }


__all__ = [
    "LISTENS_FILE",
    "PARQUET_FORMATS",
    "DataError",
    "Steps",
    "ingest",
    "k_core_step",
    "summary",
    "write_with_tracks",
]

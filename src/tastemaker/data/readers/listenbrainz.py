"""ListenBrainz listens dumps in Parquet (the "spark" dump: ``listenbrainz-listens-dump-spark``).

Accepted paths: a directory holding dump folders (a full dump and incremental dumps, each a
folder of ``.parquet`` files, e.g. ``full-dump-1/0.parquet``, ``incremental-dump-2/0.parquet``),
a single dump folder, or a single ``.parquet`` file. Each folder is one dump.

Columns (``SPARK_LISTENS_SCHEMA`` upstream): ``listened_at`` timestamp (ms; ns accepted),
``user_id``, ``recording_msid``, ``artist_name`` are required; ``release_name``,
``release_mbid``, ``recording_name``, ``recording_mbid``, ``artist_credit_mbids`` are used when
present (``created`` and ``artist_credit_id`` are ignored). Mapping to canonical listens:
``user`` = ``user_id`` as text; ``artist_id`` = ``artist_mbid`` = the first MBID of the artist
credit (null when unmapped); names and MBIDs as they are.

Names are cleaned like every reader's (``clean_text``: control characters such as NUL
removed). A folder's other listens files (JSON lines beside the Parquet dumps, say) are not
read with it, since they are another shape of listens (a user export names no user, so its
listens could not be matched against the dumps'); ``stats["left_out"]`` names each, and
``tastemaker ingest`` prints them: give such a file as a source of its own to read it too.

Dumps are merged and a listen seen in more than one dump (same user, ``listened_at`` and
``recording_msid``) counts once: the full dump's copy is kept, duplicates among the other
dumps are dropped, and ``stats["duplicates_dropped"]`` counts them. Within one dump listens
are unique already (ListenBrainz's listen table has a unique key on these three columns), so
the full dump itself is never hashed: only the listens of the other dumps are, and only the
full dump's rows in their time range are probed.

Checked before any data is read, from each file's footer: that it is a Parquet file at all
(a truncated file loses its footer), that the required columns are there, and (from row-group
statistics, or one pass over ``listened_at`` where a file has none) that timestamps lie in
the plausible range. Bad rows name the file, the row and its row group.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tastemaker.data.readers import ReaderOptions, SourceData, cannot_read, first_line, left_out
from tastemaker.data.readers.rows import bounds_text, time_bounds_ms
from tastemaker.data.readers.text import clean_frame
from tastemaker.data.schema import conform
from tastemaker.errors import DataError

NAME = "listenbrainz"
REQUIRED = ("listened_at", "user_id", "recording_msid", "artist_name")
OPTIONAL = ("release_name", "release_mbid", "recording_name", "recording_mbid")
DEDUP_KEYS = ["user", "listened_at", "recording_msid"]
Probe = Callable[[datetime, datetime], pl.LazyFrame]


def detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".parquet"
    return path.is_dir() and bool(_dumps(path))


def read(path: Path, options: ReaderOptions) -> SourceData:
    return read_many([path], options)


def read_many(paths: list[Path], options: ReaderOptions) -> SourceData:
    """Read and merge several dumps (each path: a dump folder, a folder of them, a file)."""
    dumps: list[list[Path]] = []
    for path in paths:
        if not path.exists():
            raise DataError("no such file or directory", path=path)
        found = _dumps(path)
        if not found:
            raise DataError("no .parquet files (expected a ListenBrainz dump)", path=path)
        dumps.extend(found)
    stats: dict[str, Any] = {"skipped_rows": 0, "dumps": len(dumps)}
    read = {file for files in dumps for file in files}
    others = [entry for path in paths if path.is_dir() for entry in left_out(path, read)]
    if others:
        stats["left_out"] = others
    scanned = [[_scan(file, options, stats) for file in files] for files in dumps]
    frames = [pl.concat([frame for frame, _ in files]) for files in scanned]
    probe = _probe([p for _, p in scanned[_base_dump(dumps)]])
    listens, dropped = merge_dumps(frames, _base_dump(dumps), probe)
    stats["duplicates_dropped"] = dropped
    return SourceData(listens=listens, format=NAME, paths=[str(p) for p in paths], stats=stats)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _parquet_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.glob("*.parquet")), key=_natural_key)


def _dumps(path: Path) -> list[list[Path]]:
    """The dumps under ``path``, each a list of its parquet files."""
    if path.is_file():
        return [[path]]
    direct = _parquet_files(path)
    if direct:
        return [direct]
    folders = sorted((p for p in path.iterdir() if p.is_dir()), key=_natural_key)
    return [files for folder in folders if (files := _parquet_files(folder))]


def _base_dump(dumps: list[list[Path]]) -> int:
    """The dump whose copy of a repeated listen is kept: the full dump, else the largest."""
    for index, files in enumerate(dumps):
        if "full" in files[0].parent.name.lower():
            return index
    sizes = [sum(f.stat().st_size for f in files) for files in dumps]
    return sizes.index(max(sizes))


def _probe(probes: list[Probe]) -> Probe:
    return lambda low, high: pl.concat([probe(low, high) for probe in probes])


def merge_dumps(
    frames: list[pl.LazyFrame], base: int = 0, probe: Probe | None = None
) -> tuple[pl.LazyFrame, int]:
    """Concatenate dumps in canonical form, dropping listens repeated across them.

    The ``base`` dump is taken as free of repeats (true of any single ListenBrainz dump);
    the others' keys are collected (they are small next to a full dump), deduplicated, and
    probed against the base dump's rows in their time range (``probe(low, high)`` gives
    those rows' keys; by default the base frame is filtered).
    """
    if len(frames) == 1:
        return frames[0], 0
    others = pl.concat([f for i, f in enumerate(frames) if i != base])
    keys = others.select(DEDUP_KEYS).collect(engine="streaming")
    distinct = keys.unique(maintain_order=True)
    if distinct.is_empty():
        return frames[base], 0
    # a Datetime column: its min and max are datetimes (polars types them as any value)
    low = cast(datetime, distinct.get_column("listened_at").min())
    high = cast(datetime, distinct.get_column("listened_at").max())
    candidates = (
        probe(low, high)
        if probe is not None
        else frames[base].select(DEDUP_KEYS).filter(pl.col("listened_at").is_between(low, high))
    )
    in_base = candidates.join(distinct.lazy(), on=DEDUP_KEYS, how="semi").collect(
        engine="streaming"
    )
    fresh = others
    if distinct.height < keys.height:
        fresh = fresh.unique(subset=DEDUP_KEYS, keep="first", maintain_order=True)
    if in_base.height:
        fresh = fresh.join(in_base.lazy(), on=DEDUP_KEYS, how="anti", maintain_order="left")
    dropped = (keys.height - distinct.height) + in_base.height
    return pl.concat([frames[base], fresh]), dropped


def _schema(file: Path) -> tuple[pa.Schema, pq.FileMetaData]:
    try:
        metadata = pq.read_metadata(file)
        return metadata.schema.to_arrow_schema(), metadata
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, IsADirectoryError | PermissionError | FileNotFoundError):
            raise cannot_read(exc, file) from None
        raise DataError(
            f"not a readable Parquet file, truncated or corrupted ({first_line(exc)})", path=file
        ) from None


def _scan(file: Path, options: ReaderOptions, stats: dict[str, Any]) -> tuple[pl.LazyFrame, Probe]:
    """One file, validated from its footer: its canonical listens, and a probe giving the
    dedup keys of its rows in a time range (filtered on the raw column, so Parquet
    statistics skip the row groups outside the range)."""
    schema, metadata = _schema(file)
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise DataError(
            f"missing columns {missing} (found: {', '.join(schema.names)}); "
            "is this a ListenBrainz listens dump?",
            path=file,
        )
    time_type = schema.field("listened_at").type
    if not pa.types.is_timestamp(time_type):
        raise DataError(f"column listened_at is {time_type}, expected a timestamp", path=file)
    to_utc = (
        pl.col("listened_at").dt.convert_time_zone("UTC")
        if time_type.tz
        else pl.col("listened_at").dt.replace_time_zone("UTC")
    )
    credits = (
        pl.col("artist_credit_mbids").list.first()
        if "artist_credit_mbids" in schema.names
        and pa.types.is_list(schema.field("artist_credit_mbids").type)
        else pl.lit(None, dtype=pl.Utf8)
    )
    raw = pl.scan_parquet(file)
    bad = _bad_rows(file, schema, metadata, to_utc)
    if bad is not None:
        rule, count = bad
        if options.on_bad_rows != "skip":
            raise _first_bad_row(file, rule, metadata)
        raw = raw.filter(~rule.fill_null(True))
        stats["skipped_rows"] += count
        stats.setdefault(
            "skipped_example", f"{file}: {count} rows with null or out-of-range values"
        )
    frame = raw.select(
        pl.col("user_id").cast(pl.Utf8).alias("user"),
        to_utc.dt.cast_time_unit("ms").alias("listened_at"),
        credits.alias("artist_id"),
        "artist_name",
        credits.alias("artist_mbid"),
        *[
            pl.col(c) if c in schema.names else pl.lit(None, dtype=pl.Utf8).alias(c)
            for c in OPTIONAL
        ],
        "recording_msid",
    )
    names = [c for c in ("artist_name", "release_name", "recording_name") if c in schema.names]
    frame = frame.map_batches(
        lambda batch: clean_frame(batch, names), schema=frame.collect_schema(), streamable=True
    )

    def probe(low: datetime, high: datetime) -> pl.LazyFrame:
        if time_type.tz is None:  # naive timestamps are UTC wall time
            low, high = low.replace(tzinfo=None), high.replace(tzinfo=None)
        return raw.filter(pl.col("listened_at").is_between(low, high)).select(
            pl.col("user_id").cast(pl.Utf8).alias("user"),
            to_utc.dt.cast_time_unit("ms").alias("listened_at"),
            "recording_msid",
        )

    return conform(frame), probe


def _bad_rows(
    file: Path, schema: pa.Schema, metadata: pq.FileMetaData, to_utc: pl.Expr
) -> tuple[pl.Expr, int] | None:
    """The rule a row breaks and how many rows break it, or None when the file is clean.

    Nulls in required columns and out-of-range times are ruled out from the footer alone
    when the schema declares the columns non-nullable and row groups carry statistics.
    """
    low, high = time_bounds_ms()
    ms = to_utc.dt.epoch("ms")
    rule = (ms < low) | (ms > high)
    nullable = [c for c in ("user_id", "listened_at", "artist_name") if schema.field(c).nullable]
    for column in nullable:
        rule = rule | pl.col(column).is_null()
    if not nullable and _statistics_in_range(schema, metadata, low, high):
        return None
    count = (
        pl.scan_parquet(file).select(rule.fill_null(True).sum()).collect(engine="streaming").item()
    )
    return (rule, int(count)) if count else None


def _statistics_in_range(schema: pa.Schema, metadata: pq.FileMetaData, low: int, high: int) -> bool:
    """True when every row group's listened_at statistics lie within [low, high] (ms)."""
    unit = schema.field("listened_at").type.unit
    per_ms = {"s": 0.001, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    index = schema.get_field_index("listened_at")
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(index).statistics
        if statistics is None or not statistics.has_min_max:
            return False
        try:
            smallest = _as_int(statistics.min) / per_ms
            largest = _as_int(statistics.max) / per_ms
        except (TypeError, ValueError):
            return False
        if smallest < low or largest > high:
            return False
    return True


def _as_int(value: Any) -> int:
    """Statistics come back as ints or datetimes depending on the writer; as epoch units."""
    if isinstance(value, int):
        return value
    if hasattr(value, "value"):  # pandas Timestamp: nanoseconds
        return int(value.value)
    raise TypeError(type(value))


def _first_bad_row(file: Path, rule: pl.Expr, metadata: pq.FileMetaData) -> DataError:
    """A DataError naming the first row (and its row group) that breaks ``rule``."""
    first = (
        pl.scan_parquet(file)
        .with_row_index("_row")
        .filter(rule.fill_null(True))
        .select("_row", "user_id", "listened_at")
        .head(1)
        .collect()
    )
    row = int(first.get_column("_row")[0])
    group, start = 0, 0
    for group in range(metadata.num_row_groups):
        size = metadata.row_group(group).num_rows
        if row < start + size:
            break
        start += size
    user, when = first.get_column("user_id")[0], first.get_column("listened_at")[0]
    problem = (
        "missing user_id or artist_name"
        if user is None or when is None
        else f"listened_at {when} is out of range ({bounds_text()})"
    )
    return DataError(f"{problem} (row group {group})", path=file, row=row + 1)

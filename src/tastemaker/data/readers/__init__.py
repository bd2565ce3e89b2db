"""One reader per source format, chosen by ``--format`` or detected from the path.

A reader module exposes ``NAME``, ``detect(path) -> bool`` and
``read(path, options) -> SourceData``; ``SourceData.listens`` is a lazy frame in the canonical
schema of ``tastemaker.data.listens``. Readers must stream (bounded memory) and raise
``DataError`` naming the file, the row where known, and the problem. A reader that merges
several paths itself (ListenBrainz dumps: full + incremental) also has
``read_many(paths, options)``.

This module also holds what the readers share: the plausible time range of a listen, parsing
of epoch / ISO-8601 timestamps, per-row checks that either stop at the first bad row or skip
and count bad rows (``--on-bad-rows``), and turning polars / Arrow errors into one line.

Bad-row rules every reader applies (a row breaking one is an error, or skipped and counted):
a required field (user, artist name, timestamp where the format has one) is missing; a
play count is not a number, NaN, zero or negative; a timestamp is not epoch seconds /
milliseconds / microseconds / nanoseconds or ISO-8601, or lies outside
``[EARLIEST_LISTEN, now + FUTURE_MARGIN]`` (2000-01-01 UTC to one day ahead of the clock:
scrobbling started in 2002, and a day covers clock skew; anything outside is a unit or
parsing mistake, such as microseconds read as seconds).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from tastemaker.errors import DataError

# Order matters for detection: the first reader whose ``detect`` accepts the path wins.
READERS: dict[str, str] = {
    "hetrec": "tastemaker.data.readers.hetrec",
    "listenbrainz": "tastemaker.data.readers.listenbrainz",
    "listenbrainz-json": "tastemaker.data.readers.listenbrainz_json",
    "lastfm-1k": "tastemaker.data.readers.lastfm_1k",
    "lastfm-360k": "tastemaker.data.readers.lastfm_360k",
    "csv": "tastemaker.data.readers.delimited",
}

EARLIEST_LISTEN = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_MARGIN = timedelta(days=1)


@dataclass
class ReaderOptions:
    """Options some readers take (the CSV reader's column mapping, bad-row policy, ...)."""

    columns: list[str] | None = None
    delimiter: str = ","
    header: bool = True
    on_bad_rows: str = "error"  # "error" or "skip"
    # The item level the data will be reduced to: the CSV reader maps an ``item`` column to
    # that level's id column (artist_id, release_mbid or recording_mbid).
    level: str = "artist"


@dataclass
class SourceData:
    """What a reader returns: canonical listens, plus side information where the source has it."""

    listens: pl.LazyFrame
    format: str
    paths: list[str]
    # (user, artist_id, tag) rows: who tagged which artist with what (HetRec).
    tag_assignments: pl.DataFrame | None = None
    # ``skipped_rows`` (bad rows skipped under ``on_bad_rows="skip"``; final once ``listens``
    # has been collected) and ``duplicates_dropped``, for ``inspect`` and the ingest summary.
    stats: dict[str, Any] = field(default_factory=dict)
    # Turns an error raised while ``listens`` is collected (polars, Arrow, OS) into a
    # ``DataError`` naming the file and, where it can find it, the row.
    explain: Callable[[BaseException], DataError] | None = None


def reader_module(name: str):
    if name not in READERS:
        raise DataError(f"unknown format {name!r}; choose one of: {', '.join(READERS)}")
    return importlib.import_module(READERS[name])


def detect_format(path: str | Path) -> str:
    """Name of the reader that recognises ``path``; DataError when none does."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or directory", path=path)
    if (
        path.is_dir()
        and (path / "manifest.json").is_file()
        and not (path / INGESTED_LISTENS).exists()
    ):
        raise DataError(
            f"an ingested directory without {INGESTED_LISTENS}, so it cannot be read again as "
            "listens; ingest its sources again (add --listens to keep the table)",
            path=path,
        )
    for name in READERS:
        try:
            module = reader_module(name)
        except ModuleNotFoundError:
            continue
        if module.detect(path):
            return name
    raise DataError(
        "cannot tell the format; pass --format (one of: " + ", ".join(READERS) + ")", path=path
    )


def read_source(
    path: str | Path, format: str | None = None, options: ReaderOptions | None = None
) -> SourceData:
    """Read one source path with the given or detected reader (an ingested directory that
    kept its ``listens.parquet`` is a source too: re-ingest at another level or filter)."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or directory", path=path)
    if (
        format is None
        and (path / INGESTED_LISTENS).is_file()
        and (path / "manifest.json").is_file()
    ):
        return _read_ingested(path)
    name = format or detect_format(path)
    return reader_module(name).read(path, options or ReaderOptions())


INGESTED_LISTENS = "listens.parquet"


def _is_ingested(path: Path) -> bool:
    return (path / INGESTED_LISTENS).is_file() and (path / "manifest.json").is_file()


def _read_ingested(path: Path) -> SourceData:
    from tastemaker.data.listens import LISTENS_SCHEMA, conform

    listens = path / INGESTED_LISTENS
    try:
        names = pl.scan_parquet(listens).collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read ({first_line(exc)})", path=listens) from None
    missing = [c for c in LISTENS_SCHEMA if c not in names]
    if missing:
        raise DataError(f"missing columns {missing}", path=listens)
    return SourceData(
        listens=conform(pl.scan_parquet(listens)),
        format="listens",
        paths=[str(path)],
        stats={"skipped_rows": 0},
    )


def read_sources(
    paths: Sequence[str | Path], format: str | None = None, options: ReaderOptions | None = None
) -> SourceData:
    """Read several source paths as one: paths of one format are merged by that format's
    reader (so ListenBrainz dumps given separately still count a repeated listen once)."""
    options = options or ReaderOptions()
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("no source given")
    groups: dict[str, list[Path]] = {}
    parts = []
    for path in paths:
        if not path.exists():
            raise DataError("no such file or directory", path=path)
        if format is None and _is_ingested(path):
            parts.append(_read_ingested(path))
            continue
        groups.setdefault(format or detect_format(path), []).append(path)
    for name, group in groups.items():
        module = reader_module(name)
        if len(group) > 1 and hasattr(module, "read_many"):
            parts.append(module.read_many(group, options))
        else:
            parts.extend(module.read(path, options) for path in group)
    return merge_sources(parts)


def merge_sources(parts: list[SourceData]) -> SourceData:
    """Concatenate readers' outputs; counts in ``stats`` add up."""
    if len(parts) == 1:
        return parts[0]
    stats: dict[str, Any] = {}
    for part in parts:
        for key, value in part.stats.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                stats[key] = stats.get(key, 0) + value
    tags = [p.tag_assignments for p in parts if p.tag_assignments is not None]
    merged = SourceData(
        listens=pl.concat([p.listens for p in parts], how="vertical"),
        format="+".join(dict.fromkeys(p.format for p in parts)),
        paths=[path for p in parts for path in p.paths],
        tag_assignments=pl.concat(tags) if tags else None,
        stats=stats,
    )

    def explain(exc: BaseException) -> DataError:
        for part in parts:
            if part.explain is not None:
                error = part.explain(exc)
                if error.row is not None or error.where is not None:
                    return error
        return _cannot_read_source(exc, merged.paths)

    merged.explain = explain
    # Skip counts are filled in while the parts' frames are collected: read them live.
    merged.stats = _LiveStats(stats, [p.stats for p in parts])
    return merged


class _LiveStats(dict):
    """Summed stats of merged sources that stay current as the parts' counts change."""

    def __init__(self, initial: dict, parts: list[dict]) -> None:
        super().__init__(initial)
        self._parts = parts

    def refresh(self) -> _LiveStats:
        for key in {k for part in self._parts for k in part}:
            values = [p[key] for p in self._parts if key in p]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                self[key] = sum(values)
        return self


def final_stats(source: SourceData) -> dict[str, Any]:
    """The source's stats after its listens were collected (skip counts included)."""
    stats = source.stats
    if isinstance(stats, _LiveStats):
        stats.refresh()
    return dict(stats)


# -- errors -------------------------------------------------------------------------------


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (polars adds plans and hints below it)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]


def cannot_read(exc: BaseException, path: str | Path | None) -> DataError:
    """A DataError for an unexpected read failure: the library's first line, no traceback."""
    if isinstance(exc, DataError):
        return exc
    if isinstance(exc, IsADirectoryError):
        return DataError("is a directory, expected a file", path=path)
    if isinstance(exc, PermissionError):
        return DataError("permission denied", path=path)
    if isinstance(exc, FileNotFoundError):
        return DataError("no such file or directory", path=exc.filename or path)
    return DataError(f"cannot read ({first_line(exc)})", path=path)


def _cannot_read_source(exc: BaseException, paths: list[str]) -> DataError:
    """``cannot_read`` for a source of one or several paths (named only when there is one)."""
    return cannot_read(exc, paths[0] if len(paths) == 1 else None)


@contextlib.contextmanager
def reading(source: SourceData) -> Iterator[None]:
    """Run the collection of ``source.listens``; failures become one-line DataErrors."""
    try:
        yield
    except DataError:
        raise
    except (pl.exceptions.PolarsError, OSError, pa.ArrowException) as exc:
        # Readers give ``explain`` where they can name a row; otherwise the source's path.
        if source.explain is not None:
            raise source.explain(exc) from None
        raise _cannot_read_source(exc, source.paths) from None


def require_file(path: Path) -> None:
    """DataError unless ``path`` is a readable regular file."""
    if not path.exists():
        raise DataError("no such file or directory", path=path)
    if path.is_dir():
        raise DataError("is a directory, expected a file", path=path)
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise cannot_read(exc, path) from None


# -- timestamps ---------------------------------------------------------------------------


def latest_listen() -> datetime:
    return datetime.now(UTC) + FUTURE_MARGIN


def time_bounds_ms() -> tuple[int, int]:
    """The plausible listen time range in epoch milliseconds."""
    return int(EARLIEST_LISTEN.timestamp() * 1000), int(latest_listen().timestamp() * 1000)


def bounds_text() -> str:
    return f"{EARLIEST_LISTEN:%Y-%m-%d} .. {latest_listen():%Y-%m-%d} UTC"


def out_of_range(listened_at: pl.Expr) -> pl.Expr:
    """True where a (non-null) datetime lies outside the plausible range."""
    low, high = time_bounds_ms()
    ms = listened_at.dt.epoch("ms")
    return (ms < low) | (ms > high)


def epoch_to_datetime(number: pl.Expr) -> pl.Expr:
    """Epoch seconds, milliseconds, microseconds or nanoseconds (told apart by magnitude:
    seconds below 1e11, i.e. before the year 5138) to ``Datetime("ms", "UTC")``."""
    size = number.abs()
    ms = (
        pl.when(size < 1e11)
        .then(number * 1000)
        .when(size < 1e14)
        .then(number)
        .when(size < 1e17)
        .then(number / 1000)
        .otherwise(number / 1_000_000)
    )
    return ms.round(0).cast(pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")


ISO_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


def text_to_datetime(column: str, sample: Sequence[str | None]) -> pl.Expr:
    """Parse a text column of timestamps: epoch numbers (any unit, see ``epoch_to_datetime``)
    or ISO-8601 in the first of ``ISO_FORMATS`` that reads every value of ``sample``
    (values with a UTC offset are converted, naive ones are taken as UTC). Unparseable
    values become null."""
    values = pl.Series([s.strip() for s in sample if s is not None and s.strip()], dtype=pl.Utf8)
    text = pl.col(column).str.strip_chars()
    # The ISO formats the sample uses, most used first (usually one), after epoch numbers.
    hits = {
        fmt: len(values)
        - values.str.to_datetime(fmt, time_zone="UTC", strict=False, time_unit="ms").null_count()
        for fmt in ISO_FORMATS
    }
    chosen = [fmt for fmt in sorted(hits, key=lambda f: -hits[f]) if hits[fmt]] or [ISO_FORMATS[0]]
    parsed = [epoch_to_datetime(text.cast(pl.Float64, strict=False))]
    parsed += [
        text.str.to_datetime(fmt, time_zone="UTC", strict=False, time_unit="ms") for fmt in chosen
    ]
    return pl.coalesce(parsed)


# -- per-row checks -----------------------------------------------------------------------


@dataclass(frozen=True)
class RowCheck:
    """A rule a row must pass: ``bad`` is true for a failing row; ``message`` may name the
    offending value as ``{value}`` (taken from column ``value``)."""

    bad: pl.Expr
    message: str
    value: str | None = None


def check_rows(
    frame: pl.LazyFrame,
    checks: Sequence[RowCheck],
    path: Path | str,
    options: ReaderOptions,
    stats: dict[str, Any],
    row_column: str = "_row",
    line_offset: int = 1,
) -> pl.LazyFrame:
    """Apply ``checks`` as the rows stream by: raise a DataError naming the row of a failing
    row (``on_bad_rows="error"``), or drop failing rows and count them in
    ``stats["skipped_rows"]`` (``"skip"``). ``frame`` carries a 0-based row index in
    ``row_column``; a row's number in messages is ``index + line_offset`` (its line number
    for text formats)."""
    reason = pl.lit(0, dtype=pl.UInt8)
    for position, check in reversed(list(enumerate(checks, start=1))):
        reason = (
            pl.when(check.bad.fill_null(False)).then(pl.lit(position, pl.UInt8)).otherwise(reason)
        )
    frame = frame.with_columns(reason.alias("_bad"))
    schema = frame.collect_schema()
    skip = options.on_bad_rows == "skip"
    stats.setdefault("skipped_rows", 0)
    skipped: set[int] = set()

    def describe(batch: pl.DataFrame, index: int) -> tuple[int, str]:
        check = checks[batch.get_column("_bad")[index] - 1]
        value = batch.get_column(check.value)[index] if check.value else None
        return int(batch.get_column(row_column)[index]) + line_offset, check.message.format(
            value=_show(value)
        )

    def inspect(batch: pl.DataFrame) -> pl.DataFrame:
        bad = batch.get_column("_bad") != 0
        if not bad.any():
            return batch
        positions = bad.arg_true()
        if not skip:
            row, message = describe(batch, int(positions[0]))
            raise DataError(message, path=path, row=row)
        skipped.update(batch.get_column(row_column).gather(positions).to_list())
        stats["skipped_rows"] = len(skipped)
        if "skipped_example" not in stats:
            row, message = describe(batch, int(positions[0]))
            stats["skipped_example"] = f"{path}: row {row}: {message}"
        return batch.filter(~bad)

    return frame.map_batches(inspect, schema=schema, streamable=True).drop("_bad")


def _show(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def count_checks(count: str, raw: str) -> list[RowCheck]:
    """Play count rules: parsed Float64 column ``count``, its text in ``raw``."""
    return [
        RowCheck(pl.col(count).is_null(), "play count {value} is not a number", raw),
        RowCheck(pl.col(count).is_nan(), "play count {value} is NaN", raw),
        RowCheck(pl.col(count) <= 0, "play count {value} is not positive", raw),
    ]


def time_checks(listened_at: str, raw: str) -> list[RowCheck]:
    """Timestamp rules: parsed datetime column ``listened_at``, its text in ``raw``."""
    return [
        RowCheck(
            pl.col(listened_at).is_null() & pl.col(raw).is_not_null(),
            "timestamp {value} is neither epoch seconds/ms nor ISO-8601",
            raw,
        ),
        RowCheck(
            out_of_range(pl.col(listened_at)),
            "timestamp {value} is out of range (" + bounds_text() + ")",
            raw,
        ),
    ]


def required_checks(columns: dict[str, str]) -> list[RowCheck]:
    """Missing-value rules: ``{column: what it is}``."""
    return [RowCheck(pl.col(c).is_null(), f"missing {what}") for c, what in columns.items()]

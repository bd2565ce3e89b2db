"""One reader per source format, chosen by ``--format`` or detected from the path.

A reader module exposes ``NAME``, ``detect(path) -> bool`` and
``read(path, options) -> SourceData``; ``SourceData.listens`` is a lazy frame in the canonical
schema of ``tastemaker.data.listens``. Readers must stream (bounded memory) and raise
``DataError`` naming the file, the row where known, and the problem. A reader that merges
several paths itself (ListenBrainz dumps: full + incremental) also has
``read_many(paths, options)``.

This module also holds what the readers share: the plausible time range of a listen, parsing
of epoch / ISO-8601 timestamps, per-row checks that either stop at the first bad row or skip
and count bad rows (``--on-bad-rows``), the cleaning of text fields, and turning polars /
Arrow errors into one line. ``streams`` opens every text and JSON file (integrity-checked,
line length bounded).

Bad-row rules every reader applies (a row breaking one is an error, or skipped and counted):
a required field (user, artist name, timestamp where the format has one) is missing; a
play count is not a number, NaN, infinite, zero, negative or above ``MAX_PLAY_COUNT``; a
timestamp is not epoch seconds / milliseconds / microseconds / nanoseconds or ISO-8601, or
lies outside ``[EARLIEST_LISTEN, now + FUTURE_MARGIN]`` (2000-01-01 UTC to one day ahead of
the clock: scrobbling started in 2002, and a day covers clock skew; anything outside is a
unit or parsing mistake, such as microseconds read as seconds); a line is not UTF-8 or has
too many fields. Each names the file, the row and the value.

Text fields (user ids, names, ids) are cleaned, not rejected (``clean_text``): NUL and the
other control characters are removed, tabs and line breaks become spaces, surrounding
whitespace is trimmed, and a field left empty counts as missing. A stray control character
in a song title is noise, not a reason to stop an ingest, and none may reach a name printed
in a table, a playlist file or a web page.

Never rows, always errors, in every mode: a compressed or archived stream that fails its
integrity check or ends early, and a line longer than ``max_line_bytes`` (see ``streams``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from polars.io.plugins import register_io_source

from tastemaker.data.readers.streams import MAX_LINE_BYTES
from tastemaker.errors import DataError

# Order matters for detection: the first reader whose ``detect`` accepts the path wins.
READERS: dict[str, str] = {
    "hetrec": "tastemaker.data.readers.hetrec",
    "listenbrainz": "tastemaker.data.readers.listenbrainz",
    "spotify": "tastemaker.data.readers.spotify",
    "listenbrainz-json": "tastemaker.data.readers.listenbrainz_json",
    "lastfm-1k": "tastemaker.data.readers.lastfm_1k",
    "lastfm-360k": "tastemaker.data.readers.lastfm_360k",
    "csv": "tastemaker.data.readers.delimited",
}

EARLIEST_LISTEN = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_MARGIN = timedelta(days=1)
# No one plays one thing a billion times (some 5,700 years of 3-minute tracks): a larger
# count is a unit or parsing mistake, and the bound keeps every sum of counts exact.
MAX_PLAY_COUNT = 1_000_000_000
QUOTES = {"auto": None, "none": None, '"': '"', "'": "'"}


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
    # The CSV quote character: "auto" (a double quote, none for tab-separated files, which
    # rarely quote and often hold titles with a bare "), "none", '"' or "'".
    quote: str = "auto"
    # The longest line a text source may hold (bytes); see ``streams``.
    max_line_bytes: int = MAX_LINE_BYTES
    # Personal exports (Spotify, a ListenBrainz export): the user their listens belong to
    # (default: the export's own user name, else its file or folder name), and the shortest
    # play that counts as a listen (Spotify reports every play, skips included).
    user: str | None = None
    min_play_seconds: float = 30.0

    def quote_char(self) -> str | None:
        """The quote character of delimited files under these options."""
        if self.quote not in QUOTES:
            raise DataError(f"--quote must be one of {', '.join(QUOTES)}; got {self.quote!r}")
        if self.quote == "auto":
            return None if self.delimiter == "\t" else '"'
        return QUOTES[self.quote]


@dataclass
class SourceData:
    """What a reader returns: canonical listens, plus side information where the source has it."""

    listens: pl.LazyFrame
    format: str
    paths: list[str]
    # (user, artist_id, tag) rows: who tagged which artist with what (HetRec).
    tag_assignments: pl.DataFrame | None = None
    # (user, friend) rows: who declared whom a friend (HetRec ``user_friends.dat``).
    friends: pl.DataFrame | None = None
    # ``skipped_rows`` (bad rows skipped under ``on_bad_rows="skip"``; final once ``listens``
    # has been collected), ``duplicates_dropped``, ``skipped_<reason>`` counts of rows a
    # reader leaves out by rule (Spotify: podcasts, short plays) and ``left_out`` (files of a
    # folder that were not read, each with why), for ``inspect`` and the ingest summary.
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
    resolved = [Path(p) for p in paths]
    if not resolved:
        raise DataError("no source given")
    groups: dict[str, list[Path]] = {}
    parts = []
    for path in resolved:
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
            elif isinstance(value, list):
                stats[key] = stats.get(key, []) + value
    tags = [p.tag_assignments for p in parts if p.tag_assignments is not None]
    friends = [p.friends for p in parts if p.friends is not None]
    merged = SourceData(
        listens=pl.concat([p.listens for p in parts], how="vertical"),
        format="+".join(dict.fromkeys(p.format for p in parts)),
        paths=[path for p in parts for path in p.paths],
        tag_assignments=pl.concat(tags) if tags else None,
        friends=pl.concat(friends) if friends else None,
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
            elif key == "skipped_example":
                self[key] = values[0]
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


def lazy_frames(
    frames: Callable[[], Iterator[pl.DataFrame]], schema: dict[str, pl.DataType]
) -> pl.LazyFrame:
    """A polars IO source over the frames a reader yields: the projection, predicate and row
    limit polars pushes down are applied per frame, and reading stops once the limit is met."""

    def source(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        remaining = n_rows
        for frame in frames():
            if predicate is not None:
                frame = frame.filter(predicate)
            if with_columns is not None:
                frame = frame.select(with_columns)
            if remaining is not None:
                frame = frame.head(remaining)
                remaining -= frame.height
            yield frame
            if remaining is not None and remaining <= 0:
                return

    return register_io_source(source, schema=schema, is_pure=True)


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
    seconds below 1e11, i.e. before the year 5138) to ``Datetime("ms", "UTC")``.

    NaN becomes null, and magnitudes no calendar holds (``1e300``, infinity) are clamped to
    the year 33658 or so: out of range for ``time_checks`` instead of a failed cast."""
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
    bounded = pl.when(ms.is_nan()).then(None).otherwise(ms.clip(-_EPOCH_MS_LIMIT, _EPOCH_MS_LIMIT))
    return bounded.round(0).cast(pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")


_EPOCH_MS_LIMIT = 1e15


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


class BadRows:
    """Where a source's bad rows go: the first raises a DataError naming its file and row
    (``on_bad_rows="error"``), or each is dropped and counted once in
    ``stats["skipped_rows"]``, the first kept as ``stats["skipped_example"]`` (``"skip"``).

    A row is counted once however often the lazy frame holding it is collected: rows are
    remembered as one bit each per file (up to the last bad one), so memory stays small even
    for a file of nothing but bad rows.
    """

    def __init__(self, options: ReaderOptions, stats: dict[str, Any]) -> None:
        self.skip = options.on_bad_rows == "skip"
        self.stats = stats
        self._seen: dict[str, np.ndarray] = {}
        self._count = 0
        stats.setdefault("skipped_rows", 0)

    def add(self, path: str | Path, row: int, problem: str) -> None:
        """One bad row (1-based ``row``)."""
        self.add_many(path, np.array([row], dtype=np.int64), lambda: (row, problem))

    def add_many(
        self, path: str | Path, rows: np.ndarray, first: Callable[[], tuple[int, str]]
    ) -> None:
        """Bad rows ``rows`` of ``path``; ``first()`` gives the first one's (row, problem)."""
        if not len(rows):
            return
        if not self.skip:
            row, problem = first()
            raise DataError(problem, path=path, row=row)
        key = str(path)
        rows = np.asarray(rows, dtype=np.int64)
        bits = self._seen.get(key, np.zeros(0, dtype=np.uint8))
        size = int(rows.max()) // 8 + 1
        if size > len(bits):
            bits = np.concatenate([bits, np.zeros(max(size, 2 * len(bits)) - len(bits), np.uint8)])
            self._seen[key] = bits
        if len(rows) > 1 and bool((rows[1:] < rows[:-1]).any()):
            rows = np.sort(rows)  # the rows of one byte of the bitmap must lie together
        index, mask = rows // 8, (1 << (rows % 8)).astype(np.uint8)
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        marks, index = np.bitwise_or.reduceat(mask, starts), index[starts]
        fresh = marks & ~bits[index]
        bits[index] |= marks
        self._count += int(np.unpackbits(fresh).sum())
        self.stats["skipped_rows"] = self._count
        if "skipped_example" not in self.stats:
            row, problem = first()
            self.stats["skipped_example"] = f"{path}: row {row}: {problem}"


def check_rows(
    frame: pl.LazyFrame,
    checks: Sequence[RowCheck],
    path: Path | str,
    bad_rows: BadRows,
    row_column: str = "_row",
    line_offset: int = 1,
) -> pl.LazyFrame:
    """Apply ``checks`` as the rows stream by, sending failing rows to ``bad_rows`` (which
    raises at the first, or drops and counts them). ``frame`` carries a 0-based row index in
    ``row_column``; a row's number in messages is ``index + line_offset`` (its line number
    for text formats)."""
    reason = pl.lit(0, dtype=pl.UInt8)
    for position, check in reversed(list(enumerate(checks, start=1))):
        reason = (
            pl.when(check.bad.fill_null(False)).then(pl.lit(position, pl.UInt8)).otherwise(reason)
        )
    frame = frame.with_columns(reason.alias("_bad"))
    schema = frame.collect_schema()

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
        rows = batch.get_column(row_column).gather(positions).to_numpy().astype(np.int64)
        bad_rows.add_many(path, rows + line_offset, lambda: describe(batch, int(positions[0])))
        return batch.filter(~bad)

    return frame.map_batches(inspect, schema=schema, streamable=True).drop("_bad")


def _show(value: Any) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def count_checks(count: str, raw: str) -> list[RowCheck]:
    """Play count rules: parsed Float64 column ``count``, its text in ``raw``. A count that
    passes them is safe to round and cast to Int64 (see ``count_value``)."""
    return [
        RowCheck(pl.col(count).is_null(), "play count {value} is not a number", raw),
        RowCheck(pl.col(count).is_nan(), "play count {value} is NaN", raw),
        RowCheck(pl.col(count).is_infinite(), "play count {value} is infinite", raw),
        RowCheck(pl.col(count) <= 0, "play count {value} is not positive", raw),
        RowCheck(
            pl.col(count) > MAX_PLAY_COUNT,
            "play count {value} is above "
            + f"{MAX_PLAY_COUNT:,}"
            + " (a unit or parsing mistake?)",
            raw,
        ),
    ]


def parse_number(raw: str) -> pl.Expr:
    """A text column as Float64 (null where it is not a number), for ``count_checks``."""
    return pl.col(raw).str.strip_chars().cast(pl.Float64, strict=False)


def count_value(count: str) -> pl.Expr:
    """A checked Float64 play count as the canonical Int64 (fractions rounded, at least 1)."""
    return pl.col(count).round(0).clip(1, MAX_PLAY_COUNT).cast(pl.Int64).alias("count")


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


# -- text fields --------------------------------------------------------------------------

# Removed: C0 controls but the whitespace ones, DEL, C1 controls but NEL.
_CONTROL = "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]"
# Become a space: tab, line feed, vertical tab, form feed, carriage return, NEL, U+2028/9.
_BREAKS = "[\t\n\x0b\x0c\r\x85\u2028\u2029]"
# Bytes of UTF-8 text that need cleaning (the C0 controls and DEL; C1 and U+2028/9 are
# looked for separately, being two and three bytes long).
_C0 = frozenset([*range(0x20), 0x7F])
# More than this many U+0080..U+00BF lead bytes in a block: clean it rather than look closer.
_C2_LOOKS = 10_000


def clean_text(column: str | pl.Expr) -> pl.Expr:
    """A text field as listens keep it: control characters (NUL included) removed, tabs and
    line breaks turned into spaces, and a field left blank by that null (missing)."""
    expr = pl.col(column) if isinstance(column, str) else column
    cleaned = expr.str.replace_all(_CONTROL, "").str.replace_all(_BREAKS, " ")
    result = pl.when(expr.is_null() | (cleaned.str.strip_chars().str.len_bytes() > 0)).then(cleaned)
    return result.alias(column) if isinstance(column, str) else result


def needs_cleaning(data: bytes, allowed: bytes = b"") -> bool:
    """Whether UTF-8 ``data`` holds a character ``clean_text`` changes, other than the
    control bytes in ``allowed`` (a text file's own separator and line breaks). Exact and
    fast: one ``bytes.translate`` keeps only the bytes that may start such a character, and
    only those found are looked at closely."""
    found = data.translate(None, _not_suspect(allowed))
    if not found:
        return False
    if found.translate(None, _not_control(allowed)):
        return True  # a C0 control (NUL included) or DEL
    if b"\r" in found and data.count(b"\r") != data.count(b"\r\n"):
        return True  # a carriage return that does not end a line
    if b"\xe2" in found and (b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data):
        return True  # U+2028 / U+2029
    if b"\xc2" in found:  # U+0080..U+009F are C2 80..C2 9F
        at, looks = data.find(b"\xc2"), 0
        while at >= 0:
            looks += 1
            if looks > _C2_LOOKS or (at + 1 < len(data) and 0x80 <= data[at + 1] < 0xA0):
                return True
            at = data.find(b"\xc2", at + 1)
    return False


@functools.cache
def _not_suspect(allowed: bytes) -> bytes:
    """The bytes ``needs_cleaning`` deletes first: all but controls, CR and C2 / E2."""
    suspect = (_C0 - set(allowed)) | {0x0D, 0xC2, 0xE2}
    return bytes(b for b in range(256) if b not in suspect)


@functools.cache
def _not_control(allowed: bytes) -> bytes:
    """All bytes but the controls ``allowed`` does not allow."""
    return bytes(b for b in range(256) if b not in _C0 - set(allowed))


def clean_frame(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """``frame`` with ``clean_text`` applied to those of ``columns`` that need it."""
    dirty = []
    for column in columns:
        joined = frame.get_column(column).str.join("").cast(pl.Binary)
        if joined.len() and needs_cleaning(joined[0] or b""):
            dirty.append(column)
    return frame.with_columns(clean_text(c) for c in dirty) if dirty else frame


# -- what a folder holds ------------------------------------------------------------------


def left_out(folder: Path, read: set[Path], limit: int = 20) -> list[str]:
    """Files under ``folder`` that a reader recognises as listens but that were not read,
    each as "path (format)"; at most ``limit`` (and a count of the rest)."""
    found: list[str] = []
    extra = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path in read or path.name.startswith("."):
            continue
        name = _recognised(path)
        if name is None:
            continue
        if len(found) < limit:
            found.append(f"{path} ({name}; give it as a source of its own to read it too)")
        else:
            extra += 1
    if extra:
        found.append(f"... and {extra} more")
    return found


def _recognised(path: Path) -> str | None:
    """The format of a single file, or None (metadata, notes, or nothing a reader knows)."""
    for name in READERS:
        if name == "csv" and path.suffix.lower() == ".txt":
            continue  # a .txt beside a dump is a note, not listens
        try:
            if reader_module(name).detect(path):
                return name
        except (ModuleNotFoundError, OSError):
            continue
    return None

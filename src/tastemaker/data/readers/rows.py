"""What every reader checks in a row: the plausible time range of a listen, epoch / ISO-8601
timestamps, play counts, required fields; a bad row either stops the read or is skipped and
counted (``--on-bad-rows``).

Bad-row rules every reader applies (a row breaking one is an error, or skipped and counted):
a required field (user, artist name, timestamp where the format has one) is missing; a
play count is not a number, NaN, infinite, zero, negative or above ``MAX_PLAY_COUNT``; a
timestamp is not epoch seconds / milliseconds / microseconds / nanoseconds or ISO-8601, or
lies outside ``[EARLIEST_LISTEN, now + FUTURE_MARGIN]`` (2000-01-01 UTC to one day ahead of
the clock: scrobbling started in 2002, and a day covers clock skew; anything outside is a
unit or parsing mistake, such as microseconds read as seconds); a line is not UTF-8 or has
too many fields. Each names the file, the row and the value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tastemaker.data.readers import ReaderOptions
from tastemaker.errors import DataError

EARLIEST_LISTEN = datetime(2000, 1, 1, tzinfo=UTC)


FUTURE_MARGIN = timedelta(days=1)


# No one plays one thing a billion times (some 5,700 years of 3-minute tracks): a larger
# count is a unit or parsing mistake, and the bound keeps every sum of counts exact.
MAX_PLAY_COUNT = 1_000_000_000


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

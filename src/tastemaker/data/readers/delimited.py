"""Any delimited text file (CSV, TSV, ...) whose columns are named by role.

``options.columns`` names every column in file order, each one of ``ROLES``:

* ``user`` (required): the user id;
* ``item``: the item's id at the level being ingested: ``artist_id`` at artist level,
  ``release_mbid`` at release level, ``recording_mbid`` at recording level (any string; it
  is the item key as given, and where the file has no artist column it also names the item);
* ``artist``, ``release``, ``recording``: names; without ``item`` the item is keyed by the
  normalized names (artist; artist + release; artist + title);
* ``count``: plays the row stands for (default 1);
* ``timestamp``: epoch seconds / ms / µs / ns or ISO-8601 (see ``text_to_datetime``);
* ``ignore``: skipped.

Without ``options.columns`` a header line whose names are all roles maps itself.
``options.delimiter`` is one character; ``options.header`` says whether the first line is a
header (skipped). Fields may be quoted with ``"``.

The text machinery here (``scan_text``) is shared by the Last.fm readers: every value is
read as text, a spare last column catches lines with too many fields, and a polars failure
(e.g. bytes that are not UTF-8) is traced back to its line by ``explain_text``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from tastemaker.data.listens import conform
from tastemaker.data.readers import (
    ReaderOptions,
    RowCheck,
    SourceData,
    check_rows,
    count_checks,
    first_line,
    require_file,
    required_checks,
    text_to_datetime,
    time_checks,
)
from tastemaker.errors import DataError

NAME = "csv"
ROLES = ("user", "item", "artist", "release", "recording", "count", "timestamp", "ignore")
EXTENSIONS = (".csv", ".tsv", ".psv", ".txt")
EXTRA = "_extra"
SAMPLE_ROWS = 1000
LEVEL_ID_COLUMN = {"artist": "artist_id", "release": "release_mbid", "recording": "recording_mbid"}
NAME_COLUMN = {"artist": "artist_name", "release": "release_name", "recording": "recording_name"}


def detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in EXTENSIONS


def read(path: Path, options: ReaderOptions) -> SourceData:
    require_file(path)
    separator = options.delimiter
    if len(separator) != 1:
        raise DataError(f"the delimiter must be one character, not {separator!r}", path=path)
    roles = options.columns or _roles_from_header(path, separator, options.header)
    _validate_roles(roles, options.level, path)
    names = [f"{role}_{i}" if role == "ignore" else role for i, role in enumerate(roles)]
    stats: dict[str, Any] = {}
    raw = scan_text(path, names, separator, options.header, '"', options, stats)

    parsed = []
    checks: list[RowCheck] = structure_checks(len(names), separator, options)
    required = {"user": "user"}
    if "item" not in roles:  # the names are the item's key: a row without them cannot count
        required |= {role: f"{role} name" for role in _key_roles(options.level)}
    if "timestamp" in roles:
        sample = sample_column(path, names, "timestamp", separator, options.header, '"')
        parsed.append(text_to_datetime("timestamp", sample).alias("listened_at"))
        required["timestamp"] = "timestamp"
    if "count" in roles:
        parsed.append(pl.col("count").str.strip_chars().cast(pl.Float64, strict=False).alias("n"))
    frame = raw.with_columns(parsed)
    checks += required_checks(required)
    if "count" in roles:
        checks += count_checks("n", "count")
    if "timestamp" in roles:
        checks += time_checks("listened_at", "timestamp")
    checked = check_rows(
        frame, checks, path, options, stats, line_offset=2 if options.header else 1
    )

    columns: list[pl.Expr] = [pl.col("user").str.strip_chars().alias("user")]
    if "timestamp" in roles:
        columns.append(pl.col("listened_at"))
    if "count" in roles:
        columns.append(pl.col("n").round(0).clip(1).cast(pl.Int64).alias("count"))
    for role in ("artist", "release", "recording"):
        if role in roles:
            columns.append(pl.col(role).str.strip_chars().alias(NAME_COLUMN[role]))
    if "item" in roles:
        columns.append(pl.col("item").str.strip_chars().alias(LEVEL_ID_COLUMN[options.level]))
        if "artist" not in roles and options.level == "artist":
            columns.append(pl.col("item").str.strip_chars().alias("artist_name"))
    return SourceData(
        listens=conform(checked.select(columns)),
        format=NAME,
        paths=[str(path)],
        stats=stats,
        explain=explain_text(path, len(names), separator, '"', options.header),
    )


def _roles_from_header(path: Path, separator: str, header: bool) -> list[str]:
    if header:
        line = _first_line(path)
        names = [n.strip().strip('"').lower() for n in line.split(separator)]
        if names and all(n in ROLES for n in names):
            return names
    raise DataError(
        "say what each column holds with --columns (in order, from: " + ", ".join(ROLES) + ")",
        path=path,
    )


def _validate_roles(roles: Sequence[str], level: str, path: Path) -> None:
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise DataError(f"unknown column role(s) {unknown}; use: {', '.join(ROLES)}", path=path)
    repeated = sorted({r for r in roles if r != "ignore" and roles.count(r) > 1})
    if repeated:
        raise DataError(f"column role(s) {repeated} given more than once", path=path)
    needed = _key_roles(level)
    missing = [] if "user" in roles else ["user"]
    if "item" not in roles and not all(r in roles for r in needed):
        missing.append("item or " + " + ".join(needed))
    if missing:
        raise DataError(
            f"missing columns for {level} level: {', '.join(missing)} "
            f"(columns: {', '.join(roles)})",
            path=path,
        )


def _key_roles(level: str) -> list[str]:
    return {"artist": ["artist"], "release": ["artist", "release"]}.get(
        level, ["artist", "recording"]
    )


def _first_line(path: Path) -> str:
    with open(path, "rb") as fh:
        line = fh.readline()
    try:
        return line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise DataError("not valid UTF-8 in the header line", path=path, row=1) from None


# -- shared by the text readers -----------------------------------------------------------


def scan_text(
    path: Path,
    names: Sequence[str],
    separator: str,
    header: bool,
    quote_char: str | None,
    options: ReaderOptions,
    stats: dict[str, Any],
) -> pl.LazyFrame:
    """Lazily read a delimited text file: every column as text, ``_row`` (0-based data row),
    a spare column ``EXTRA`` holding whatever follows the last expected field, and blank
    lines dropped. Under ``skip`` undecodable bytes become U+FFFD (checked by
    ``extra_field_check``) instead of failing the read."""
    require_file(path)
    schema = {name: pl.Utf8 for name in names} | {EXTRA: pl.Utf8}
    frame = pl.scan_csv(
        path,
        has_header=False,
        skip_rows=1 if header else 0,
        separator=separator,
        quote_char=quote_char,
        schema=schema,
        missing_columns="insert",
        truncate_ragged_lines=True,
        encoding="utf8-lossy" if options.on_bad_rows == "skip" else "utf8",
        row_index_name="_row",
        raise_if_empty=False,
    )
    blank = pl.all_horizontal([pl.col(n).is_null() for n in names])
    frame = frame.filter(~blank)
    if options.on_bad_rows == "skip":
        frame = frame.with_columns(
            pl.any_horizontal(
                [pl.col(n).str.contains("\ufffd", literal=True) for n in names]
            ).alias("_undecodable")
        )
    return frame


def structure_checks(n_fields: int, separator: str, options: ReaderOptions) -> list[RowCheck]:
    """Rules on a line's shape: too many fields; bytes that are not UTF-8 (under ``skip``;
    under ``error`` the read itself fails and ``explain_text`` finds the line)."""
    shown = {"\t": "tab"}.get(separator, repr(separator))
    checks = [
        RowCheck(pl.col(EXTRA).is_not_null(), f"more than {n_fields} fields ({shown}-separated)")
    ]
    if options.on_bad_rows == "skip":
        checks.append(RowCheck(pl.col("_undecodable"), "not valid UTF-8"))
    return checks


def sample_column(
    path: Path,
    names: Sequence[str],
    column: str,
    separator: str,
    header: bool,
    quote_char: str | None,
) -> list[str | None]:
    """The first ``SAMPLE_ROWS`` values of one column (to choose a timestamp format)."""
    try:
        frame = pl.read_csv(
            path,
            has_header=False,
            skip_rows=1 if header else 0,
            separator=separator,
            quote_char=quote_char,
            schema={name: pl.Utf8 for name in names} | {EXTRA: pl.Utf8},
            missing_columns="insert",
            truncate_ragged_lines=True,
            encoding="utf8-lossy",
            n_rows=SAMPLE_ROWS,
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"cannot parse ({first_line(exc)})", path=path) from None
    return frame.get_column(column).to_list()


def explain_text(
    path: Path, n_fields: int, separator: str, quote_char: str | None, header: bool
) -> Callable[[BaseException], DataError]:
    """Trace a failure while reading a text file back to the line that caused it."""

    def explain(exc: BaseException) -> DataError:
        if isinstance(exc, DataError):
            return exc
        problem = utf8_problem(path)
        if problem is not None:
            line, column, byte = problem
            return DataError(
                f"not valid UTF-8 (byte 0x{byte:02x} at column {column}); "
                "convert the file to UTF-8 or pass --on-bad-rows skip",
                path=path,
                row=line,
            )
        return DataError(f"cannot parse ({first_line(exc)})", path=path)

    return explain


def utf8_problem(path: Path, block: int = 1 << 24) -> tuple[int, int, int] | None:
    """(line, column, byte) of the first byte sequence that is not UTF-8, or None."""
    lines_before = 0
    rest = b""
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(block)
            data = rest + chunk
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            piece, rest = data[:cut], data[cut:]
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError as exc:
                line_start = piece.rfind(b"\n", 0, exc.start) + 1
                line = lines_before + piece.count(b"\n", 0, exc.start) + 1
                return line, exc.start - line_start + 1, piece[exc.start]
            lines_before += piece.count(b"\n")
            if not chunk:
                return None

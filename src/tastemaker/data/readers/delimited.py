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
header (skipped). ``options.quote`` (``--quote``): by default fields may be quoted with ``"``,
except in tab-separated files, where a ``"`` is data (song titles such as ``Moves Like Jagger
- Studio Recording From "The Voice" Performance``); ``none`` or ``'`` choose otherwise. The
file may be compressed (``plays.csv.gz``, ``.zst``, ``.bz2``, ``.xz``).

The text machinery here (``scan_text``) is shared by the Last.fm and HetRec readers: the file
comes through ``streams`` (integrity-checked, lines bounded) in blocks of whole lines, each
parsed by polars with every value as text; a spare last column catches lines with too many
fields; a line polars cannot take (not UTF-8, an unbalanced quote) is found and named, or
skipped and counted under ``--on-bad-rows skip``; text fields are cleaned (``clean_text``).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from tastemaker.data.readers import (
    ReaderOptions,
    SourceData,
    first_line,
    lazy_frames,
    require_file,
    streams,
)
from tastemaker.data.readers.rows import (
    BadRows,
    RowCheck,
    check_rows,
    count_checks,
    count_value,
    parse_number,
    required_checks,
    text_to_datetime,
    time_checks,
)
from tastemaker.data.readers.streams import BLOCK_BYTES, line_blocks, open_file
from tastemaker.data.readers.text import clean_frame, clean_text, needs_cleaning
from tastemaker.data.schema import conform
from tastemaker.errors import DataError

NAME = "csv"
ROLES = ("user", "item", "artist", "release", "recording", "count", "timestamp", "ignore")
EXTENSIONS = (".csv", ".tsv", ".psv", ".txt")
EXTRA = "_extra"
ROW = "_row"
SAMPLE_ROWS = 1000
SAMPLE_BYTES = 1 << 20
# A block whose lines fail to parse one after another this often is not this kind of file.
MAX_BAD_LINES_PER_BLOCK = 100
LEVEL_ID_COLUMN = {"artist": "artist_id", "release": "release_mbid", "recording": "recording_mbid"}
NAME_COLUMN = {"artist": "artist_name", "release": "release_name", "recording": "recording_name"}


def detect(path: Path) -> bool:
    return path.is_file() and Path(streams.plain_name(path.name)).suffix.lower() in EXTENSIONS


def read(path: Path, options: ReaderOptions) -> SourceData:
    require_file(path)
    separator = options.delimiter
    if len(separator) != 1:
        raise DataError(f"the delimiter must be one character, not {separator!r}", path=path)
    quote = options.quote_char()
    roles = options.columns or _roles_from_header(path, separator, options.header)
    _validate_roles(roles, options.level, path)
    names = tuple(f"{role}_{i}" if role == "ignore" else role for i, role in enumerate(roles))
    table = TextTable(names, separator, quote, options.header)
    stats: dict[str, Any] = {}
    bad_rows = BadRows(options, stats)
    raw = scan_text(path, table, options, bad_rows)

    parsed = []
    checks: list[RowCheck] = structure_checks(len(names), separator)
    required = {"user": "user"}
    if "item" not in roles:  # the names are the item's key: a row without them cannot count
        required |= {role: f"{role} name" for role in _key_roles(options.level)}
    if "timestamp" in roles:
        sample = sample_column(path, table, "timestamp")
        parsed.append(text_to_datetime("timestamp", sample).alias("listened_at"))
        required["timestamp"] = "timestamp"
    if "count" in roles:
        parsed.append(parse_number("count").alias("n"))
    frame = raw.with_columns(parsed)
    checks += required_checks(required)
    if "count" in roles:
        checks += count_checks("n", "count")
    if "timestamp" in roles:
        checks += time_checks("listened_at", "timestamp")
    checked = check_rows(frame, checks, path, bad_rows)

    columns: list[pl.Expr] = [pl.col("user").str.strip_chars()]
    if "timestamp" in roles:
        columns.append(pl.col("listened_at"))
    if "count" in roles:
        columns.append(count_value("n"))
    for role in ("artist", "release", "recording"):
        if role in roles:
            columns.append(pl.col(role).str.strip_chars().alias(NAME_COLUMN[role]))
    if "item" in roles:
        item = pl.col("item").str.strip_chars()
        columns.append(item.alias(LEVEL_ID_COLUMN[options.level]))
        if "artist" not in roles and options.level == "artist":
            columns.append(item.alias("artist_name"))
    return SourceData(
        listens=conform(checked.select(columns)),
        format=NAME,
        paths=[str(path)],
        stats=stats,
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
    line = streams.first_line(path, strict=True) or b""
    try:
        return line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise DataError("not valid UTF-8 in the header line", path=path, row=1) from None


# -- shared by the text readers -----------------------------------------------------------


@dataclass(frozen=True)
class TextTable:
    """How a delimited text file is laid out: its column names in order, the separator, the
    quote character (None: quotes are data), whether line 1 is a header, the encoding."""

    names: tuple[str, ...]
    separator: str
    quote: str | None
    header: bool = False
    encoding: str = "utf8"  # "utf8" or "latin1"

    @property
    def schema(self) -> dict[str, pl.DataType]:
        schema: dict[str, pl.DataType] = {name: pl.Utf8() for name in self.names}
        schema[EXTRA] = pl.Utf8()
        return schema


def scan_text(
    path: Path, table: TextTable, options: ReaderOptions, bad_rows: BadRows
) -> pl.LazyFrame:
    """Lazily read a delimited text file, plain or compressed (``streams``): every column as
    cleaned text (``clean_text``), ``_row`` (0-based line index, header included), a spare
    column ``EXTRA`` holding whatever follows the last expected field, blank lines dropped.
    Lines that are not UTF-8 or open a quote that never closes go to ``bad_rows``."""
    require_file(path)
    schema = {**table.schema, ROW: pl.Int64()}
    return lazy_frames(lambda: text_frames(path, table, options, bad_rows), schema)


def text_frames(
    path: Path,
    table: TextTable,
    options: ReaderOptions,
    bad_rows: BadRows,
    block_bytes: int = BLOCK_BYTES,
) -> Generator[pl.DataFrame, None, None]:
    """The file's rows, one frame per block of lines (see ``scan_text``)."""
    name = str(path)
    quote = table.quote.encode() if table.quote else None
    with open_file(path) as stream:
        blocks = line_blocks(
            stream,
            max_line_bytes=options.max_line_bytes,
            block_bytes=block_bytes,
            quote=quote,
            bad_line=lambda line, problem: bad_rows.add(name, line, problem),
        )
        for lines_before, block, lines in blocks:
            if table.header and lines_before == 0:
                end = block.find(b"\n")
                block = block[end:] if end >= 0 else b""  # keep the line break: numbers stay put
            if table.encoding != "utf8":
                block = block.decode(table.encoding).encode()
            yield _parse_block(block, lines_before, lines, name, table, bad_rows)


def _read_block(block: bytes, table: TextTable) -> pl.DataFrame:
    return pl.read_csv(
        block,
        has_header=False,
        separator=table.separator,
        quote_char=table.quote,
        schema=table.schema,
        missing_columns="insert",
        truncate_ragged_lines=True,
        encoding="utf8",
        raise_if_empty=False,
    )


def _parse_block(
    block: bytes, lines_before: int, lines: int, name: str, table: TextTable, bad_rows: BadRows
) -> pl.DataFrame:
    """One block of whole lines as a frame; a line polars cannot take goes to ``bad_rows``
    (and, skipped, is emptied so the rest of the block reads)."""
    for _ in range(MAX_BAD_LINES_PER_BLOCK):
        try:
            frame = _read_block(block, table)
            break
        except pl.exceptions.PolarsError as exc:
            block = _drop_bad_lines(block, lines_before, name, table, bad_rows, exc)
    else:
        raise DataError(
            f"more than {MAX_BAD_LINES_PER_BLOCK} unreadable lines in a row near line "
            f"{lines_before + 1}; check --delimiter and --quote",
            path=name,
        )
    if frame.height == lines:
        rows = pl.int_range(lines_before, lines_before + lines, dtype=pl.Int64, eager=True)
    else:  # quoted fields holding line breaks: a row starts where the quotes balance
        rows = pl.Series(_record_lines(block, table.quote or "", lines_before), dtype=pl.Int64)
    blank = pl.all_horizontal([pl.col(n).is_null() for n in table.names])
    frame = frame.with_columns(rows.alias(ROW)).filter(~blank)
    # Checked before cleaning: cleaning every field of every block would double the cost of
    # reading, and almost no block needs it. Unquoted, the raw bytes tell; quoted fields may
    # hold separators and line breaks, so their values are looked at.
    if table.quote and table.quote.encode() in block:
        return clean_frame(frame, table.names)
    if needs_cleaning(block, table.separator.encode() + b"\n\r"):
        return frame.with_columns(clean_text(n) for n in table.names)
    return frame


def _record_lines(block: bytes, quote: str, lines_before: int) -> list[int]:
    """0-based line index of each record of ``block`` (records may span lines)."""
    starts, open_quotes = [], False
    mark = quote.encode()
    for index, line in enumerate(
        block.split(b"\n")[: block.count(b"\n") + (not block.endswith(b"\n"))]
    ):
        if not open_quotes:
            starts.append(lines_before + index)
        if mark and line.count(mark) % 2:
            open_quotes = not open_quotes
    return starts


def _drop_bad_lines(
    block: bytes,
    lines_before: int,
    name: str,
    table: TextTable,
    bad_rows: BadRows,
    exc: BaseException,
) -> bytes:
    """Report the lines that made the parse of ``block`` fail (raises unless skipping) and
    return the block with them emptied: every undecodable line at once, else the one line
    that fails on its own (found by halving the block)."""
    lines = block.split(b"\n")
    undecodable = _undecodable(block, lines)
    if undecodable:
        for index, column, byte in undecodable:
            bad_rows.add(
                name,
                lines_before + index + 1,
                f"not valid UTF-8 (byte 0x{byte:02x} at column {column}); "
                "convert the file to UTF-8 or pass --on-bad-rows skip",
            )
            lines[index] = b""
        return b"\n".join(lines)
    index, message = _failing_line(lines, table) or (0, first_line(exc))
    bad_rows.add(name, lines_before + index + 1, f"cannot parse ({message})")
    lines[index] = b""
    return b"\n".join(lines)


def _undecodable(block: bytes, lines: list[bytes]) -> list[tuple[int, int, int]]:
    """(line index, 1-based column, byte) of each line of ``block`` that is not UTF-8."""
    try:
        block.decode("utf-8")
        return []
    except UnicodeDecodeError as exc:
        first = block.count(b"\n", 0, exc.start)
    found = []
    for index in range(first, len(lines)):
        try:
            lines[index].decode("utf-8")
        except UnicodeDecodeError as exc:
            found.append((index, exc.start + 1, lines[index][exc.start]))
    return found


def _failing_line(lines: list[bytes], table: TextTable) -> tuple[int, str] | None:
    """(index, polars' message) of a line that fails to parse on its own, found by halving;
    None when every part parses alone."""
    low, high = 0, len(lines)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            _read_block(b"\n".join(lines[low:middle]) + b"\n", table)
        except pl.exceptions.PolarsError:
            high = middle
            continue
        low = middle
    try:
        _read_block(lines[low] + b"\n", table)
    except pl.exceptions.PolarsError as exc:
        return low, first_line(exc)
    return None


def structure_checks(n_fields: int, separator: str) -> list[RowCheck]:
    """Rules on a line's shape: too many fields."""
    shown = {"\t": "tab"}.get(separator, repr(separator))
    return [
        RowCheck(pl.col(EXTRA).is_not_null(), f"more than {n_fields} fields ({shown}-separated)")
    ]


def sample_column(path: Path, table: TextTable, column: str) -> list[str | None]:
    """The first ``SAMPLE_ROWS`` values of one column (to choose a timestamp format); bad
    lines are left to the full read, which reports them."""
    options = ReaderOptions(on_bad_rows="skip")
    frames = text_frames(path, table, options, BadRows(options, {}), block_bytes=SAMPLE_BYTES)
    try:
        frame = next(frames, None)
    except DataError:
        return []
    finally:
        frames.close()
    return [] if frame is None else frame.get_column(column).head(SAMPLE_ROWS).to_list()

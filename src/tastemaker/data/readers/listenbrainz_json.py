"""ListenBrainz listens as JSON lines: the JSON dump and the API / user-export shape.

Accepted paths:

* the JSON dump layout: a folder with ``listens/YYYY/M.listens`` files (one JSON object per
  line), or any folder of ``.listens`` / ``.jsonl`` / ``.ndjson`` files;
* a single such file, plain or compressed (``.jsonl.gz``, ``.listens.zst``, ...);
* an archive holding them, read as a stream without unpacking: ``.tar``, ``.tar.zst``
  (the dumps' own format), ``.tar.gz`` / ``.tar.xz`` / ``.tar.bz2``, ``.zip`` (a user export).

Every file comes through ``streams``: a damaged or truncated archive or compressed file stops
the read in every mode, and a line longer than ``--max-line-bytes`` (1 MiB) is an error.

Two line shapes are understood, field by field:

* dump (``Listen.to_json()``): ``user_id``, ``user_name``, ``timestamp`` (epoch s),
  ``recording_msid``, ``track_metadata{artist_name, track_name, release_name,
  additional_info{...}, mbid_mapping{...}}``;
* API / export (``Listen.to_api()``): ``listened_at`` (epoch s), optional ``user_name``,
  ``track_metadata{..., recording_msid, mbid_mapping{...}, additional_info{...}}``.

Canonical mapping: ``user`` = ``user_id`` as text, else ``user_name``, else (an export holds
one user's listens) the ``user_name`` / ``username`` of a ``user.json`` beside the listens,
else the file's (or archive's) name without extension; ``options.user`` (``--user``) names it
instead. MBIDs come from ``mbid_mapping``
(MusicBrainz's mapping) and else from the submitted ``additional_info``; ``artist_id`` =
``artist_mbid`` = the first artist MBID. Names are the submitted ones.

The text is parsed in blocks of about ``BLOCK_BYTES`` by polars' JSON reader, through a
polars IO source, so memory stays bounded whatever the size; a block polars cannot take
(a malformed line, an odd type in the free-form ``additional_info``) is parsed line by line
to find the bad line, or to drop it under ``--on-bad-rows skip``. Several paths are several
dumps, merged like the Parquet dumps (a listen repeated across dumps counts once).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from tastemaker.data.readers import ReaderOptions, SourceData, cannot_read, first_line, lazy_frames
from tastemaker.data.readers.listenbrainz import merge_dumps
from tastemaker.data.readers.rows import BadRows, bounds_text, epoch_to_datetime, time_bounds_ms
from tastemaker.data.readers.streams import (
    ARCHIVE_SUFFIXES,
    BLOCK_BYTES,
    files_under,
    is_archive,
    line_blocks,
    members,
    plain_name,
)
from tastemaker.data.readers.text import clean_frame
from tastemaker.data.schema import LISTENS_SCHEMA
from tastemaker.errors import DataError

NAME = "listenbrainz-json"
LINE_SUFFIXES = (".listens", ".jsonl", ".ndjson")

_MBIDS = pl.Struct(
    {
        "recording_mbid": pl.Utf8,
        "release_mbid": pl.Utf8,
        "artist_mbids": pl.List(pl.Utf8),
        "recording_msid": pl.Utf8,
    }
)
RAW_SCHEMA: dict[str, Any] = {
    "user_id": pl.Int64,
    "user_name": pl.Utf8,
    "timestamp": pl.Float64,
    "listened_at": pl.Float64,
    "recording_msid": pl.Utf8,
    "track_metadata": pl.Struct(
        {
            "artist_name": pl.Utf8,
            "track_name": pl.Utf8,
            "release_name": pl.Utf8,
            "recording_msid": pl.Utf8,
            "additional_info": _MBIDS,
            "mbid_mapping": _MBIDS,
        }
    ),
}
# The flat fields both parsers produce; ``_canonical`` maps them to the listens schema.
FLAT_SCHEMA = {
    "user_id": pl.Utf8,
    "user_name": pl.Utf8,
    "time": pl.Float64,
    "recording_msid": pl.Utf8,
    "artist_name": pl.Utf8,
    "recording_name": pl.Utf8,
    "release_name": pl.Utf8,
    "recording_mbid": pl.Utf8,
    "release_mbid": pl.Utf8,
    "artist_mbid": pl.Utf8,
}


def _is_line_file(name: str) -> bool:
    return name.endswith(LINE_SUFFIXES)


# MusicBrainz names its JSON data dumps by entity; they hold metadata, never listens.
MUSICBRAINZ_DUMPS = ("artist", "release-group", "release", "recording", "label", "work")


def detect(path: Path) -> bool:
    if path.is_dir():
        return bool(_line_files(path))
    if not path.is_file():
        return False
    name = plain_name(path.name).lower()
    if is_archive(path) and name.split(".")[0] in MUSICBRAINZ_DUMPS:
        return False  # MusicBrainz's own JSON dumps (metadata): artist.tar.xz, ...
    if _is_line_file(name) or is_archive(path):
        return "spark" not in name  # the Parquet dump is also shipped as a .tar
    return name.endswith(".json") and _first_line_is_listen(path)


def _first_line_is_listen(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            line = fh.readline(1 << 20)
        return isinstance(obj := json.loads(line), dict) and "track_metadata" in obj
    except (OSError, ValueError):
        return False


def _line_files(folder: Path) -> list[Path]:
    return files_under(folder, _is_line_file)


def read(path: Path, options: ReaderOptions) -> SourceData:
    return read_many([path], options)


def read_many(paths: list[Path], options: ReaderOptions) -> SourceData:
    """Each path is one dump; dumps are merged, repeated listens counted once."""
    stats: dict[str, Any] = {"skipped_rows": 0}
    bad_rows = BadRows(options, stats)
    frames = []
    for path in paths:
        if not path.exists():
            raise DataError("no such file or directory", path=path)
        if path.is_dir() and not _line_files(path):
            raise DataError("no .listens / .jsonl files in this folder", path=path)
        frames.append(_lazy(path, options, bad_rows))
    sizes = [_size(p) for p in paths]
    base = next((i for i, p in enumerate(paths) if "full" in p.name.lower()), None)
    listens, dropped = merge_dumps(frames, sizes.index(max(sizes)) if base is None else base)
    stats["duplicates_dropped"] = dropped
    return SourceData(listens=listens, format=NAME, paths=[str(p) for p in paths], stats=stats)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in _line_files(path))


def _fallback_user(path: Path, options: ReaderOptions) -> str:
    """The user of listens that do not name one (a user export): ``options.user``, else
    user.json, else the name."""
    if options.user:
        return options.user
    candidates = [path / "user.json"] if path.is_dir() else [path.parent / "user.json"]
    for candidate in candidates:
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            for key in ("user_name", "username", "musicbrainz_id", "user_id"):
                if data.get(key) not in (None, ""):
                    return str(data[key])
    name = plain_name(path.name)
    for suffix in (*ARCHIVE_SUFFIXES, *LINE_SUFFIXES, ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# -- parsing ----------------------------------------------------------------------------


def _first(expr: pl.Expr) -> pl.Expr:
    return expr.list.first()


def _flatten_fast(raw: pl.DataFrame) -> pl.DataFrame:
    meta = pl.col("track_metadata")
    info, mapping = meta.struct.field("additional_info"), meta.struct.field("mbid_mapping")
    return raw.select(
        pl.col("user_id").cast(pl.Utf8),
        "user_name",
        pl.coalesce("listened_at", "timestamp").alias("time"),
        pl.coalesce(
            "recording_msid",
            meta.struct.field("recording_msid"),
            info.struct.field("recording_msid"),
        ).alias("recording_msid"),
        meta.struct.field("artist_name"),
        meta.struct.field("track_name").alias("recording_name"),
        meta.struct.field("release_name"),
        pl.coalesce(
            mapping.struct.field("recording_mbid"), info.struct.field("recording_mbid")
        ).alias("recording_mbid"),
        pl.coalesce(mapping.struct.field("release_mbid"), info.struct.field("release_mbid")).alias(
            "release_mbid"
        ),
        pl.coalesce(
            _first(mapping.struct.field("artist_mbids")), _first(info.struct.field("artist_mbids"))
        ).alias("artist_mbid"),
    )


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _first_mbid(*lists: Any) -> str | None:
    for value in lists:
        if isinstance(value, list) and value and isinstance(value[0], str):
            return value[0]
        if isinstance(value, str) and value:
            return value
    return None


def _object(value: object) -> dict:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _flatten_line(obj: dict) -> dict[str, Any]:
    """One parsed line to the flat fields, lenient about odd optional values."""
    meta = _object(obj.get("track_metadata"))
    info = _object(meta.get("additional_info"))
    mapping = _object(meta.get("mbid_mapping"))
    time = obj.get("listened_at", obj.get("timestamp"))
    return {
        "user_id": _text(obj.get("user_id")),
        "user_name": _text(obj.get("user_name")),
        "time": _number(time),
        "recording_msid": _text(
            obj.get("recording_msid") or meta.get("recording_msid") or info.get("recording_msid")
        ),
        "artist_name": _text(meta.get("artist_name")),
        "recording_name": _text(meta.get("track_name")),
        "release_name": _text(meta.get("release_name")),
        "recording_mbid": _text(mapping.get("recording_mbid") or info.get("recording_mbid")),
        "release_mbid": _text(mapping.get("release_mbid") or info.get("release_mbid")),
        "artist_mbid": _first_mbid(mapping.get("artist_mbids"), info.get("artist_mbids")),
    }


class _Block:
    """One block of lines from one member, parsed to flat fields; bad lines are reported
    (error) or dropped and counted (skip)."""

    def __init__(
        self,
        name: str,
        lines_before: int,
        block: bytes,
        bad_rows: BadRows,
    ) -> None:
        self.name, self.lines_before, self.block = name, lines_before, block
        self.bad_rows = bad_rows
        self._line_numbers: list[int] | None = None

    def line_numbers(self) -> list[int]:
        """1-based line number of each non-blank line (polars skips blank lines)."""
        if self._line_numbers is None:
            self._line_numbers = [
                self.lines_before + i + 1
                for i, line in enumerate(self.block.split(b"\n"))
                if line.strip()
            ]
        return self._line_numbers

    def bad(self, line: int, problem: str) -> None:
        self.bad_rows.add(self.name, line, problem)

    def parse(self) -> pl.DataFrame:
        try:
            raw = pl.read_ndjson(io.BytesIO(self.block), schema=RAW_SCHEMA)
            return _flatten_fast(raw)
        except (pl.exceptions.PolarsError, ValueError):
            return self._parse_lines()

    def _parse_lines(self) -> pl.DataFrame:
        rows = []
        numbers = []
        for number, line in zip(
            self.line_numbers(), (x for x in self.block.split(b"\n") if x.strip()), strict=True
        ):
            try:
                obj = json.loads(line)
            except UnicodeDecodeError:
                self.bad(number, "not valid UTF-8")
                continue
            except ValueError as exc:
                self.bad(number, f"not valid JSON ({first_line(exc)})")
                continue
            if not isinstance(obj, dict):
                self.bad(number, "not a JSON object")
                continue
            rows.append(_flatten_line(obj))
            numbers.append(number)
        self._line_numbers = numbers
        return pl.DataFrame(rows, schema=FLAT_SCHEMA)


def _canonical(flat: pl.DataFrame, fallback_user: str) -> pl.DataFrame:
    flat = clean_frame(flat, [c for c, dtype in FLAT_SCHEMA.items() if dtype == pl.Utf8])
    return flat.select(
        pl.coalesce("user_id", "user_name", pl.lit(fallback_user)).alias("user"),
        epoch_to_datetime(pl.col("time")).alias("listened_at"),
        pl.lit(1, dtype=pl.Int64).alias("count"),
        pl.col("artist_mbid").alias("artist_id"),
        "artist_name",
        "artist_mbid",
        "release_name",
        "release_mbid",
        "recording_name",
        "recording_mbid",
        "recording_msid",
        pl.col("time").alias("_time"),
    )


def _validate(block: _Block, frame: pl.DataFrame) -> pl.DataFrame:
    """Drop (skip) or report (error) rows without time or artist, or out of range."""
    low, high = time_bounds_ms()
    ms = pl.col("listened_at").dt.epoch("ms")
    shown = pl.col("_time").cast(pl.Utf8)
    reason = (
        pl.when(pl.col("_time").is_null())
        .then(pl.lit("missing or unreadable timestamp (listened_at / timestamp)"))
        .when(pl.col("listened_at").is_null())
        .then(pl.concat_str(pl.lit("timestamp "), shown, pl.lit(" is not a number of seconds")))
        .when((ms < low) | (ms > high))
        .then(
            pl.concat_str(
                pl.lit("timestamp "), shown, pl.lit(" is out of range (" + bounds_text() + ")")
            )
        )
        .when(pl.col("artist_name").is_null())
        .then(pl.lit("missing track_metadata.artist_name"))
    )
    reasons = frame.select(reason.alias("r")).get_column("r")
    frame = frame.drop("_time")
    if reasons.null_count() == len(reasons):
        return frame
    numbers = block.line_numbers()
    for index in reasons.is_not_null().arg_true().to_list():
        block.bad(numbers[index], reasons[index])
    return frame.filter(reasons.is_null())


def _lazy(path: Path, options: ReaderOptions, bad_rows: BadRows) -> pl.LazyFrame:
    """A polars IO source yielding one canonical frame per block of lines."""
    fallback = _fallback_user(path, options)

    def batches() -> Iterator[pl.DataFrame]:
        try:
            for name, stream in members(path, _is_line_file):
                for lines_before, data, _ in line_blocks(
                    stream, max_line_bytes=options.max_line_bytes, block_bytes=BLOCK_BYTES
                ):
                    block = _Block(name, lines_before, data, bad_rows)
                    frame = _canonical(block.parse(), fallback)
                    yield _validate(block, frame)
        except OSError as exc:
            raise cannot_read(exc, path) from None

    return lazy_frames(batches, LISTENS_SCHEMA)

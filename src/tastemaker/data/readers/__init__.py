"""One reader per source format, chosen by ``--format`` or detected from the path.

A reader module exposes ``NAME``, ``detect(path) -> bool`` and
``read(path, options) -> SourceData``; ``SourceData.listens`` is a lazy frame in the canonical
schema of ``tastemaker.data.schema``. Readers must stream (bounded memory) and raise
``DataError`` naming the file, the row where known, and the problem. A reader that merges
several paths itself (ListenBrainz dumps: full + incremental) also has
``read_many(paths, options)``.

This module also holds what the readers share: options, the source they return, merging
several sources, and turning polars / Arrow errors into one line. ``streams`` opens every
text and JSON file (integrity-checked, line length bounded).

Row checks and time bounds are in ``rows``, the cleaning of text fields in ``text``.

Never rows, always errors, in every mode: a compressed or archived stream that fails its
integrity check or ends early, and a line longer than ``max_line_bytes`` (see ``streams``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from polars.io.plugins import register_io_source

from tastemaker.data.readers.streams import MAX_LINE_BYTES
from tastemaker.data.schema import LISTENS_SCHEMA, conform
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
    if path.is_dir() and (path / "manifest.json").is_file() and not (path / LISTENS_FILE).exists():
        raise DataError(
            f"an ingested directory without {LISTENS_FILE}, so it cannot be read again as "
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
    if format is None and (path / LISTENS_FILE).is_file() and (path / "manifest.json").is_file():
        return _read_ingested(path)
    name = format or detect_format(path)
    return reader_module(name).read(path, options or ReaderOptions())


# The listens table of an ingested directory (written by ``data.ingest``).
LISTENS_FILE = "listens.parquet"


def _is_ingested(path: Path) -> bool:
    return (path / LISTENS_FILE).is_file() and (path / "manifest.json").is_file()


def _read_ingested(path: Path) -> SourceData:
    listens = path / LISTENS_FILE
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


# -- per-row checks -----------------------------------------------------------------------


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

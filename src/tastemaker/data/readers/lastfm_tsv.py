"""What the Last.fm dumps of Celma (2010) share: one headerless, unquoted TSV file (plain or
compressed: ``.tsv.gz`` and the like).

``lastfm_1k`` and ``lastfm_360k`` each describe their file with a ``LastfmTsv`` (format name,
file name, columns) and keep only what differs: how a first line looks, how the raw columns
become listens, and which rows are bad.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from tastemaker.data.readers import ReaderOptions, SourceData
from tastemaker.data.readers.delimited import TextTable, scan_text, structure_checks
from tastemaker.data.readers.rows import BadRows, RowCheck, check_rows
from tastemaker.data.readers.streams import first_line, plain_name
from tastemaker.data.schema import conform
from tastemaker.errors import DataError

SEPARATOR = "\t"


@dataclass(frozen=True)
class LastfmTsv:
    """One dump file: the format's name, the file's name and its columns in order."""

    format: str
    file_name: str
    columns: list[str]

    @property
    def table(self) -> TextTable:
        return TextTable(tuple(self.columns), SEPARATOR, None)

    def file(self, path: Path) -> Path:
        """The file itself, or the dump file (perhaps compressed) in the folder ``path``."""
        if not path.is_dir():
            return path
        found = [p for p in sorted(path.iterdir()) if plain_name(p.name) == self.file_name]
        return found[0] if found else path / self.file_name

    def detect(self, path: Path, looks_like: Callable[[list[str]], bool]) -> bool:
        """The folder holding the file, the file by name, or a ``.tsv`` whose first line's
        fields pass ``looks_like``."""
        if path.is_dir():
            return self.file(path).is_file()
        if not path.is_file():
            return False
        name = plain_name(path.name)
        if name == self.file_name:
            return True
        if not name.lower().endswith(".tsv"):
            return False
        line = first_line(path)
        if line is None:
            return False
        return looks_like(line.decode("utf-8", "replace").rstrip("\r").split(SEPARATOR))

    def scan(
        self, path: Path, options: ReaderOptions
    ) -> tuple[Path, pl.LazyFrame, dict[str, Any], BadRows]:
        """(the file, its raw text columns, the reading statistics to fill in, where bad
        rows go)."""
        file = self.file(path)
        if path.is_dir() and not file.exists():
            raise DataError(f"no {self.file_name} in this folder", path=path)
        stats: dict[str, Any] = {}
        bad_rows = BadRows(options, stats)
        raw = scan_text(file, self.table, options, bad_rows)
        return file, raw, stats, bad_rows

    def source(
        self,
        file: Path,
        frame: pl.LazyFrame,
        checks: Sequence[RowCheck],
        listens: Sequence[str | pl.Expr],
        stats: dict[str, Any],
        bad_rows: BadRows,
    ) -> SourceData:
        """Check every row (field count first, then ``checks``), keep the ``listens`` columns
        and describe the source."""
        structure = structure_checks(len(self.columns), SEPARATOR)
        checked = check_rows(frame, [*structure, *checks], file, bad_rows)
        return SourceData(
            listens=conform(checked.select(*listens)),
            format=self.format,
            paths=[str(file)],
            stats=stats,
        )

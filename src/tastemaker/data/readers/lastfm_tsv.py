"""What the Last.fm dumps of Celma (2010) share: one headerless, unquoted TSV file.

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

from tastemaker.data.listens import conform
from tastemaker.data.readers import ReaderOptions, RowCheck, SourceData, check_rows
from tastemaker.data.readers.delimited import explain_text, scan_text, structure_checks
from tastemaker.errors import DataError

SEPARATOR = "\t"


@dataclass(frozen=True)
class LastfmTsv:
    """One dump file: the format's name, the file's name and its columns in order."""

    format: str
    file_name: str
    columns: list[str]

    def file(self, path: Path) -> Path:
        """The file itself, or the dump file in the folder ``path``."""
        return path / self.file_name if path.is_dir() else path

    def detect(self, path: Path, looks_like: Callable[[list[str]], bool]) -> bool:
        """The folder holding the file, the file by name, or a ``.tsv`` whose first line's
        fields pass ``looks_like``."""
        if path.is_dir():
            return (path / self.file_name).is_file()
        if not path.is_file():
            return False
        if path.name == self.file_name:
            return True
        if path.suffix.lower() != ".tsv":
            return False
        try:
            with open(path, "rb") as fh:
                fields = fh.readline().decode("utf-8", "replace").rstrip("\r\n").split(SEPARATOR)
        except OSError:
            return False
        return looks_like(fields)

    def scan(self, path: Path, options: ReaderOptions) -> tuple[Path, pl.LazyFrame, dict[str, Any]]:
        """(the file, its raw text columns, the reading statistics to fill in)."""
        file = self.file(path)
        if path.is_dir() and not file.exists():
            raise DataError(f"no {self.file_name} in this folder", path=path)
        stats: dict[str, Any] = {}
        raw = scan_text(file, self.columns, SEPARATOR, False, None, options, stats)
        return file, raw, stats

    def source(
        self,
        file: Path,
        frame: pl.LazyFrame,
        checks: Sequence[RowCheck],
        listens: Sequence[str | pl.Expr],
        options: ReaderOptions,
        stats: dict[str, Any],
    ) -> SourceData:
        """Check every row (field count first, then ``checks``), keep the ``listens`` columns
        and describe the source."""
        structure = structure_checks(len(self.columns), SEPARATOR, options)
        checked = check_rows(frame, [*structure, *checks], file, options, stats, line_offset=1)
        return SourceData(
            listens=conform(checked.select(*listens)),
            format=self.format,
            paths=[str(file)],
            stats=stats,
            explain=explain_text(file, len(self.columns), SEPARATOR, None, False),
        )

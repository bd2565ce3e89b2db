"""Errors that the CLI turns into one line and exit code 2 (never a traceback)."""

from __future__ import annotations

from pathlib import Path


class TastemakerError(Exception):
    """Base class for every error a user can cause (bad input, bad arguments, bad artifacts)."""

    exit_code = 2


class DataError(TastemakerError):
    """Bad input data: names the file, the row (or row group) where known, and the problem."""

    def __init__(
        self,
        message: str,
        path: str | Path | None = None,
        row: int | None = None,
        where: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.row = row
        self.where = where  # e.g. "row group 3" when a row number is not known
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.path:
            parts.append(self.path)
        if self.row is not None:
            parts.append(f"row {self.row}")
        elif self.where:
            parts.append(self.where)
        parts.append(self.message)
        return ": ".join(parts)


class ArtifactError(TastemakerError):
    """A model or data directory that is missing, corrupted, foreign or of another version."""


class UsageError(TastemakerError):
    """Arguments that make no sense together (unknown model, bad parameter value, ...)."""

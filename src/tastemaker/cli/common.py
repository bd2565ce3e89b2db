"""Options shared by every command that reads data, and the console used for output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tastemaker.data.interactions import Interactions
from tastemaker.data.readers import ReaderOptions
from tastemaker.errors import UsageError

console = Console()
err_console = Console(stderr=True)

DELIMITERS = {",": ",", "tab": "\t", "\\t": "\t", ";": ";", "|": "|"}

FormatOpt = Annotated[
    str | None, typer.Option("--format", help="Source format (detected from the path if omitted).")
]
LevelOpt = Annotated[str, typer.Option("--level", help="Item level: artist, release or recording.")]
ColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--columns",
        help="CSV only: comma-separated names, in order, from user, item, artist, release, "
        "recording, count, timestamp, ignore.",
    ),
]
DelimiterOpt = Annotated[
    str, typer.Option("--delimiter", help="CSV only: one of ',', 'tab', ';', '|'.")
]
HeaderOpt = Annotated[
    bool, typer.Option("--header/--no-header", help="CSV only: whether the first line is a header.")
]
BadRowsOpt = Annotated[
    str,
    typer.Option(
        "--on-bad-rows",
        help="'error' (default) stops at the first bad row; 'skip' skips and reports.",
    ),
]


def reader_options(
    columns: str | None = None,
    delimiter: str = ",",
    header: bool = True,
    on_bad_rows: str = "error",
) -> ReaderOptions:
    if delimiter not in DELIMITERS:
        raise UsageError(f"--delimiter must be one of {', '.join(DELIMITERS)}; got {delimiter!r}")
    if on_bad_rows not in ("error", "skip"):
        raise UsageError(f"--on-bad-rows must be 'error' or 'skip'; got {on_bad_rows!r}")
    return ReaderOptions(
        columns=[c.strip() for c in columns.split(",")] if columns else None,
        delimiter=DELIMITERS[delimiter],
        header=header,
        on_bad_rows=on_bad_rows,
    )


def load_data(
    path: Path,
    format: str | None = None,
    level: str = "artist",
    columns: str | None = None,
    delimiter: str = ",",
    header: bool = True,
    on_bad_rows: str = "error",
) -> Interactions:
    """Load an ingested directory or a raw source (with a status spinner on the console)."""
    from tastemaker.data.load import load_interactions

    options = reader_options(columns, delimiter, header, on_bad_rows)
    with err_console.status(f"loading {path}"):
        return load_interactions(path, format=format, level=level, options=options)


EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="'local' (polars / implicit, default) or 'spark' (ingest and ALS on Apache Spark).",
    ),
]
SparkMasterOpt = Annotated[
    str, typer.Option("--spark-master", help="Spark master URL (engine spark).")
]
SparkConfOpt = Annotated[
    list[str],
    typer.Option("--spark-conf", help="Spark setting key=value (repeatable; engine spark)."),
]


def model_factory(engine: str, spark_master: str, spark_conf: list[str]):
    """None for the local engine; for Spark, a factory training ALS on Spark (others local)."""
    if engine == "local":
        return None
    if engine != "spark":
        raise UsageError(f"--engine must be 'local' or 'spark'; got {engine!r}")
    from tastemaker.engines.spark import parse_conf, spark_model
    from tastemaker.models import create_model

    conf = parse_conf(spark_conf)

    def factory(name: str, params: dict):
        if name == "als":
            return spark_model(name, params, spark_master, conf)
        return create_model(name, **params)

    return factory

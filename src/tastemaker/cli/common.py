"""Options shared by the commands (the data options and the engine options, each also as one
``option_groups`` value), the consoles used for output and the writing of results."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer
from rich.console import Console
from typer.core import TyperGroup

from tastemaker.artifacts import claim_output, overlaps
from tastemaker.data.interactions import Interactions
from tastemaker.data.readers import QUOTES, ReaderOptions
from tastemaker.errors import UsageError
from tastemaker.models import available_models, create_model

if TYPE_CHECKING:  # typer runs on its own copy of click; its group methods take these
    from typer._click.core import Context
    from typer._click.formatting import HelpFormatter

# For help texts: the registry's names (it imports no model module, so no PyTorch).
MODEL_NAMES = ", ".join(available_models())

console = Console()
err_console = Console(stderr=True)


class HelpGroup(TyperGroup):
    """A command group whose help lists each command with its whole first sentence, wrapped,
    where click would cut it to one line."""

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


DELIMITERS = {",": ",", "tab": "\t", "\\t": "\t", ";": ";", "|": "|"}

DATA_HELP = (
    "An ingested directory, any raw source the readers accept, or a data set name "
    "(tastemaker datasets list; downloaded into the cache on first use)."
)
DataArg = Annotated[Path, typer.Argument(help=DATA_HELP, metavar="DATA", show_default=False)]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        help="BLAS / OpenMP threads for fitting and scoring (default: the cores free right now, "
        "one for small problems; also TASTEMAKER_THREADS).",
    ),
]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON.")]
ReportOpt = Annotated[
    Path | None, typer.Option("--report", help="Write a self-contained HTML report here.")
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an existing output that tastemaker did not write, or of another kind "
        "(replaced whole, never mixed). Never an input, never the current directory.",
    ),
]

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
QuoteOpt = Annotated[
    str,
    typer.Option(
        "--quote",
        help="CSV only: the quote character: 'auto' (a double quote, none for tab-separated "
        "files), 'none', '\"' or \"'\".",
    ),
]


def reader_options(
    columns: str | None = None,
    delimiter: str = ",",
    header: bool = True,
    on_bad_rows: str = "error",
    quote: str = "auto",
) -> ReaderOptions:
    if delimiter not in DELIMITERS:
        raise UsageError(f"--delimiter must be one of {', '.join(DELIMITERS)}; got {delimiter!r}")
    if on_bad_rows not in ("error", "skip"):
        raise UsageError(f"--on-bad-rows must be 'error' or 'skip'; got {on_bad_rows!r}")
    if quote not in QUOTES:
        raise UsageError(f"--quote must be one of {', '.join(QUOTES)}; got {quote!r}")
    return ReaderOptions(
        columns=[c.strip() for c in columns.split(",")] if columns else None,
        delimiter=DELIMITERS[delimiter],
        header=header,
        on_bad_rows=on_bad_rows,
        quote=quote,
    )


def load_data(
    path: Path,
    format: str | None = None,
    level: str = "artist",
    columns: str | None = None,
    delimiter: str = ",",
    header: bool = True,
    on_bad_rows: str = "error",
    quote: str = "auto",
) -> Interactions:
    """Load an ingested directory or a raw source (with a status spinner on the console)."""
    from tastemaker.data.load import load_interactions

    options = reader_options(columns, delimiter, header, on_bad_rows, quote)
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

    conf = parse_conf(spark_conf)

    def factory(name: str, params: dict):
        if name == "als":
            return spark_model(name, params, spark_master, conf)
        return create_model(name, **params)

    return factory


@dataclass(frozen=True)
class DataOptions:
    """The data options (``--format --level --columns --delimiter --header --on-bad-rows
    --quote``) as one value; a command takes it as a parameter under ``option_groups``."""

    format: FormatOpt = None
    level: LevelOpt = "artist"
    columns: ColumnsOpt = None
    delimiter: DelimiterOpt = ","
    header: HeaderOpt = True
    on_bad_rows: BadRowsOpt = "error"
    quote: QuoteOpt = "auto"

    def reader_options(self) -> ReaderOptions:
        return reader_options(
            self.columns, self.delimiter, self.header, self.on_bad_rows, self.quote
        )

    def load(self, path: Path) -> Interactions:
        """``load_data`` with these options."""
        return load_data(
            path,
            self.format,
            self.level,
            self.columns,
            self.delimiter,
            self.header,
            self.on_bad_rows,
            self.quote,
        )


@dataclass(frozen=True)
class EngineOptions:
    """``--engine --spark-master --spark-conf`` as one value (see ``option_groups``)."""

    engine: EngineOpt = "local"
    spark_master: SparkMasterOpt = "local[*]"
    spark_conf: SparkConfOpt = dataclasses.field(default_factory=list)

    def model_factory(self):
        """``model_factory`` for these options (None for the local engine)."""
        return model_factory(self.engine, self.spark_master, self.spark_conf)


OPTION_GROUPS = (DataOptions, EngineOptions)


def option_groups(command: Callable[..., Any]) -> Callable[..., Any]:
    """Let a command take a group of shared options as one parameter.

    A parameter of ``command`` annotated with a class of ``OPTION_GROUPS`` reaches Typer as
    that class's fields (each an annotated option), in the parameter's place, so the help
    lists them where they were written; the command gets one instance built from them.
    Typer calls commands with keyword arguments only, and so must any other caller.
    """
    signature = inspect.signature(command, eval_str=True)
    parameters: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, list[str]]] = {}
    for parameter in signature.parameters.values():
        group = parameter.annotation
        if group not in OPTION_GROUPS:
            parameters.append(parameter)
            continue
        hints = typing.get_type_hints(group, include_extras=True)
        fields = dataclasses.fields(group)
        for field in fields:
            default = field.default
            if default is dataclasses.MISSING:
                assert callable(field.default_factory), f"{field.name} needs a default"
                default = field.default_factory()
            parameters.append(
                inspect.Parameter(
                    field.name, parameter.kind, default=default, annotation=hints[field.name]
                )
            )
        groups[parameter.name] = (group, [field.name for field in fields])

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        for name, (group, names) in groups.items():
            values[name] = group(**{option: values.pop(option) for option in names})
        return command(**values)

    # Raises ValueError if a group's option has the name of another parameter.
    run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run


class Output(NamedTuple):
    """One output of a command: its option, path (None: not asked for), kind, and whether it
    is a file (JSON) rather than a folder."""

    option: str
    path: Path | None
    kind: str
    file: bool = False


def claim_outputs(force: bool, inputs: Iterable[Path | str | None], *outputs: Output) -> None:
    """Check and lock a command's outputs before its work starts
    (``tastemaker.artifacts.claim_output``): nothing may be, hold or lie inside an input or
    another output; what exists is replaced only when tastemaker wrote it, or with --force."""
    given = [output for output in outputs if output.path is not None]
    for index, first in enumerate(given):
        for second in given[index + 1 :]:
            assert first.path is not None and second.path is not None  # given
            if overlaps(first.path, second.path):
                raise UsageError(
                    f"{first.option} {first.path} and {second.option} {second.path}: one "
                    "would replace the other; give separate paths"
                )
    sources = [str(source) for source in inputs if source is not None]
    for output in given:
        assert output.path is not None  # given
        claim_output(
            output.path,
            output.kind,
            directory=not output.file,
            inputs=sources,
            force=force,
            option=output.option,
        )


def claim_results(
    force: bool,
    inputs: Iterable[Path | str | None],
    json_path: Path | None,
    report: Path | None,
    report_kind: str,
) -> None:
    """``claim_outputs`` for ``--json`` (a results file) and ``--report`` (a report folder of
    ``report_kind``)."""
    from tastemaker.evaluation.protocol import RESULTS_KIND

    claim_outputs(
        force,
        inputs,
        Output("--json", json_path, RESULTS_KIND, file=True),
        Output("--report", report, report_kind),
    )


def write_results(
    result: dict[str, Any],
    json_path: Path | None,
    report: Path | None,
    write_report: Callable[[dict[str, Any], Path], Path],
) -> None:
    """Write ``result`` as JSON (``--json``) and as an HTML report (``--report``, through
    ``write_report``) where asked, saying where on stderr. Claim them first
    (``claim_outputs``), so the checks come before the work."""
    from tastemaker.evaluation.protocol import write_json

    if json_path is not None:
        write_json(result, json_path)
        err_console.print(f"wrote {json_path}")
    if report is not None:
        path = write_report(result, report)
        err_console.print(f"wrote {path}")

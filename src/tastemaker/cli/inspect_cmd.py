"""``tastemaker inspect``: what a data set looks like, and what would break CF on it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from tastemaker.cli.common import DataArg, DataOptions, console, option_groups


@option_groups
def inspect(
    data: DataArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    data_options: DataOptions = DataOptions(),
) -> None:
    """Users, items, distributions, popularity concentration, time span and warnings."""
    from tastemaker.data.inspect import inspect_interactions, report_rows

    interactions = data_options.load(data)
    report = inspect_interactions(interactions)
    if as_json:
        typer.echo(json.dumps(report, default=str))
        return
    table = Table(title=f"{data}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for label, value in report_rows(report):
        table.add_row(label, value)
    console.print(table)
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")


def register(app: typer.Typer) -> None:
    """Add ``inspect`` to the app."""
    app.command()(inspect)

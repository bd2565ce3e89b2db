"""``tastemaker datasets list | fetch``: the public music data sets, by name."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tastemaker.cli.common import HelpGroup, console, err_console
from tastemaker.data import datasets

app = typer.Typer(
    help="Public music data sets by name: list them, fetch one into the cache. Every command "
    "that takes data also takes a name (fetched on first use).",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=HelpGroup,
)


@app.command("list")
def list_datasets() -> None:
    """The data sets, their licences, how each download is verified, and which are cached."""
    root = datasets.cache_dir()
    table = Table(title=f"data sets (cache: {root})", title_justify="left", show_lines=True)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("what, licence")
    table.add_column("verified", no_wrap=True)
    table.add_column("cached", no_wrap=True)
    for ds in datasets.DATASETS.values():
        size = f" ({ds.size})" if ds.size else ""
        table.add_row(
            ds.name,
            f"{ds.title}{size}\n[dim]licence: {ds.licence}[/]",
            ds.verification.replace("pinned ", "pinned\n"),
            "yes" if datasets.source_path(ds, root) is not None else "no",
        )
    console.print(table)
    console.print(
        "verified: 'pinned' = against a checksum written into tastemaker; 'first use' = none "
        "is published, so the first download's SHA-256 is recorded and later ones must match. "
        "Sources and checksums: docs/datasets.md. Set TASTEMAKER_DATA to cache elsewhere."
    )


@app.command("fetch")
def fetch(
    names: Annotated[
        list[str],
        typer.Argument(help="Data set names (tastemaker datasets list).", show_default=False),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Download and unpack again, even if cached.")
    ] = False,
) -> None:
    """Download, verify and unpack data sets into the cache (resuming an interrupted
    download); print where each is."""
    for name in names:
        datasets.dataset(name)  # an unknown name fails before anything is downloaded
    for name in names:
        path = datasets.fetch(name, force=force, console=err_console)
        console.print(str(path), soft_wrap=True)


def register(root: typer.Typer) -> None:
    """Add the ``datasets`` group to the app."""
    root.add_typer(app, name="datasets")

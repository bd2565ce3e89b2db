"""``tastemaker synth``: write a synthetic ListenBrainz Parquet dump."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tastemaker.cli.common import ForceOpt, Output, claim_outputs, console, err_console


def synth(
    out: Annotated[
        Path, typer.Option("--out", help="Directory to create (replaces a synthetic dump).")
    ],
    force: ForceOpt = False,
    users: Annotated[int, typer.Option(help="Listeners (bots come on top).")] = 2000,
    artists: Annotated[int, typer.Option(help="Artists in the catalogue.")] = 5000,
    listens: Annotated[int, typer.Option(help="Listens in all, bots included.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same files.")] = 0,
    bots: Annotated[
        int | None, typer.Option(help="Bot accounts (default: one per 1,000 users).")
    ] = None,
    genres: Annotated[
        int | None, typer.Option(help="Taste communities (default: artists / 100, 4 to 50).")
    ] = None,
    mbid_share: Annotated[float, typer.Option(help="Share of listens with MBIDs.")] = 0.85,
    days: Annotated[int, typer.Option(help="Days of listening history.")] = 730,
    incremental_days: Annotated[
        float, typer.Option(help="Days in incremental-dump-2 (0: full dump only).")
    ] = 7.0,
) -> None:
    """Write a deterministic synthetic ListenBrainz Parquet dump (full + incremental)."""
    from tastemaker.data.synth import DUMP_KIND, SUMMARY_FILE, synthesize

    claim_outputs(force, [], Output("--out", out, DUMP_KIND))
    started = time.perf_counter()
    columns = (
        TextColumn("[bold]synth[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("listens"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("synth", total=listens)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        path = synthesize(
            out,
            users=users,
            artists=artists,
            listens=listens,
            seed=seed,
            bots=bots,
            progress=advance,
            genres=genres,
            mbid_share=mbid_share,
            days=days,
            incremental_days=incremental_days,
        )
    summary = json.loads((path / SUMMARY_FILE).read_text())
    console.print(
        f"wrote [bold]{summary['listens']:,}[/] listens of {summary['users']:,} users "
        f"({len(summary['bot_user_ids'])} bots) over {summary['artists']:,} artists to {path} "
        f"in {time.perf_counter() - started:.1f} s "
        f"(full dump {summary['rows']['full']:,} rows, incremental "
        f"{summary['rows']['incremental']:,} rows with {summary['duplicates']:,} repeats)"
    )


def register(app: typer.Typer) -> None:
    """Add ``synth`` to the app."""
    app.command()(synth)

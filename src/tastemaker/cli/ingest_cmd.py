"""``tastemaker ingest``: raw sources -> an ingested directory (matrix [+ listens table])."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tastemaker.cli.common import (
    DataOptions,
    EngineOptions,
    ForceOpt,
    Output,
    claim_outputs,
    console,
    err_console,
    option_groups,
)
from tastemaker.data.interactions import KIND
from tastemaker.errors import UsageError


def parse_date(text: str | None, option: str, end: bool = False) -> datetime | None:
    """A date (``2020-01-31``) or ISO-8601 time, as UTC. A bare date given as the end of a
    range includes that whole day (the range ends at the next midnight)."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} must be a date like 2020-01-31 or an ISO-8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@option_groups
def ingest(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Source paths: ListenBrainz dumps (Parquet or JSON, folders or archives), "
            "Last.fm 1K / 360K files, the HetRec 2K folder, or delimited files; or data set "
            "names (tastemaker datasets list; downloaded on first use).",
            show_default=False,
            metavar="SOURCE",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Directory to write (replaces an ingested directory)."),
    ],
    force: ForceOpt = False,
    data_options: DataOptions = DataOptions(),
    min_user_items: Annotated[
        int, typer.Option("--min-user-items", help="k-core: keep users with at least N items.")
    ] = 1,
    min_item_users: Annotated[
        int, typer.Option("--min-item-users", help="k-core: keep items with at least N users.")
    ] = 1,
    start: Annotated[
        str | None, typer.Option("--start", help="Drop listens before this date (UTC).")
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--end", help="Drop listens after this date (UTC; the day is included)."),
    ] = None,
    max_listens_per_day: Annotated[
        int | None,
        typer.Option(
            "--max-listens-per-day",
            help="Drop users with more listens than this on any day (bots); 1000 is a safe "
            "limit for humans.",
        ),
    ] = None,
    events: Annotated[
        bool, typer.Option("--events/--no-events", help="Keep every timestamped listen.")
    ] = True,
    listens: Annotated[
        bool | None,
        typer.Option(
            "--listens/--no-listens",
            help="Write the canonical listens.parquet (default: yes, unless the source already "
            "is Parquet: a ListenBrainz dump or an ingested table).",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            help="The user of a personal export (Spotify, a ListenBrainz export) whose plays "
            "name nobody (default: the export's own user name, else its file or folder name).",
        ),
    ] = None,
    min_play_seconds: Annotated[
        float,
        typer.Option(
            "--min-play-seconds",
            help="Spotify: plays shorter than this are not listens (skipped and counted).",
        ),
    ] = 30.0,
    max_line_bytes: Annotated[
        int,
        typer.Option(
            "--max-line-bytes",
            help="Text sources: the longest line accepted (a longer one is an error).",
        ),
    ] = 1 << 20,
    metadata: Annotated[
        list[Path] | None,
        typer.Option(
            "--metadata",
            help="Item metadata to join to the items (repeatable): a HetRec 2K folder (its tag "
            "assignments), a MusicBrainz JSON dump (.json / .jsonl, one entity a line) or a "
            "CSV of item,tag[,weight].",
        ),
    ] = None,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            "--memory-limit",
            help="Memory budget (e.g. 4GB; default: half the machine's memory). Past it, "
            "estimated from the sources' sizes, listens are spilled to disk by user and "
            "reduced a partition at a time: slower, same output.",
            metavar="SIZE",
        ),
    ] = None,
    keep_runs: Annotated[
        bool,
        typer.Option(
            "--keep-runs",
            help="ListenBrainz Parquet dumps: spill, and keep the runs in --out (runs/, about "
            "half the size of the dump's Parquet) so that later incremental dumps can be added "
            "with --append.",
        ),
    ] = False,
    append: Annotated[
        bool,
        typer.Option(
            "--append",
            help="Add the SOURCE incremental ListenBrainz dumps (one dump each, oldest first) "
            "to --out, ingested with --keep-runs, without reading its full dump again: the "
            "same directory as ingesting all the dumps together. Level, filters and events "
            "are the first ingest's; a dump appended already is skipped.",
        ),
    ] = False,
    engine_options: EngineOptions = EngineOptions(),
) -> None:
    """Read sources, write the interaction matrix (and the canonical listens table, for text
    sources or with --listens) to --out."""
    from tastemaker.data.filters import Filters
    from tastemaker.data.ingest import ingest as run_ingest
    from tastemaker.data.spill import parse_size

    if user is not None and len(sources) > 1:
        raise UsageError("--user names the person of one export; give one source with it")
    if max_line_bytes < 1:
        raise UsageError(f"--max-line-bytes must be at least 1; got {max_line_bytes}")
    options = dataclasses.replace(
        data_options.reader_options(),
        user=user,
        min_play_seconds=min_play_seconds,
        max_line_bytes=max_line_bytes,
    )
    format, level, engine = data_options.format, data_options.level, engine_options.engine
    budget = None if memory_limit is None else parse_size(memory_limit)
    filters = Filters(
        min_user_items=min_user_items,
        min_item_users=min_item_users,
        start=parse_date(start, "--start"),
        end=parse_date(end, "--end", end=True),
        max_listens_per_day=max_listens_per_day,
    )
    if append:
        given = filters != Filters() or metadata or listens or not events or keep_runs
        if given or engine != "local":
            raise UsageError(
                "--append keeps the level, filters and events of the directory's ingest; "
                "leave out the filters, --metadata, --listens, --no-events, --keep-runs, --engine"
            )
    claim_outputs(force, [*sources, *(metadata or [])], Output("--out", out, KIND))
    if append:
        from tastemaker.data.append import append as run_append

        appended = run_append(
            sources, out, budget, None if level == "artist" else level, console=err_console
        )
        if appended is None:
            console.print(f"{out}: every dump given was appended already; nothing to do")
            return
        _print_summary(appended, out, appended.level)
        return
    if engine == "spark" and keep_runs:
        raise UsageError("--keep-runs is the local engine's; leave out --engine spark")
    if engine == "spark" and metadata:
        raise UsageError("--metadata is read by the local engine; add it with tastemaker metadata")
    if engine == "spark":
        interactions = _spark_ingest(sources, out, format, level, filters, events, engine_options)
    elif engine == "local":
        interactions = run_ingest(
            sources,
            out,
            format=format,
            level=level,
            options=options,
            filters=filters,
            keep_events=events,
            listens=listens,
            console=err_console,
            metadata=metadata or (),
            memory_limit=budget,
            keep_runs=keep_runs,
        )
    else:
        raise UsageError(f"--engine must be 'local' or 'spark'; got {engine!r}")
    _print_summary(interactions, out, level)


def _print_summary(interactions, out: Path, level: str) -> None:
    """The ingest's figures, and what the readers skipped or left out."""
    from tastemaker.data.ingest import summary

    figures = summary(interactions)
    table = Table(title=f"{out} ({level} level)", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key in ("users", "items", "interactions", "listens", "listens_kept"):
        table.add_row(key.replace("_", " "), f"{figures[key]:,}")
    table.add_row("duplicates dropped", f"{figures['duplicates_dropped']:,}")
    table.add_row("rows skipped", f"{figures['skipped_rows']:,}")
    for reason, count in interactions.source.get("skipped", {}).items():
        if count:
            table.add_row(f"{reason} skipped", f"{count:,}")
    if figures["rows_without_item"]:
        table.add_row(f"rows without a {level}", f"{figures['rows_without_item']:,}")
    console.print(table)
    example = interactions.source.get("skipped_example")
    if example:
        console.print(f"first skipped row: {example}")
    for entry in interactions.source.get("left_out", []):
        console.print(f"left out: {entry}")
    for entry in interactions.source.get("metadata", []):
        console.print(
            f"metadata {entry['path']} ({entry['format']}): {entry['items_matched']:,} of "
            f"{entry['items_named']:,} items matched, {entry['ambiguous_names']:,} ambiguous"
        )
    for step in interactions.source.get("filtered", []):
        parts = [f"{step['listens']:,} listens", f"{step['users']:,} users"]
        parts.append(f"{step['items']:,} items")
        if step.get("interactions") is not None:
            parts.append(f"{step['interactions']:,} interactions")
        console.print(f"{step['name']} ({step['setting']}): removed " + ", ".join(parts))


def _spark_ingest(sources, out, format, level, filters, events, engine: EngineOptions):
    """``--engine spark``: ListenBrainz Parquet dumps (local paths or URIs) through Spark."""
    from tastemaker.data.filters import Filters
    from tastemaker.engines.spark import parse_conf, spark_ingest

    if format not in (None, "listenbrainz"):
        raise UsageError("--engine spark reads ListenBrainz Parquet dumps (--format listenbrainz)")
    if filters != Filters():
        raise UsageError("--engine spark does not filter; ingest, then filter on one machine")
    with err_console.status("ingesting with Spark"):
        return spark_ingest(
            [str(s) for s in sources],
            out,
            level=level,
            master=engine.spark_master,
            conf=parse_conf(engine.spark_conf),
            keep_events=events,
        )


def register(app: typer.Typer) -> None:
    """Add ``ingest`` to the app."""
    app.command()(ingest)

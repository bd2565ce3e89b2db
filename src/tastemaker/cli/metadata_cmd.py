"""``tastemaker metadata``: join item tags, genres and facts to an ingested directory."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from tastemaker.artifacts import atomic_directory
from tastemaker.cli.common import ForceOpt, Output, claim_outputs, console, err_console
from tastemaker.data.interactions import KIND, Interactions
from tastemaker.data.readers import LISTENS_FILE, ReaderOptions
from tastemaker.errors import UsageError


def metadata(
    data: Annotated[
        Path, typer.Argument(help="An ingested directory.", metavar="DATA", show_default=False)
    ],
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Metadata sources: a HetRec 2K folder (tag assignments), MusicBrainz JSON "
            "dumps (.json / .jsonl, one entity a line; compressed or archived), CSV files of "
            "item,tag[,weight].",
            metavar="FILE",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write.")],
    format: Annotated[
        str | None,
        typer.Option("--format", help="hetrec, musicbrainz or csv (default: from the name)."),
    ] = None,
    on_bad_rows: Annotated[
        str, typer.Option("--on-bad-rows", help="error (default) or skip (and count).")
    ] = "error",
    force: ForceOpt = False,
) -> None:
    """Write DATA with the metadata of FILE... joined to its items (by MBID or id, else by
    unique folded name) to --out; inspect shows the coverage."""
    from tastemaker.data.load import is_ingested
    from tastemaker.data.metadata.attach import attach_metadata
    from tastemaker.data.metadata.coverage import coverage

    if on_bad_rows not in ("error", "skip"):
        raise UsageError(f"--on-bad-rows must be error or skip; got {on_bad_rows!r}")
    if not is_ingested(data):
        raise UsageError(f"{data}: not an ingested directory (tastemaker ingest writes one)")
    claim_outputs(force, [data, *files], Output("--out", out, KIND))
    interactions = Interactions.load(data)
    with err_console.status("reading and matching metadata"):
        interactions = attach_metadata(
            interactions, files, format=format, options=ReaderOptions(on_bad_rows=on_bad_rows)
        )
    with atomic_directory(out, kind=KIND, inputs=[data, *files], force=force) as tmp:
        listens = data / LISTENS_FILE
        if listens.is_file():  # the canonical listens travel along (a hard link where possible)
            try:
                os.link(listens, tmp / LISTENS_FILE)
            except OSError:
                with contextlib.suppress(OSError):
                    (tmp / LISTENS_FILE).unlink()
                shutil.copy2(listens, tmp / LISTENS_FILE)
        interactions.write_into(tmp)
    report = coverage(interactions) or {}
    for entry in report.get("sources", []):
        console.print(
            f"{entry['path']} ({entry['format']}): {entry['items_matched']:,} of "
            f"{entry['items_named']:,} items matched, {entry['ambiguous_names']:,} ambiguous "
            f"names, {entry['skipped_rows']:,} rows skipped"
        )
    console.print(
        f"{out}: {report.get('items_with_tags', 0):,} items with tags "
        f"({report.get('item_share', 0):.1%} of items, {report.get('listen_share', 0):.1%} "
        "of listens)"
    )


def register(app: typer.Typer) -> None:
    """Add ``metadata`` to the app."""
    app.command()(metadata)

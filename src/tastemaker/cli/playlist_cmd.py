"""``tastemaker playlist`` and ``radio``: playlists from a trained model, as a table or a file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tastemaker.artifacts import atomic_write_bytes
from tastemaker.cli.common import ForceOpt, Output, claim_outputs, console, err_console
from tastemaker.data.readers import LISTENS_FILE, read_sources, reading
from tastemaker.errors import UsageError
from tastemaker.models import load_model
from tastemaker.models.registry import resolve_models

ModelDirArg = Annotated[Path, typer.Argument(help="A model directory written by train.")]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="jspf (ListenBrainz imports it), xspf or m3u8; without --out, printed to stdout. "
        "Default: a table, or jspf with --out.",
    ),
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="File to write (an existing file needs --force).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (with the day: same list).")]
DayOpt = Annotated[
    str | None,
    typer.Option("--day", help="The playlist's date, YYYY-MM-DD (default: today, UTC)."),
]
ShuffleOpt = Annotated[
    bool, typer.Option("--shuffle", help="Random order (artists still kept apart).")
]
MAX_TRACKS = 500


def _day(text: str | None) -> datetime:
    if text is None:
        today = datetime.now(UTC).date()
    else:
        try:
            today = date.fromisoformat(text)
        except ValueError:
            raise UsageError(f"--day must be a date like 2025-01-31; got {text!r}") from None
    return datetime(today.year, today.month, today.day, tzinfo=UTC)


def _check(n: int, format: str | None) -> None:
    from tastemaker.playlists import FORMATS

    if not 1 <= n <= MAX_TRACKS:
        raise UsageError(f"--n must be between 1 and {MAX_TRACKS}; got {n}")
    if format is not None and format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}")


def _library(model_dir: Path):
    from tastemaker.playlists import Library

    return Library(load_model(model_dir))


def _emit(playlist, format: str | None, out: Path | None, force: bool) -> None:
    """A table on stdout, the file's text on stdout, or the file (atomically)."""
    from tastemaker.playlists import render

    for note in playlist.notes:
        err_console.print(f"note: {note}", highlight=False)
    short = playlist.describe_shortfall()
    if short:
        err_console.print(f"short: {short}", highlight=False)
    if out is not None:
        atomic_write_bytes(out, render(playlist, format or "jspf").encode(), force=force)
        err_console.print(f"wrote {len(playlist.tracks)} tracks to {out}", highlight=False)
        return
    if format is not None:
        typer.echo(render(playlist, format), nl=False)
        return
    table = Table(title=playlist.title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("artist")
    table.add_column("title")
    table.add_column("why")
    for number, track in enumerate(playlist.tracks, 1):
        table.add_row(str(number), track.creator, track.title or "", track.reason)
    console.print(table)


def playlist(
    model_dir: ModelDirArg,
    user: Annotated[str, typer.Option("--user", help="A user id as in the data.")],
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="jams (loved tracks not heard lately), exploration (artists never played) "
            "or mix (jams with a share of discoveries).",
        ),
    ] = "jams",
    n: Annotated[int, typer.Option("--n", help=f"Tracks (1 to {MAX_TRACKS}).")] = 50,
    format: FormatOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    seed: SeedOpt = 0,
    day: DayOpt = None,
    shuffle: ShuffleOpt = False,
) -> None:
    """A personal playlist for a user of the training data, with a reason per track."""
    from tastemaker.playlists import personal_playlist

    _check(n, format)
    now = _day(day)
    library = _library(model_dir)
    index = library.data.users.get(user)
    if index < 0:
        raise UsageError(f"unknown user {user!r} (the model knows {library.data.n_users:,})")
    listener = library.listener(user=index, now=now)
    made = personal_playlist(library, listener, mode, n=n, seed=seed, shuffle=shuffle)
    _emit(made, format, out, force)


def radio(
    model_dir: ModelDirArg,
    prompt: Annotated[
        str,
        typer.Argument(
            help='Terms such as "artist:(Radiohead) tag:(shoegaze):2 user:(17)"; :N weights.'
        ),
    ],
    mode: Annotated[
        str,
        typer.Option("--mode", help="easy (well known), medium or hard (rarer artists)."),
    ] = "easy",
    n: Annotated[int, typer.Option("--n", help=f"Tracks (1 to {MAX_TRACKS}).")] = 100,
    format: FormatOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    seed: SeedOpt = 0,
    day: DayOpt = None,
    shuffle: ShuffleOpt = False,
) -> None:
    """A radio playlist from a prompt of artists, tags and users, blended by weight."""
    from tastemaker.playlists import radio as make_radio

    _check(n, format)
    library = _library(model_dir)
    made = make_radio(library, prompt, mode, n=n, seed=seed, now=_day(day), shuffle=shuffle)
    _emit(made, format, out, force)


def _listens(data: Path, format: str | None, level: str):
    """The canonical listens of a raw source, a data set, or an ingested directory that kept
    its listens table; and the reader (for one-line errors while they are read)."""
    from tastemaker.data.load import is_ingested, resolve_sources

    if is_ingested(data) and format is None:
        table = data / LISTENS_FILE
        if not table.is_file():
            raise UsageError(f"{data}: has no {LISTENS_FILE}; give the source it was ingested from")
        data, format = table, "listens"
    paths, format, options = resolve_sources([data], format, None, level)
    return read_sources(paths, format=format, options=options)


def evaluate_playlists(
    data: Annotated[
        Path, typer.Argument(help="Timestamped listens: a source, a data set or an ingest.")
    ],
    model: Annotated[
        str, typer.Option("--model", help="The model to build playlists with.")
    ] = "als",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="NAME=VALUE (repeatable).")
    ] = None,
    format: Annotated[str | None, typer.Option("--format", help="Source format.")] = None,
    level: Annotated[str, typer.Option("--level", help="artist, release or recording.")] = "artist",
    cutoff: Annotated[
        str | None,
        typer.Option("--cutoff", help="YYYY-MM-DD (default: one window before the last listen)."),
    ] = None,
    window_days: Annotated[int, typer.Option("--window-days", help="Days judged.")] = 28,
    users: Annotated[int, typer.Option("--users", help="Listeners sampled.")] = 200,
    n: Annotated[int, typer.Option("--n", help="Tracks per playlist.")] = 50,
    seed: SeedOpt = 0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON.")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """The playlist task: playlists from listens before a cut-off, judged on the window after
    it, against the ListenBrainz recipe and the plain top-n of the same model."""
    from rich.progress import Progress

    from tastemaker.evaluation.playlist_task import playlist_task
    from tastemaker.evaluation.protocol import RESULTS_KIND, write_json

    _check(n, None)
    if window_days < 1 or users < 1:
        raise UsageError("--window-days and --users must be at least 1")
    ((name, params),) = resolve_models([model], param or [], [], default_model=model)
    claim_outputs(force, [data], Output("--json", json_path, RESULTS_KIND, file=True))
    source = _listens(data, format, level)
    when = _day(cutoff) if cutoff is not None else None
    with Progress(console=err_console, transient=True) as bar, reading(source):
        task = bar.add_task("playlists", total=users)
        result = playlist_task(
            source.listens,
            name,
            params,
            level=level,
            cutoff=when,
            window_days=window_days,
            n=n,
            users=users,
            seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    _print_task(result)
    if json_path is not None:
        write_json(result, json_path, force=True)
        err_console.print(f"wrote {json_path}")


def _print_task(result: dict) -> None:
    table = Table(
        title=f"playlists from {result['model']}: {result['users']} listeners, cut-off "
        f"{result['cutoff'][:10]}, {result['window_days']} days judged",
        title_justify="left",
    )
    columns = {
        "track_hit_rate": "track hits",
        "artist_hit_rate": "artist hits",
        "discovery_hit_rate": "discoveries",
        "distinct_artists": "artists",
        "transition_similarity": "transitions",
        "random_order_similarity": "random order",
        "violations": "violations",
    }
    table.add_column("playlist", no_wrap=True)
    for label in columns.values():
        table.add_column(label, justify="right")
    for key, row in result["results"].items():
        table.add_row(key, *[f"{row[c]:.4g}" for c in columns])
    console.print(table)
    for what, value in result["ratios"].items():
        console.print(f"{what}: {'-' if value is None else f'{value:.2f}x'}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``playlist``, ``radio`` and ``evaluate-playlists`` to the app."""
    app.command()(playlist)
    app.command()(radio)
    app.command("evaluate-playlists")(evaluate_playlists)

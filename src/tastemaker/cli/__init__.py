"""The ``tastemaker`` command line: thin Typer commands that parse, call the library, print.

Every user-caused error (``TastemakerError``) becomes one line on stderr and exit code 2.
Each ``*_cmd`` module adds its commands through ``register(app)``.

Commands import the library layers they use (evaluation, tuning, playlists, serving,
engines) inside the command, not at the top of their module: every start of the program
(``--help``, ``inspect``) would otherwise load 91 tastemaker modules, implicit and Optuna
among their imports, instead of 36 (importing the CLI took 6.4-8.0 s instead of 3.9-5.0 s on
a machine at load 14; docs/architecture.md). What every command loads anyway (``data``,
``artifacts``, ``models.registry``) is imported at the top.
"""

from __future__ import annotations

import sys

import typer

from tastemaker import __version__
from tastemaker.artifacts import release_outputs
from tastemaker.cli import (
    datasets_cmd,
    evaluate_cmd,
    hybrid_cmd,
    ingest_cmd,
    inspect_cmd,
    metadata_cmd,
    model_cmds,
    playlist_cmd,
    serve_cmd,
    synth_cmd,
    tune_cmd,
)
from tastemaker.cli.common import HelpGroup
from tastemaker.errors import TastemakerError

app = typer.Typer(
    name="tastemaker",
    help="Music recommendations from listening histories.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: option names are never cut and descriptions wrap at word breaks,
    # at any width (Typer's rich panels squeeze the option column at 80 columns), and it is
    # at most 100 columns wide on a wide terminal.
    rich_markup_mode=None,
    context_settings={"max_content_width": 100},
    cls=HelpGroup,
)


@app.callback()
def _root() -> None:
    """Music recommendations from listening histories."""


@app.command()
def version() -> None:
    """Print the tastemaker version."""
    typer.echo(__version__)


for module in (
    ingest_cmd,
    synth_cmd,
    inspect_cmd,
    metadata_cmd,
    evaluate_cmd,
    model_cmds,
    playlist_cmd,
    tune_cmd,
    hybrid_cmd,
    serve_cmd,
    datasets_cmd,
):
    module.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except TastemakerError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
    finally:
        # Outputs claimed but never written (the command failed first): unlock them and
        # remove the folders made for them.
        release_outputs()

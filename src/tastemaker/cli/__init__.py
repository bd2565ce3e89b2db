"""The ``tastemaker`` command line: thin Typer commands that parse, call the library, print.

Every user-caused error (``TastemakerError``) becomes one line on stderr and exit code 2.
Each ``*_cmd`` module adds its commands through ``register(app)``.
"""

from __future__ import annotations

import sys

import typer

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
    from tastemaker import __version__

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
        from tastemaker.artifacts import release_outputs

        release_outputs()

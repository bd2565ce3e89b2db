"""Every command's help reads well at 80 columns: option names whole, lines within the width,
the model choices listed, and no PyTorch imported to print it."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest
import typer.main
from typer.testing import CliRunner

from tastemaker.cli import app
from tastemaker.models import available_models


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    """(path, command) for every command and group below ``group``."""
    yield prefix, group
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


COMMANDS = list(_commands(typer.main.get_command(app)))
IDS = [" ".join(path) or "root" for path, _ in COMMANDS]


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path, command", COMMANDS, ids=IDS)
def test_help_at_80_columns_keeps_option_names_whole(path, command):
    text = _help(path)
    assert "…" not in text
    long = [line for line in text.splitlines() if len(line) > 80]
    assert not long, long
    for param in command.params:
        for name in [*param.opts, *param.secondary_opts]:
            if name.startswith("-"):
                whole = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)
                assert whole, f"{' '.join(path)}: {name} not shown whole"
    if isinstance(command, click.Group):
        # Each command's first sentence is shown whole (wrapped), never cut with "...".
        assert "..." not in text.split("Commands:")[1]


@pytest.mark.parametrize(
    "path, option",
    [
        (("train",), "--model"),
        (("evaluate",), "--models"),
        (("tune",), "--model"),
        (("replicate",), "--corrected"),
    ],
)
def test_model_options_list_the_registered_models(path, option):
    text = " ".join(_help(path).split())  # undo the wrapping
    names = ", ".join(available_models())
    assert names in text, f"{option} help does not list: {names}"


def test_help_imports_no_torch():
    code = (
        "import sys\n"
        "from tastemaker.cli import main\n"
        "for args in (['train', '--help'], ['evaluate', '--help'], ['--help']):\n"
        "    sys.argv = ['tastemaker', *args]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules, 'lightgbm' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "False False"

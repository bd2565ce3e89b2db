"""The README's "First hour" walkthrough works as written: each of its commands is run here
(the data set served from loopback instead of its makers' site) or checked against the
Makefile, and the "Set up" section's pip lines agree with the Makefile and pyproject.toml."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib

import httpx
import pytest
import typer.main
from packaging.requirements import Requirement

from conftest import REPO, invoke_cli
from data_server import DataServer, hetrec_zip, serve_as, sha256
from tastemaker.cli import app
from tastemaker.data import datasets

README = (REPO / "README.md").read_text()
MAKEFILE = (REPO / "Makefile").read_text()


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def commands(text: str) -> list[str]:
    """The command lines of a section's bash blocks, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


WALK = commands(section("First hour"))


def make_recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target, continuation lines joined."""
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", MAKEFILE, re.M)
    assert match, f"Makefile has no target {target}"
    return match.group(1).replace("\\\n", " ").splitlines()


def check_tastemaker_line(line: str) -> None:
    """A tastemaker command of the Makefile names a real command and only its options."""
    words = line.split("tastemaker", 1)[1].split()
    root = typer.main.get_command(app)
    command = root.get_command(None, words[0])
    assert command is not None, f"no command {words[0]!r}: {line}"
    known = {name for p in command.params for name in (*p.opts, *p.secondary_opts)}
    for option in re.findall(r"(?<!\S)--[a-z][\w-]*", line):
        assert option in known, f"{words[0]} has no option {option}: {line}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_open_the_page(args: list[str], cwd) -> None:
    """``tastemaker serve ...`` as written (on a free port): the page and its search answer."""
    port = free_port()
    program = "from tastemaker.cli import main; main()"
    server = subprocess.Popen(
        [sys.executable, "-c", program, *args, "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "tastemaker serve did not come up"
            time.sleep(0.3)
        page = httpx.get(f"{base}/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        found = httpx.get(f"{base}/v1/items", params={"search": "radiohead"}, timeout=10)
        assert found.status_code == 200 and "Radiohead" in found.text
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_walkthrough_is_what_the_readme_says():
    assert WALK[0] == "make demo" and WALK[-1].startswith("tastemaker serve")
    assert any("datasets fetch" in line for line in WALK)


def test_make_demo_runs_only_commands_and_options_that_exist():
    lines = [line for line in make_recipe("demo") if "tastemaker " in line]
    assert len(lines) >= 6
    for line in lines:
        check_tastemaker_line(line)
    assert "VENV := .venv" in MAKEFILE  # what '. .venv/bin/activate' activates


def test_every_first_hour_command_runs(tmp_path, monkeypatch):
    """Each line runs as written, in a fresh folder, with HetRec served from loopback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(datasets.CACHE_SETTING, str(tmp_path / "cache"))
    with DataServer() as server:
        data = hetrec_zip()
        serve_as(monkeypatch, server, "hetrec2011-lastfm-2k", "/h.zip", data, sha256(data))
        for line in WALK:
            args = shlex.split(line)
            if line == "make demo":
                continue  # checked above: the target and every command it runs
            if line == ". .venv/bin/activate":
                continue  # the Makefile's venv (checked above)
            assert args[0] == "tastemaker", f"README command not covered by this test: {line}"
            if args[1] == "serve":
                serve_and_open_the_page(args[1:], tmp_path)
                continue
            assert invoke_cli(*args[1:]) == 0, line
    assert (tmp_path / "report" / "index.html").is_file()
    assert (tmp_path / "model" / "manifest.json").is_file()


def test_pip_lines_agree_with_the_makefile_and_pyproject():
    setup = commands(section("Set up"))
    torch_line = next(line for line in setup if "torch==" in line)
    readme_pin = re.search(r"torch==([\d.]+)", torch_line).group(1)
    make_pin = re.search(r"pip install -q torch==([\d.]+)", MAKEFILE).group(1)
    assert readme_pin == make_pin
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_line
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    torch = next(Requirement(r) for r in extras["ncf"] if r.startswith("torch"))
    assert torch.specifier.contains(make_pin), f"{torch} does not admit the pin {make_pin}"
    for line in setup:
        for names in re.findall(r"\[([\w,]+)\]", line):
            assert set(names.split(",")) <= set(extras), line
    assert project["license"] == "MIT" and (REPO / "LICENSE").is_file()


@pytest.mark.parametrize("target", ["demo", "test"])
def test_the_two_set_up_commands_exist(target):
    assert f"make {target}" in section("Set up")
    make_recipe(target)

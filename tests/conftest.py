"""Shared fixtures and helpers: paths to the real data sets beside the checkout (../shared/data)
and in-process runs of the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
HETREC = SHARED_DATA / "hetrec2011-lastfm-2k"
LISTENBRAINZ = SHARED_DATA / "listenbrainz-testdata"
LASTFM_1K = SHARED_DATA / "lastfm-1k-sample"


@pytest.fixture(scope="session")
def hetrec_path() -> Path:
    assert HETREC.is_dir(), f"real data expected at {HETREC}"
    return HETREC


@pytest.fixture(scope="session")
def hetrec(hetrec_path):
    """HetRec 2K at artist level (1,892 users x 17,632 artists), loaded once per session."""
    from tastemaker.data.load import load_interactions

    return load_interactions(hetrec_path)


def invoke_cli(*args) -> int:
    """Run the console entry point in-process with ``args``; its exit code."""
    import sys

    from tastemaker.cli import main

    old = sys.argv
    sys.argv = ["tastemaker", *map(str, args)]
    try:
        main()
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``invoke_cli`` and what it printed: (exit code, stdout, stderr)."""
    code = invoke_cli(*args)
    out, err = capsys.readouterr()
    return code, out, err

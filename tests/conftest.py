"""Shared fixtures and helpers: the real data sets (found through one setting) and in-process
runs of the command line.

The real data sets live in one folder, ``$TASTEMAKER_TEST_DATA`` (default ``../shared/data``
beside the checkout). A test that needs one takes its fixture (``hetrec_path``, ``hetrec``,
``listenbrainz_path``, ``lastfm_1k_path``): when the folder is absent the test is skipped with
a reason naming the setting, or fails when ``TASTEMAKER_REQUIRE_TEST_DATA=1`` (CI sets it, so
CI never skips them silently).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_SETTING = "TASTEMAKER_TEST_DATA"
REQUIRE_SETTING = "TASTEMAKER_REQUIRE_TEST_DATA"
TEST_DATA = Path(os.environ.get(DATA_SETTING) or REPO.parent / "shared" / "data")
# Where each data set is expected. Tests take the fixtures below, never these paths directly
# (tests/data/test_datasets.py checks), so that a missing folder skips or fails as asked.
HETREC = TEST_DATA / "hetrec2011-lastfm-2k"
LISTENBRAINZ = TEST_DATA / "listenbrainz-testdata"
LASTFM_1K = TEST_DATA / "lastfm-1k-sample"


def real_data(path: Path) -> Path:
    """``path`` if it is a folder; else skip the test, or fail it when CI requires the data."""
    if path.is_dir():
        return path
    if os.environ.get(REQUIRE_SETTING, "") not in ("", "0"):
        pytest.fail(
            f"{REQUIRE_SETTING} is set but the real data folder {path} is missing "
            f"(set {DATA_SETTING} to the folder that holds {path.name})",
            pytrace=False,
        )
    pytest.skip(f"real data {path.name} not found in {path.parent}; set {DATA_SETTING}")


@pytest.fixture(scope="session")
def hetrec_path() -> Path:
    return real_data(HETREC)


@pytest.fixture(scope="session")
def listenbrainz_path() -> Path:
    """The ListenBrainz test dumps (128 listens of 2 users, Parquet and JSON lines)."""
    return real_data(LISTENBRAINZ)


@pytest.fixture(scope="session")
def lastfm_1k_path() -> Path:
    """The first 5,000 lines of Last.fm 1K and its complete profile file."""
    return real_data(LASTFM_1K)


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

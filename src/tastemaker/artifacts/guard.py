"""What an output may replace: never an input, the current directory or what holds them; an
existing output only when tastemaker wrote it, of the same kind, unless forced."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

from tastemaker.artifacts.manifests import output_kind, unlisted_files
from tastemaker.errors import ArtifactError, UsageError


def real_path(path: str | Path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def overlaps(a: str | Path, b: str | Path) -> bool:
    """Whether two paths (symlinks resolved) are equal or one lies inside the other."""
    a, b = real_path(a), real_path(b)
    return a == b or a in b.parents or b in a.parents


def output_label(path: str | Path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def check_output(
    path: str | Path,
    kind: str | None = None,
    *,
    directory: bool = True,
    inputs: Iterable[str | Path] = (),
    force: bool = False,
    option: str | None = None,
) -> str | None:
    """The one guard of every output: may a new ``kind`` (a folder, or a file when
    ``directory`` is False) be written at ``path``? Raises, or returns a note to show.

    Always refused (UsageError), ``force`` or not: the current directory or a folder above
    it; a path that equals, contains or lies inside one of ``inputs`` (symlinks resolved;
    URLs are skipped); a destination under a regular file or in a folder this process may not
    write; a file output where a folder is; anything neither file nor folder (a device).
    Refused unless ``force`` (ArtifactError): an existing file or folder that is not a
    tastemaker output of ``kind`` (None: of any kind), such as a folder of the user's own
    files, and a tastemaker folder holding files its manifest does not list. A missing path
    or an empty folder is always fine.

    With ``force`` the old content is replaced whole, never written into: a mixed folder would
    hold files its manifest does not list, with nothing to tell later whose they are. The
    note says what will be replaced (None when there is nothing to say). ``option`` (the
    CLI's ``--out``) prefixes the messages.
    """
    label = output_label(path, option)
    target = check_destination(path, inputs, label)
    if not os.path.lexists(target):
        return None
    try:
        mode = target.stat().st_mode
        entries = sorted(os.listdir(target)) if stat.S_ISDIR(mode) else []
    except OSError as exc:
        raise UsageError(f"{label}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        if not directory:
            raise UsageError(f"{label}: is a folder; name a file")
        if not entries:
            return None
        found = output_kind(target)
        if found is None:
            reason = (
                f"is a folder tastemaker did not write ({len(entries)} entries: {entries[0]}, ...)"
            )
        elif kind is not None and found != kind:
            reason = f"holds a tastemaker {found!r}, not a {kind!r}"
        else:
            extra = unlisted_files(target)
            if not extra:
                return None
            reason = f"holds {len(extra)} file(s) its manifest does not list ({extra[0]}, ...)"
    elif stat.S_ISREG(mode):
        found = None if directory else output_kind(target)
        if directory:
            reason = "is a file, not a folder tastemaker wrote"
        elif found is None:
            reason = "is a file tastemaker did not write"
        elif kind is not None and found != kind:
            reason = f"holds a tastemaker {found!r}, not a {kind!r}"
        else:
            return None
    else:
        raise UsageError(f"{label}: is neither a file nor a folder")
    if not force:
        raise ArtifactError(f"{label}: {reason}; choose another path, or --force to replace it")
    return f"{label}: {reason}; replacing it whole (--force)"


def check_destination(path: str | Path, inputs: Iterable[str | Path], label: str) -> Path:
    """The checks of ``check_output`` that do not look at what ``path`` holds (so they need
    no lock): not the current directory, no input, a folder that can be written; the
    resolved path."""
    target = real_path(path)
    here = real_path(os.getcwd())
    if target == here or target in here.parents:
        raise UsageError(
            f"{label}: is the current directory or holds it; name a new directory instead"
        )
    for source in inputs:
        if "://" in str(source):
            continue
        source_path = real_path(source)
        if target == source_path:
            relation = "is"
        elif source_path in target.parents:
            relation = "lies inside"
        elif target in source_path.parents:
            relation = "contains"
        else:
            continue
        raise UsageError(f"{label}: {relation} the input {source}; write the output elsewhere")
    ancestor = target.parent
    while not os.path.lexists(ancestor):
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{label}: cannot be created: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{label}: cannot write into {ancestor} (read-only or not permitted)")
    return target


def tell(message: str) -> None:
    """Tell the person running the command (stderr: stdout may carry results)."""
    print(message, file=sys.stderr, flush=True)

"""Outputs written safely, described by a manifest, and loaded without pickle.

Every directory tastemaker writes (ingested data, trained models, reports) carries a
``manifest.json`` naming its kind and format version and the SHA-256 of every file in it
(a synthetic dump, which must stay a plain ListenBrainz dump to the readers, names its kind
in ``synth.json``). Arrays live in ``.npz`` files read with ``allow_pickle=False``; tables
live in Parquet. JSON files tastemaker writes carry ``kind`` and ``written_by``.

Output safety lives here, so every command that writes gets it (``check_output`` is the one
guard; ``claim_output``, ``atomic_directory`` and ``atomic_write_bytes`` call it):

* what may be replaced: nothing that equals, contains or lies inside an input, or holds the
  current directory (always refused); an existing output only when it is a tastemaker output
  of the same kind, else ``force`` (the CLI's ``--force``) is needed;
* one writer at a time: a lock file ``.NAME.lock`` beside the target (``flock``), held from
  the claim (the CLI claims before its slow work) to the end of the write;
* interrupted writes: the work happens in ``.NAME.tmp-PID-*`` and the old output is moved to
  ``.NAME.old-PID`` for the swap; the next writer of ``NAME`` removes those of dead processes
  and puts ``.old`` back when a kill fell between the two renames.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import stat
import sys
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from tastemaker.errors import ArtifactError, UsageError

MANIFEST = "manifest.json"
# A manifest lists files and a few fields; anything larger is not one (and is not read whole).
MAX_MANIFEST_BYTES = 16 << 20
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# The files whose "kind" says what a directory holds: the manifest, or a synthetic dump's
# summary (a manifest would make the dump look like an ingested directory to the readers).
KIND_FILES = (MANIFEST, "synth.json")
# What a JSON file tastemaker writes says in "written_by", beside its "kind".
WRITTEN_BY = "tastemaker"
# JSON outputs are small; a larger file is not one of them (and is not read to find out).
MAX_JSON_BYTES = 16 << 20
# A writer of one file waits this long for another writer of it (a JSON write takes ms).
FILE_LOCK_WAIT_S = 30.0


# -- what may be replaced ----------------------------------------------------------------------


def _resolve(path: str | Path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def overlaps(a: str | Path, b: str | Path) -> bool:
    """Whether two paths (symlinks resolved) are equal or one lies inside the other."""
    a, b = _resolve(a), _resolve(b)
    return a == b or a in b.parents or b in a.parents


def _read_json(path: Path) -> Any:
    """A small JSON file's content; None when it is missing, large, unreadable or not JSON."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            return None
        return json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def output_kind(path: str | Path) -> str | None:
    """The kind of tastemaker output at ``path``: a directory's (its manifest's ``kind``, or
    a synthetic dump's) or a JSON file's; None for anything tastemaker did not write."""
    path = Path(path)
    if path.is_dir():
        for name in KIND_FILES:
            content = _read_json(path / name)
            if not isinstance(content, dict):
                continue
            kind = content.get("kind")
            if kind is None and content.get("generator") == "tastemaker synth":
                kind = "synth"  # a dump written before synth.json named its kind
            if isinstance(kind, str):
                return kind
        return None
    content = _parquet_tag(path) if _is_parquet(path) else _read_json(path)
    if isinstance(content, dict) and content.get("written_by") == WRITTEN_BY:
        kind = content.get("kind")
        return kind if isinstance(kind, str) else None
    return None


# A Parquet file tastemaker writes says what it is in this key of its footer's metadata.
PARQUET_TAG = b"tastemaker"


def _is_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return path.is_file() and fh.read(4) == b"PAR1"
    except OSError:
        return False


def _parquet_tag(path: Path) -> Any:
    """The JSON under ``PARQUET_TAG`` in a Parquet file's footer; None if there is none."""
    # pyarrow only when a Parquet output is looked at: every command would pay its import.
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path).metadata or {}
        tag = metadata.get(PARQUET_TAG)
        return json.loads(tag) if tag is not None and len(tag) <= MAX_JSON_BYTES else None
    except Exception:  # an untrusted file: anything pyarrow cannot read is not ours
        return None


def parquet_tag(kind: str, **fields: Any) -> dict[bytes, bytes]:
    """Footer metadata that makes a Parquet file a tastemaker output of ``kind`` (for
    ``output_kind``: a later write of the same kind may replace it)."""
    return {PARQUET_TAG: tagged_json(fields, kind)}


def _walk(directory: Path) -> Iterator[Path]:
    """Every path under ``directory``; UsageError if part of it cannot be read."""
    try:
        yield from directory.rglob("*")
    except OSError as exc:
        raise UsageError(f"{directory}: cannot be read ({exc.strerror})") from None


def _unlisted(directory: Path) -> list[str]:
    """Files of a directory that its manifest does not list (added by someone else)."""
    manifest = _read_json(directory / MANIFEST)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return []
    found = []
    for path in _walk(directory):
        name = path.relative_to(directory).as_posix()
        if name == MANIFEST or name in files or path.is_dir():
            continue
        if path.name == MANIFEST and output_kind(path.parent) is not None:
            continue  # a nested tastemaker folder's own manifest (a model's data/)
        found.append(name)
    return sorted(found)


def _label(path: str | Path, option: str | None) -> str:
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
    label = _label(path, option)
    target = _check_destination(path, inputs, label)
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
            extra = _unlisted(target)
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


def _check_destination(path: str | Path, inputs: Iterable[str | Path], label: str) -> Path:
    """The checks of ``check_output`` that do not look at what ``path`` holds (so they need
    no lock): not the current directory, no input, a folder that can be written; the
    resolved path."""
    target = _resolve(path)
    here = _resolve(os.getcwd())
    if target == here or target in here.parents:
        raise UsageError(
            f"{label}: is the current directory or holds it; name a new directory instead"
        )
    for source in inputs:
        if "://" in str(source):
            continue
        source_path = _resolve(source)
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


def _say(message: str) -> None:
    """Tell the person running the command (stderr: stdout may carry results)."""
    print(message, file=sys.stderr, flush=True)


# -- one writer at a time ----------------------------------------------------------------------


class _Lock:
    """An exclusive ``flock`` on ``.NAME.lock`` beside ``target``, removed on release.

    The file is removed by its holder, so a waiter that got the lock of a removed file tries
    again on the new one (the inode check): two writers can never both hold ``NAME``.
    """

    def __init__(self, target: Path) -> None:
        self.path = target.with_name(f".{target.name}.lock")
        self.fd: int | None = None

    def acquire(self, label: str, wait: float = 0.0, doing: str = "writing it") -> None:
        deadline = time.monotonic() + wait
        waiting = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise ArtifactError(
                    f"{label}: cannot write into {self.path.parent} ({exc.strerror})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                holder = f" (pid {holder})" if holder.isdigit() else ""
                if time.monotonic() >= deadline:
                    raise ArtifactError(
                        f"{label}: another tastemaker process{holder} is {doing}; "
                        "wait for it to finish, or choose another path"
                    ) from None
                if not waiting:
                    _say(f"{label}: another tastemaker process{holder} is {doing}; waiting")
                    waiting = True
                time.sleep(0.05)
                continue
            except OSError as exc:
                os.close(fd)
                raise ArtifactError(f"{label}: cannot lock {self.path} ({exc.strerror})") from None
            try:
                current = os.stat(self.path)
                opened = os.fstat(fd)
                same = (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)
            except FileNotFoundError:
                same = False
            if not same:  # removed by the writer we waited for: lock the file there now
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            self.fd = fd
            return

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # still held: nobody else is using this file
        os.close(self.fd)
        self.fd = None


@contextlib.contextmanager
def file_lock(path: str | Path, wait: float = 60.0, doing: str = "using it") -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``path`` for the block, waiting up to ``wait`` seconds for
    another holder (``doing`` says what it does, in the messages)."""
    lock = _Lock(_resolve(path))
    lock.acquire(str(path), wait, doing)
    try:
        yield
    finally:
        lock.release()


# -- interrupted writes ------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        # The caller holds the lock and has not started this write: nothing of ours is in
        # flight for this name, so what carries our pid is a dead process's (pid reuse).
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _recover(target: Path, label: str) -> None:
    """Under the lock of ``target``: remove the temporary and set-aside copies that dead
    writers left (``.NAME.tmp-PID-*``, ``.NAME.old-PID``), and put the set-aside copy back
    when a writer died between moving the old output aside and moving the new one in."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:tmp-(\d+)-[0-9a-f]+|old-(\d+))")
    olds = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            match = pattern.fullmatch(entry.name)
            if match is None or _alive(int(match.group(1) or match.group(2))):
                continue
            if match.group(2):
                olds.append(Path(entry.path))
            else:
                _remove(Path(entry.path))
    if olds and not os.path.lexists(target):
        newest = max(olds, key=lambda p: p.lstat().st_mtime)
        try:
            os.replace(newest, target)
        except OSError as exc:
            raise ArtifactError(
                f"{label}: cannot restore it from {newest} ({exc.strerror})"
            ) from None
        olds.remove(newest)
        _say(f"{label}: restored the previous output (a writer was stopped while replacing it)")
    for old in olds:
        _remove(old)


def _checkpoint(step: str) -> None:
    """Does nothing: where the tests stop a writer (and kill it) at a step of the swap."""


# -- claims: the CLI checks and locks its outputs before the work ------------------------------


@dataclasses.dataclass
class _Claim:
    kind: str | None
    directory: bool
    inputs: tuple[str | Path, ...]
    force: bool
    option: str | None
    lock: _Lock | None = None
    created: list[Path] = dataclasses.field(default_factory=list)

    def end(self, failed: bool) -> None:
        if self.lock is not None:
            self.lock.release()
        if failed:
            for folder in self.created:  # innermost first; only if still empty
                with contextlib.suppress(OSError):
                    folder.rmdir()


_claims: dict[Path, _Claim] = {}
_claims_guard = threading.Lock()


def _make_parents(folder: Path, label: str) -> list[Path]:
    """Create ``folder`` and its missing ancestors (modes from the umask); those this call
    created, innermost first."""
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        except OSError as exc:
            for made in reversed(created):
                with contextlib.suppress(OSError):
                    made.rmdir()
            raise ArtifactError(f"{label}: cannot create {path} ({exc.strerror})") from None
        created.append(path)
    return created[::-1]


def claim_output(
    path: str | Path,
    kind: str,
    *,
    directory: bool = True,
    inputs: Iterable[str | Path] = (),
    force: bool = False,
    option: str | None = None,
) -> None:
    """Check an output before the work that makes it (``check_output``; a note is shown on
    stderr) and reserve it: a folder's missing parents are created and the folder is locked
    (a second writer is refused at once), and what interrupted writers left is cleaned up.

    The ``atomic_directory`` / ``atomic_write_bytes`` of the same path later use this claim
    (its kind, inputs and ``force``) and end it; ``release_outputs`` ends the claims of a
    command that stopped before writing.
    """
    label = _label(path, option)
    target = _resolve(path)
    inputs = tuple(inputs)
    with _claims_guard:
        previous = _claims.pop(target, None)
    if previous is not None:
        previous.end(failed=True)
    claim = _Claim(kind, directory, inputs, force, option)
    if not directory:  # a file is only locked while it is written (the swap is one rename)
        note = check_output(path, kind, directory=False, inputs=inputs, force=force, option=option)
    else:
        # What the folder holds is looked at under the lock: another writer may be swapping.
        _check_destination(path, inputs, label)
        claim.created = _make_parents(target.parent, label)
        claim.lock = _Lock(target)
        try:
            claim.lock.acquire(label)
            _recover(target, label)
            note = check_output(
                path, kind, directory=directory, inputs=inputs, force=force, option=option
            )
        except BaseException:
            claim.end(failed=True)
            raise
    if note:
        _say(note)
    with _claims_guard:
        _claims[target] = claim


def release_outputs() -> None:
    """End every claim this process holds (unlock; remove the folders they created, if
    still empty). For a command that stops before writing its outputs."""
    with _claims_guard:
        claims = list(_claims.values())
        _claims.clear()
    for claim in claims:
        claim.end(failed=True)


atexit.register(release_outputs)


def _begin(
    path: str | Path,
    kind: str | None,
    directory: bool,
    inputs: Iterable[str | Path],
    force: bool,
) -> tuple[Path, _Claim, str]:
    """The claim a write works under: the one ``claim_output`` made, or a new one."""
    target = _resolve(path)
    with _claims_guard:
        claim = _claims.pop(target, None)
    claimed = claim is not None
    if claim is not None:
        claim.kind = kind or claim.kind
        claim.inputs = (*claim.inputs, *inputs)
        claim.force = claim.force or force
        label = _label(path, claim.option)
        if claim.lock is None:  # a file: locked only while it is written
            claim.created = _make_parents(target.parent, label)
    else:
        label = str(path)
        claim = _Claim(kind, directory, tuple(inputs), force, None)
        _check_destination(path, claim.inputs, label)
        claim.created = _make_parents(target.parent, label)
    if claim.lock is None:
        claim.lock = _Lock(target)
        try:
            claim.lock.acquire(label, 0.0 if directory else FILE_LOCK_WAIT_S)
            _recover(target, label)
            if not claimed:  # nothing was checked yet
                note = check_output(
                    path, kind, directory=directory, inputs=claim.inputs, force=force
                )
                if note:
                    _say(note)
        except BaseException:
            claim.end(failed=True)
            raise
    return target, claim, label


def _new_temporary(target: Path, directory: bool) -> tuple[Path, int | None]:
    """``.NAME.tmp-PID-RANDOM`` beside ``target``: a folder, or a file opened for writing.
    Made with modes from the umask (``mkdtemp`` / ``mkstemp`` would force 0700 / 0600)."""
    while True:
        path = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            if directory:
                os.mkdir(path, 0o777)
                return path, None
            return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def _swap(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``; an old ``target`` is moved aside first and removed after,
    so a kill at any point leaves the old or the new output (``_recover`` finishes)."""
    if not os.path.lexists(target):
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    _checkpoint("moved-aside")
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    _checkpoint("swapped")
    _remove(old)


@contextlib.contextmanager
def atomic_directory(
    path: str | Path,
    overwrite: bool = True,
    kind: str | None = None,
    *,
    inputs: Iterable[str | Path] = (),
    force: bool = False,
) -> Iterator[Path]:
    """Yield a temporary sibling directory that becomes ``path`` only if the block succeeds.

    ``check_output`` decides what may be replaced (``kind``: of what is written; None: the
    kind the block's manifest names), before the block and again, under the lock, before the
    swap; ``inputs`` and ``force`` add to those of a ``claim_output`` of the same path. On any
    exception the temporary directory (and any parent folder made for it) is removed, so no
    half-written output is left.
    """
    target, claim, label = _begin(path, kind, True, inputs, force)
    failed = True
    try:
        if not overwrite and os.path.lexists(target):
            raise ArtifactError(f"{label}: already exists")
        try:
            tmp, _ = _new_temporary(target, directory=True)
        except OSError as exc:
            raise ArtifactError(
                f"{label}: cannot write into {target.parent} ({exc.strerror})"
            ) from None
        try:
            yield tmp
            _checkpoint("written")
            expected = claim.kind or output_kind(tmp) or "output without a kind"
            check_output(
                path, expected, inputs=claim.inputs, force=claim.force, option=claim.option
            )
            try:
                _swap(tmp, target)
            except OSError as exc:
                raise ArtifactError(f"{label}: cannot replace it ({exc.strerror})") from None
        except BaseException:
            _remove(tmp)
            raise
        failed = False
    finally:
        claim.end(failed)


def atomic_write_bytes(
    path: str | Path,
    data: bytes,
    kind: str | None = None,
    *,
    inputs: Iterable[str | Path] = (),
    force: bool = False,
) -> None:
    """Write a file under a temporary name and rename it into place, under the guard of
    ``check_output`` (``kind`` None: only a missing file, or one tastemaker wrote, is
    replaced) and the file's lock (a second writer waits for the first)."""
    target, claim, label = _begin(path, kind, False, inputs, force)
    failed = True
    try:
        check_output(
            path,
            claim.kind,
            directory=False,
            inputs=claim.inputs,
            force=claim.force,
            option=claim.option,
        )
        tmp = None
        try:
            tmp, fd = _new_temporary(target, directory=False)
            assert fd is not None  # a file, not a folder: always opened
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            _checkpoint("file-written")
            os.replace(tmp, target)
        except OSError as exc:
            if tmp is not None:
                _remove(tmp)
            raise ArtifactError(f"{label}: cannot write it ({exc.strerror})") from None
        except BaseException:
            if tmp is not None:
                _remove(tmp)
            raise
        failed = False
    finally:
        claim.end(failed)


@contextlib.contextmanager
def atomic_file(
    path: str | Path,
    kind: str | None = None,
    *,
    inputs: Iterable[str | Path] = (),
    force: bool = False,
) -> Iterator[Path]:
    """Yield a temporary sibling file that becomes ``path`` only if the block succeeds: for a
    file streamed by another library (pyarrow's ``ParquetWriter``). The guard and the lock
    are those of ``atomic_write_bytes``; on any exception the temporary file is removed."""
    target, claim, label = _begin(path, kind, False, inputs, force)
    failed = True
    try:
        check_output(
            path,
            claim.kind,
            directory=False,
            inputs=claim.inputs,
            force=claim.force,
            option=claim.option,
        )
        try:
            tmp, fd = _new_temporary(target, directory=False)
            assert fd is not None  # a file, not a folder: always opened
            os.close(fd)
        except OSError as exc:
            raise ArtifactError(f"{label}: cannot write it ({exc.strerror})") from None
        try:
            yield tmp
            _checkpoint("file-written")
            os.replace(tmp, target)
        except OSError as exc:
            _remove(tmp)
            raise ArtifactError(f"{label}: cannot write it ({exc.strerror})") from None
        except BaseException:
            _remove(tmp)
            raise
        failed = False
    finally:
        claim.end(failed)


def tagged_json(content: dict[str, Any], kind: str) -> bytes:
    """``content`` as JSON that says it is a tastemaker ``kind`` (so a later write may
    replace it): ``kind`` and ``written_by`` come first."""
    if "kind" in content or "written_by" in content:
        raise ValueError("content has its own 'kind' or 'written_by'")
    tagged = {"kind": kind, "written_by": WRITTEN_BY, **content}
    return (json.dumps(tagged, indent=2, default=float) + "\n").encode()


def atomic_write_json(path: str | Path, content: dict[str, Any], kind: str, **guard: Any) -> None:
    """``atomic_write_bytes`` of ``tagged_json(content, kind)``."""
    atomic_write_bytes(path, tagged_json(content, kind), kind, **guard)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | Path, kind: str, format_version: int, **fields: Any) -> dict:
    """Write ``manifest.json`` with kind, version, the given fields and checksums of all files
    (those of nested artifacts, their manifests included)."""
    directory = Path(directory)
    files = {
        p.relative_to(directory).as_posix(): file_sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p != directory / MANIFEST
    }
    manifest = {"kind": kind, "format_version": format_version, **fields, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False, default=str))
    return manifest


def read_manifest(
    directory: str | Path,
    kind: str | None = None,
    max_version: int | None = None,
    verify: bool = True,
) -> dict:
    """Read and check a manifest: strict types, kind, a known format version and (``verify``)
    that every file of the directory tree is listed and matches its checksum.

    Anything else is an ``ArtifactError`` naming the directory and what is wrong: a manifest
    is read before any other file, so it must be valid before its fields are trusted.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: not a directory")
    if not path.is_file() or path.is_symlink():
        raise ArtifactError(f"{directory}: no {MANIFEST}; not a tastemaker directory")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{path}: {path.stat().st_size:,} bytes; not a tastemaker manifest")
    try:
        manifest = strict_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("kind"), str):
        raise ArtifactError(f"{path}: not a tastemaker manifest (no kind)")
    if kind is not None and manifest["kind"] != kind:
        raise ArtifactError(f"{directory}: holds a {manifest['kind']!r}, expected a {kind!r}")
    version = manifest.get("format_version")
    if type(version) is not int or version < 1:
        raise ArtifactError(
            f"{path}: format_version must be a positive integer, not {short_repr(version)}"
        )
    if max_version is not None and version > max_version:
        raise ArtifactError(
            f"{directory}: format version {short_repr(version)} is newer than this tastemaker "
            f"reads ({max_version}); upgrade tastemaker"
        )
    files = _checked_file_list(path, manifest.get("files"))
    if verify:
        verify_files(directory, files)
    return manifest


def strict_json(data: bytes | str) -> Any:
    """``json.loads`` that refuses what JSON does not allow (NaN, Infinity) and raises only
    ``ValueError`` (also for numbers of over 4,300 digits and nesting too deep to parse)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(data, parse_constant=refuse)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters (error messages quote untrusted values)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else "a huge int"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _checked_file_list(path: Path, files: Any) -> dict[str, str]:
    """The manifest's ``files``: a mapping of safe relative paths to SHA-256 hex digests."""
    if not isinstance(files, dict):
        raise ArtifactError(
            f"{path}: 'files' must map each file to its SHA-256, not {short_repr(files)}"
        )
    for name, digest in files.items():
        parts = PurePosixPath(name).parts
        if (
            not name
            or name.startswith("/")
            or "\\" in name
            or any(part in ("", ".", "..") for part in parts)
            or name == MANIFEST
        ):
            raise ArtifactError(f"{path}: file name {short_repr(name)} is not a path inside it")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise ArtifactError(f"{path}: the checksum of {name} is not a SHA-256 hex digest")
    return files


def verify_files(directory: Path, files: dict[str, str]) -> None:
    """Every regular file under ``directory`` (sub-manifests too) is listed, and matches.

    Links and special files are refused: a checksum would follow them out of the directory
    (or read a device forever).
    """
    found = set()
    for root, dirs, names in os.walk(directory):
        for name in dirs + names:
            entry = Path(root, name)
            relative = entry.relative_to(directory).as_posix()
            if entry.is_symlink():
                raise ArtifactError(f"{directory}: {relative} is a link; artifacts hold files")
            if name in names:
                if not entry.is_file():
                    raise ArtifactError(f"{directory}: {relative} is not a regular file")
                found.add(relative)
    found.discard(MANIFEST)
    for name in sorted(set(files) - found):
        raise ArtifactError(f"{directory}: file {name} listed in the manifest is missing")
    for name in sorted(found - set(files)):
        raise ArtifactError(
            f"{directory}: {name} is not covered by the manifest's checksums "
            "(added after the directory was written?)"
        )
    for name, expected in files.items():
        if file_sha256(directory / name) != expected:
            raise ArtifactError(
                f"{directory / name}: checksum mismatch; the directory is corrupted"
            )


def save_arrays(path: str | Path, **arrays: np.ndarray) -> None:
    """Save named arrays to ``.npz`` (uncompressed: loading speed matters more than size)."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; it would need pickle")
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its flags


def stream_arrays(
    path: str | Path, members: dict[str, tuple[np.dtype, int, Iterable[np.ndarray]]]
) -> None:
    """``save_arrays`` for arrays too large to hold at once: each member is given as its
    dtype, its length and an iterable of its chunks in order. The file is byte for byte what
    ``save_arrays`` writes for the concatenated arrays (ValueError if the lengths differ)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, (dtype, length, chunks) in members.items():
            dtype = np.dtype(dtype)
            header = {
                "descr": np.lib.format.dtype_to_descr(dtype),
                "fortran_order": False,
                "shape": (int(length),),
            }
            written = 0
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                for chunk in chunks:
                    member.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
                    written += len(chunk)
            if written != length:
                raise ValueError(f"array {name!r}: {written} values written, {length} declared")


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` without pickle.

    Each member's header (dtype, shape) is read first and must account for exactly the bytes
    the member holds, uncompressed (as ``save_arrays`` writes): memory stays within the
    file's size, whatever a header claims.
    """
    path = Path(path)
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ValueError(f"{name} is compressed; tastemaker writes arrays uncompressed")
                with archive.open(info) as member:
                    arrays[name] = _read_member(member, name, info.file_size)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ArtifactError(f"{path}: cannot read arrays ({exc})") from None
    return arrays


def _read_member(member: Any, name: str, size: int) -> np.ndarray:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"{name}: unknown .npy version {version}")
    if dtype.hasobject:
        raise ValueError(f"{name} holds Python objects; it would need pickle")
    count = math.prod(shape)
    if count * dtype.itemsize != size - member.tell():
        raise ValueError(f"{name}: its header does not match its size")
    data = np.frombuffer(member.read(count * dtype.itemsize), dtype=dtype, count=count)
    order: Literal["C", "F"] = "F" if fortran else "C"
    return data.reshape(shape, order=order).copy(order=order)


# -- checking arrays against what their reader expects -------------------------------------------
# A dimension of a spec: a length, a name whose length must agree wherever it appears (bound by
# the caller, e.g. "items", or by the first array that uses it), or None for any length.
Dim = int | str | None
KINDS = {"float": "f", "int": "iu", "bool": "b", "str": "U"}


@dataclass(frozen=True)
class ArraySpec:
    """What one saved array must be: shape, kind of values (float, int, bool, str) and range.

    ``low`` / ``high`` bound numbers (inclusive / exclusive, as for indices); floats must be
    finite unless ``finite=False``.
    """

    shape: tuple[Dim, ...]
    kind: str = "float"
    finite: bool = True
    low: float | None = None
    high: float | Dim = None
    required: bool = True


@dataclass(frozen=True)
class CSRSpec:
    """A CSR matrix saved as separate arrays: checked (monotone ``indptr`` from 0 to nnz,
    indices within the columns, finite data) before scipy sees it, since scipy trusts them
    (a bad ``indptr`` crashes the process, out-of-range indices allocate without bound)."""

    shape: tuple[Dim, Dim]
    indptr: str
    indices: str
    data: str
    shape_array: str | None = None  # the stored (rows, cols), where one is saved
    required: bool = True
    low: float | None = None  # bound on the values (data)
    nnz: str | None = None  # a dimension name bound to the number of stored values

    @classmethod
    def prefixed(
        cls, prefix: str, shape: tuple[Dim, Dim], data: str = "data", **options: Any
    ) -> CSRSpec:
        return cls(shape, f"{prefix}indptr", f"{prefix}indices", f"{prefix}{data}", **options)

    def names(self) -> list[str]:
        names = [self.indptr, self.indices, self.data]
        return names + [self.shape_array] if self.shape_array else names

    def build(self, arrays: dict[str, np.ndarray], shape: tuple[int, int]) -> sp.csr_matrix:
        """The matrix, once ``check_arrays`` has passed."""
        return sp.csr_matrix(
            (arrays[self.data], arrays[self.indices], arrays[self.indptr]), shape=shape
        )


def check_arrays(
    arrays: dict[str, np.ndarray],
    specs: Mapping[str, ArraySpec | CSRSpec],
    where: str | Path,
    dims: dict[str, int] | None = None,
) -> dict[str, int]:
    """Check ``arrays`` (as loaded) against ``specs``; ArtifactError naming the first problem.

    Array names the specs do not know are refused too. Returns the dimensions as bound
    (``dims`` plus the names the arrays fixed).
    """
    bound = dict(dims or {})
    known: set[str] = set()
    for label, spec in specs.items():
        if isinstance(spec, CSRSpec):
            known.update(spec.names())
            if spec.indptr not in arrays and not spec.required:
                continue
            _check_csr(arrays, label, spec, where, bound)
        else:
            known.add(label)
            if label not in arrays:
                if spec.required:
                    raise ArtifactError(f"{where}: array {label!r} is missing")
                continue
            _check_array(arrays[label], label, spec, where, bound)
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise ArtifactError(f"{where}: unexpected array(s) {unknown}; written by another version?")
    return bound


def _dimension(dim: Dim, bound: dict[str, int]) -> int | None:
    return bound.get(dim) if isinstance(dim, str) else dim


def _describe(shape: tuple[Dim, ...], bound: dict[str, int]) -> str:
    parts = [
        "any" if d is None else f"{d}={bound[d]}" if isinstance(d, str) and d in bound else str(d)
        for d in shape
    ]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _check_shape(
    array: np.ndarray, name: str, shape: tuple[Dim, ...], where: str | Path, bound: dict
) -> None:
    expected = _describe(shape, bound)
    ok = array.ndim == len(shape)
    if ok:
        for dim, size in zip(shape, array.shape, strict=True):
            want = _dimension(dim, bound)
            if want is None and isinstance(dim, str):
                bound[dim] = size  # first use names the length
            elif want is not None and size != want:
                ok = False
    if not ok:
        raise ArtifactError(f"{where}: {name} has shape {array.shape}; expected {expected}")


def _check_array(
    array: np.ndarray, name: str, spec: ArraySpec, where: str | Path, bound: dict
) -> None:
    if array.dtype.kind not in KINDS[spec.kind]:
        raise ArtifactError(f"{where}: {name} holds {array.dtype}; expected {spec.kind} values")
    _check_shape(array, name, spec.shape, where, bound)
    _check_values(
        array, name, spec.kind, spec.finite, spec.low, _upper_bound(spec.high, bound), where
    )


def _upper_bound(high: float | Dim, bound: dict[str, int]) -> float | None:
    """``high`` itself, or the size bound to its dimension name (None: not bound yet)."""
    return bound.get(high) if isinstance(high, str) else high


def _check_values(
    array: np.ndarray,
    name: str,
    kind: str,
    finite: bool,
    low: float | None,
    high: float | None,
    where: str | Path,
) -> None:
    if array.size == 0 or kind not in ("float", "int"):
        return
    if kind == "float" and finite and not np.isfinite(array).all():
        raise ArtifactError(f"{where}: {name} holds NaN or infinite values")
    values = array[np.isfinite(array)] if kind == "float" else array
    if values.size == 0:
        return
    if low is not None and values.min() < low:
        raise ArtifactError(f"{where}: {name} holds {values.min()}, below {low}")
    if high is not None and values.max() >= high:
        raise ArtifactError(f"{where}: {name} holds {values.max()}; must be below {high}")


def _check_csr(
    arrays: dict[str, np.ndarray], label: str, spec: CSRSpec, where: str | Path, bound: dict
) -> None:
    for name in spec.names():
        if name not in arrays:
            raise ArtifactError(f"{where}: array {name!r} of the {label} matrix is missing")
    if spec.shape_array is not None:
        stored = arrays[spec.shape_array]
        _check_array(stored, spec.shape_array, ArraySpec((2,), "int", low=0), where, bound)
        rows, cols = (int(x) for x in stored)
        for dim, size in zip(spec.shape, (rows, cols), strict=True):
            want = _dimension(dim, bound)
            if want is None and isinstance(dim, str):
                bound[dim] = size
            elif want is not None and size != want:
                raise ArtifactError(
                    f"{where}: the {label} matrix is {rows} x {cols}; "
                    f"expected {_describe(spec.shape, bound)}"
                )
    indptr, indices, data = (arrays[n] for n in (spec.indptr, spec.indices, spec.data))
    for name, array in ((spec.indptr, indptr), (spec.indices, indices)):
        if array.dtype.kind not in "iu" or array.ndim != 1:
            raise ArtifactError(f"{where}: {name} must be a 1-d integer array")
    _check_shape(indptr, spec.indptr, (_plus_one(spec.shape[0], bound),), where, bound)
    if spec.shape[0] is not None and _dimension(spec.shape[0], bound) is None:
        bound[spec.shape[0]] = len(indptr) - 1
    if len(indptr) == 0:
        raise ArtifactError(f"{where}: {spec.indptr} is empty")
    nnz = len(indices)
    if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
        raise ArtifactError(
            f"{where}: {spec.indptr} must rise from 0 to the {nnz} stored values; it does not"
        )
    if data.ndim != 1 or len(data) != nnz:
        raise ArtifactError(f"{where}: {spec.data} must hold one value per index ({nnz})")
    if data.dtype.kind not in "fiub":
        raise ArtifactError(f"{where}: {spec.data} holds {data.dtype}; expected numbers")
    n_cols = _dimension(spec.shape[1], bound)
    if n_cols is None:
        raise ArtifactError(f"{where}: the {label} matrix has no known column count")
    _check_values(indices, spec.indices, "int", True, 0, n_cols, where)
    kind = "float" if data.dtype.kind == "f" else "int"
    _check_values(data, spec.data, kind, True, spec.low, None, where)
    if spec.nnz is not None:
        bound[spec.nnz] = nnz


def _plus_one(dim: Dim, bound: dict[str, int]) -> int | None:
    size = _dimension(dim, bound)
    return None if size is None else size + 1

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

Modules: ``guard`` (what may be replaced), ``manifests`` (kinds, manifests, checksums, strict
JSON), ``arrays`` (``.npz`` without pickle; array specs); the locks, the recovery of
interrupted writes, claims and the atomic writers are here. Import from the package.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tastemaker.artifacts.arrays import (
    ArraySpec,
    CSRSpec,
    Dim,
    check_arrays,
    load_arrays,
    save_arrays,
    stream_arrays,
)
from tastemaker.artifacts.guard import (
    check_destination,
    check_output,
    output_label,
    overlaps,
    real_path,
    tell,
)
from tastemaker.artifacts.manifests import (
    KIND_FILES,
    MANIFEST,
    MAX_JSON_BYTES,
    MAX_MANIFEST_BYTES,
    PARQUET_TAG,
    WRITTEN_BY,
    file_sha256,
    output_kind,
    parquet_tag,
    read_manifest,
    read_small_json,
    short_repr,
    strict_json,
    tagged_json,
    unlisted_files,
    verify_files,
    write_manifest,
)
from tastemaker.errors import ArtifactError

# A writer of one file waits this long for another writer of it (a JSON write takes ms).
FILE_LOCK_WAIT_S = 30.0


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
                    tell(f"{label}: another tastemaker process{holder} is {doing}; waiting")
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
    lock = _Lock(real_path(path))
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
        tell(f"{label}: restored the previous output (a writer was stopped while replacing it)")
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
    label = output_label(path, option)
    target = real_path(path)
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
        check_destination(path, inputs, label)
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
        tell(note)
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
    target = real_path(path)
    with _claims_guard:
        claim = _claims.pop(target, None)
    claimed = claim is not None
    if claim is not None:
        claim.kind = kind or claim.kind
        claim.inputs = (*claim.inputs, *inputs)
        claim.force = claim.force or force
        label = output_label(path, claim.option)
        if claim.lock is None:  # a file: locked only while it is written
            claim.created = _make_parents(target.parent, label)
    else:
        label = str(path)
        claim = _Claim(kind, directory, tuple(inputs), force, None)
        check_destination(path, claim.inputs, label)
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
                    tell(note)
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
    with atomic_file(path, kind, inputs=inputs, force=force) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_file(
    path: str | Path,
    kind: str | None = None,
    *,
    inputs: Iterable[str | Path] = (),
    force: bool = False,
) -> Iterator[Path]:
    """Yield a temporary sibling file that becomes ``path`` only if the block succeeds: for a
    file streamed by another library (pyarrow's ``ParquetWriter``), and the one mechanism under
    ``atomic_write_bytes``: ``check_output``'s guard, the file's lock; on any exception the
    temporary file is removed."""
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


def atomic_write_json(path: str | Path, content: dict[str, Any], kind: str, **guard: Any) -> None:
    """``atomic_write_bytes`` of ``tagged_json(content, kind)``."""
    atomic_write_bytes(path, tagged_json(content, kind), kind, **guard)


# The package's public names: the writers here and what its modules define.
__all__ = [
    "ArraySpec",
    "CSRSpec",
    "Dim",
    "FILE_LOCK_WAIT_S",
    "KIND_FILES",
    "MANIFEST",
    "MAX_JSON_BYTES",
    "MAX_MANIFEST_BYTES",
    "PARQUET_TAG",
    "WRITTEN_BY",
    "atomic_directory",
    "atomic_file",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_arrays",
    "check_output",
    "claim_output",
    "file_lock",
    "file_sha256",
    "load_arrays",
    "output_kind",
    "overlaps",
    "parquet_tag",
    "read_manifest",
    "read_small_json",
    "release_outputs",
    "save_arrays",
    "stream_arrays",
    "short_repr",
    "strict_json",
    "tagged_json",
    "unlisted_files",
    "verify_files",
    "write_manifest",
]

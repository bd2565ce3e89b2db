"""Checked, bounded byte streams: how every text and JSON reader opens what it reads.

A source file may be plain, compressed (``.gz``, ``.zst`` / ``.zstd``, ``.bz2``, ``.xz``) or a
member of an archive (``.tar`` and its compressed forms, ``.zip``); ``members`` opens any of
them, and a folder, as a sequence of named binary streams. Two guards hold for all of them:

* Integrity. Decompression goes through decompressors that check the stream's own integrity
  at its end and refuse a stream cut short: gzip's CRC-32 and length, bzip2's block CRCs,
  xz's check, zstd's content checksum (when the frame carries one: the ``zstd`` tool writes
  one by default; python-zstandard's reader accepts a truncated frame without a word, so
  ``backports.zstd`` reads it). A tar archive must end with its end-of-archive marker (Python's
  tarfile ends quietly at a damaged or missing header), its metadata headers are bounded, and
  the compressed stream under it is read to its end so its check runs. Zip members are
  checked against their CRC-32. A failed check raises ``DataError`` in every
  ``--on-bad-rows`` mode: a damaged source is never half ingested.
* Bounded lines. ``line_blocks`` cuts a stream into blocks of whole lines and refuses a line
  longer than ``max_line_bytes`` (``MAX_LINE_BYTES``, 1 MiB, by default), naming the file and
  the line, so memory stays bounded by the block size whatever the input; ``read_document``
  bounds a whole-file document (a JSON array) the same way.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import lzma
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, NamedTuple, cast

from tastemaker.errors import DataError

try:  # Python 3.14 ships it as compression.zstd
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - the version this project runs today
    from backports import zstd

# 1 MiB: the longest listen line seen in the real dumps is under 4 KB; a longer line is a
# broken or hostile file, and the bound keeps one "line" from filling memory.
MAX_LINE_BYTES = 1 << 20
# Blocks of about 32 MiB: large enough that parsing, not Python, sets the pace.
BLOCK_BYTES = 32 << 20
# Tar metadata headers (long names, pax records) are read whole; no real one is near this.
MAX_TAR_HEADER_BYTES = 1 << 20

COMPRESSION_SUFFIXES = {
    ".gz": "gzip",
    ".zst": "zstd",
    ".zstd": "zstd",
    ".bz2": "bzip2",
    ".xz": "xz",
}
ARCHIVE_SUFFIXES = (
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.zst",
    ".tar.zstd",
    ".tar.bz2",
    ".tar.xz",
    ".zip",
)
_TAR_METADATA = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


def is_archive(name: str | Path) -> bool:
    return str(name).lower().endswith(ARCHIVE_SUFFIXES)


def compression(name: str | Path) -> str | None:
    """The compression a file name says (``gzip``, ``zstd``, ...), or None."""
    lower = str(name).lower()
    if lower.endswith(".tgz"):
        return "gzip"
    return next(
        (kind for suffix, kind in COMPRESSION_SUFFIXES.items() if lower.endswith(suffix)), None
    )


def plain_name(name: str | Path) -> str:
    """The name without a compression suffix: ``plays.csv.gz`` -> ``plays.csv``."""
    text = str(name)
    lower = text.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if lower.endswith(suffix) and not lower.endswith(ARCHIVE_SUFFIXES):
            return text[: -len(suffix)]
    return text


def natural_key(path: str | Path) -> list:
    """Sort key putting ``2.listens`` before ``10.listens``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def files_under(folder: Path, wanted: Callable[[str], bool]) -> list[Path]:
    """Files anywhere under ``folder`` whose (uncompressed) name ``wanted`` accepts, in
    natural order."""
    found = [p for p in folder.rglob("*") if p.is_file() and wanted(plain_name(p.name).lower())]
    return sorted(found, key=natural_key)


# -- integrity ------------------------------------------------------------------------------


def damaged(exc: BaseException, name: str) -> DataError:
    """The one-line error for a stream that failed its integrity check or was cut short."""
    if isinstance(exc, DataError):
        return exc
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno != errno.EINVAL:
        # Here, not at the top: the readers package imports this module (a cycle).
        from tastemaker.data.readers import cannot_read

        return cannot_read(exc, name)
    kind = compression(name) or ("zip" if ".zip:" in name.lower() else None)
    stream = f"{kind} stream" if kind else "stream"
    if isinstance(exc, EOFError):
        problem = f"truncated: the {stream} ends early"
    elif isinstance(exc, tarfile.ReadError) and "unexpected end" in str(exc):
        problem = "truncated: the tar archive ends inside this member"
    else:
        text = str(exc).strip().splitlines()
        problem = f"damaged {stream} ({text[0][:200] if text else type(exc).__name__})"
    return DataError(f"{problem}; nothing of it was used", path=name)


_STREAM_ERRORS = (
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zstd.ZstdError,
    tarfile.TarError,
    zipfile.BadZipFile,
    ValueError,  # a zip member's bad header / compression parameters
    RuntimeError,  # an encrypted zip member
    NotImplementedError,  # a zip compression method Python lacks
)


class Checked:
    """A binary stream whose failures (damage, truncation, I/O) are one-line DataErrors."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self._stream, self.name = stream, name

    def read(self, size: int) -> bytes:
        try:
            return self._stream.read(size)
        except _STREAM_ERRORS as exc:
            raise damaged(exc, self.name) from None

    def readline(self, size: int) -> bytes:
        try:
            return self._stream.readline(size)
        except _STREAM_ERRORS as exc:
            raise damaged(exc, self.name) from None

    def close(self) -> None:
        with contextlib.suppress(*_STREAM_ERRORS):
            self._stream.close()


def _decompressed(raw: IO[bytes], name: str) -> IO[bytes]:
    """``raw`` decompressed as its name says (or as it is)."""
    kind = compression(name)
    if kind == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))  # a binary file object
    if kind == "zstd":
        return zstd.ZstdFile(raw, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    return raw


@contextlib.contextmanager
def open_file(path: Path) -> Iterator[Checked]:
    """One file (compressed or not) as a checked stream of its content."""
    from tastemaker.data.readers import cannot_read  # a cycle, as in ``damaged``

    try:
        raw = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise cannot_read(exc, path) from None
    try:
        yield Checked(_decompressed(raw, path.name), str(path))
    finally:
        raw.close()


def drain(stream: Checked) -> None:
    """Read ``stream`` to its end (discarding), so the decompressor's final check runs."""
    while stream.read(1 << 20):
        pass


# -- members ----------------------------------------------------------------------------------


def members(path: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, Checked]]:
    """(display name, checked stream) of every file ``wanted`` accepts (by lower-case name
    without compression suffix) in a folder, an archive, or ``path`` itself, in order.

    Streams are read to their end by the caller (``line_blocks`` does), which is when a
    compressed stream's or a zip member's check runs; a tar archive's end is checked here
    once its last member has been read.
    """
    if path.is_dir():
        for file in files_under(path, wanted):
            with open_file(file) as stream:
                yield str(file), stream
        return
    if path.name.lower().endswith(".zip"):
        yield from _zip_members(path, wanted)
    elif is_archive(path):
        yield from _tar_members(path, wanted)
    else:
        with open_file(path) as stream:
            yield str(path), stream


def _zip_members(path: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, Checked]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise damaged(exc, str(path)) from None
        raise DataError(
            "not a readable zip archive (truncated or damaged: its directory is missing)",
            path=path,
        ) from None
    with archive:
        for info in archive.infolist():
            if info.is_dir() or not wanted(plain_name(Path(info.filename).name).lower()):
                continue
            name = f"{path}:{info.filename}"
            try:
                member = archive.open(info)
            except _STREAM_ERRORS as exc:
                raise damaged(exc, name) from None
            with member:
                yield name, Checked(_decompressed(member, info.filename), name)


def _tar_members(path: Path, wanted: Callable[[str], bool]) -> Iterator[tuple[str, Checked]]:
    ending: dict[str, str] = {}

    class BoundedTarInfo(tarfile.TarInfo):
        """Notes how the archive ends and refuses oversized metadata headers."""

        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> BoundedTarInfo:
            buf = tar.fileobj.read(tarfile.BLOCKSIZE)
            try:
                info = cls.frombuf(buf, tar.encoding, tar.errors)
            except tarfile.EOFHeaderError:  # type: ignore[attr-defined]  # not in typeshed
                ending["how"] = "marker"
                raise
            except tarfile.HeaderError as exc:
                ending["how"] = str(exc) or type(exc).__name__
                raise
            if info.type in _TAR_METADATA and info.size > MAX_TAR_HEADER_BYTES:
                raise DataError(
                    f"damaged tar archive (a {info.size:,}-byte metadata header)", path=path
                )
            info.offset = tar.fileobj.tell() - tarfile.BLOCKSIZE
            return info._proc_member(tar)  # type: ignore[attr-defined]  # tarfile's own step

    last = "its start"
    with open_file(path) as stream:
        try:
            # Checked is a binary stream (read, close) that tarfile's stream mode reads
            archive = tarfile.open(  # noqa: SIM115
                fileobj=cast(IO[bytes], stream), mode="r|", tarinfo=BoundedTarInfo
            )
        except tarfile.ReadError as exc:
            raise damaged(exc, str(path)) from None
        with archive:
            while True:
                try:
                    member = archive.next()
                except _STREAM_ERRORS as exc:
                    raise damaged(exc, str(path)) from None
                if member is None:
                    break
                last = member.name
                # A streamed TarFile keeps every member it has seen; nothing here needs them.
                archive.members.clear()  # type: ignore[attr-defined]  # not in typeshed
                if member.isfile() and wanted(plain_name(Path(member.name).name).lower()):
                    name = f"{path}:{member.name}"
                    try:
                        content = archive.extractfile(member)
                    except _STREAM_ERRORS as exc:
                        raise damaged(exc, name) from None
                    if content is not None:
                        yield name, Checked(_decompressed(content, member.name), name)
        if ending.get("how") != "marker":
            problem = ending.get("how", "no end-of-archive marker")
            raise DataError(
                f"truncated or damaged tar archive after {last} ({problem}); nothing of it "
                "was used",
                path=path,
            )
        drain(stream)


# -- bounded reading --------------------------------------------------------------------------


def read_document(stream: Checked, limit: int) -> bytes:
    """The whole content of ``stream``; DataError when it is larger than ``limit`` bytes."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise DataError(
            f"larger than {limit:,} bytes, the most one document may hold", path=stream.name
        )
    drain(stream)
    return data


def first_line(path: Path, limit: int = MAX_LINE_BYTES, strict: bool = False) -> bytes | None:
    """The first line of a (possibly compressed) file, at most ``limit`` bytes; None when it
    cannot be read (``strict``: the DataError saying why; format detection never raises)."""
    try:
        with open_file(path) as stream:
            data = b""
            while b"\n" not in data and len(data) <= limit:
                chunk = stream.read(1 << 16)
                if not chunk:
                    break
                data += chunk
    except DataError:
        if strict:
            raise
        return None
    return data.split(b"\n", 1)[0].removeprefix(b"\xef\xbb\xbf")[:limit]


def too_long(name: str, line: int, limit: int) -> DataError:
    return DataError(
        f"line longer than {limit:,} bytes (lines are bounded so that memory stays bounded; "
        "is this a text file of listens? tastemaker ingest --max-line-bytes raises the limit)",
        path=name,
        row=line,
    )


class Block(NamedTuple):
    """Whole lines of a stream: how many lines come before them, the bytes, their count."""

    lines_before: int
    data: bytes
    lines: int


def line_blocks(
    stream: Checked,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    block_bytes: int = BLOCK_BYTES,
    quote: bytes | None = None,
    bad_line: Callable[[int, str], None] | None = None,
) -> Iterator[Block]:
    """The whole of ``stream`` as ``Block``s of whole lines (of about ``block_bytes``).

    A line longer than ``max_line_bytes`` raises DataError naming it. With ``quote``, a block
    ends only where the quote characters before it balance (a quoted field may hold line
    breaks); a line whose quote does not close within ``max_line_bytes`` (or before the end)
    goes to ``bad_line(line number, problem)``, which raises or records it (without
    ``bad_line`` it raises), and is then emptied, so line numbers stay put. A UTF-8 byte-order
    mark at the start is dropped.
    """
    half = max(1, max_line_bytes // 2)
    lines_before, rest, first = 0, b"", True
    while True:
        chunk = stream.read(block_bytes)  # at the end: b"" however often it is asked
        if chunk and not chunk.endswith(b"\n"):  # finish the line: blocks end on a line break
            chunk += stream.readline(max_line_bytes + 1)
        data = rest + chunk if rest else chunk
        if first:
            data, first = data.removeprefix(b"\xef\xbb\xbf"), False
        newline_cut = data.rfind(b"\n") + 1 if chunk else len(data)
        cut = newline_cut
        if quote is not None:
            cut = _balanced_cut(data, newline_cut, quote)
            if cut < newline_cut and (not chunk or len(data) - cut > max_line_bytes):
                # Past the cut is one unfinished quoted field: the line opening it is at fault.
                line = lines_before + data.count(b"\n", 0, cut) + 1
                within = "before the end" if not chunk else f"within {max_line_bytes:,} bytes"
                problem = (
                    f"a field quoted with {quote.decode()} opens on this line and does not "
                    f"close {within}; if quotes are part of the data, pass --quote none"
                )
                if bad_line is None:
                    raise DataError(problem, path=stream.name, row=line)
                bad_line(line, problem)
                end = data.find(b"\n", cut)
                rest = data[:cut] + (data[end:] if end >= 0 else b"")
                continue
        block, rest = (data, b"") if cut == len(data) else (data[:cut], data[cut:])
        if len(rest) > max_line_bytes:
            raise too_long(stream.name, lines_before + block.count(b"\n") + 1, max_line_bytes)
        _check_line_lengths(block, lines_before, stream.name, max_line_bytes, half)
        if block:
            lines = block.count(b"\n")
            yield Block(lines_before, block, lines + (not block.endswith(b"\n")))
            lines_before += lines
        if not chunk:
            return


def _balanced_cut(data: bytes, cut: int, quote: bytes) -> int:
    """The last line start at or before ``cut`` where the quotes before it balance."""
    open_quotes = data.count(quote, 0, cut) % 2
    while open_quotes and cut > 0:
        start = data.rfind(b"\n", 0, cut - 1) + 1
        open_quotes ^= data.count(quote, start, cut) % 2
        cut = start
    return cut


def _check_line_lengths(block: bytes, lines_before: int, name: str, limit: int, half: int) -> None:
    """DataError naming the first line of ``block`` longer than ``limit`` bytes.

    A line longer than ``limit`` (>= 2 * ``half``) covers a whole aligned segment of ``half``
    bytes, so probing each segment for a line break finds it in a few dozen ``find`` calls
    per block; only a segment without one is looked at closely.
    """
    for start in range(0, len(block), half):
        if block.find(b"\n", start, start + half) >= 0:
            continue
        line_start = block.rfind(b"\n", 0, start) + 1
        line_end = block.find(b"\n", start)
        if (len(block) if line_end < 0 else line_end) - line_start > limit:
            raise too_long(name, lines_before + block.count(b"\n", 0, line_start) + 1, limit)

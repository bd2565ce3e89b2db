"""The public music data sets by name: download, verify, unpack, cache.

``fetch("hetrec2011-lastfm-2k")`` downloads a data set from where its makers publish it into
the cache folder (``$TASTEMAKER_DATA``, else the platform's cache folder), and every command
that takes data accepts the name (``load.resolve_source``). A download:

- resumes: the bytes received so far stay in ``downloads/NAME/FILE.part`` and the next try
  asks only for the rest (HTTP Range); a server that ignores Range sends everything again;
- is verified before it is unpacked: against a checksum pinned here where one is published
  or known (SHA-256, or the MD5 the host publishes), else on first use: the SHA-256 seen on the
  first download is recorded in the cache (``checksums.json``) and any later download of the
  same URL must match it. ``datasets list`` says which applies to each data set;
- is unpacked safely and atomically: every archive member must be a plain file or folder
  inside the target (no absolute paths, ``..``, links or devices), the folder is built beside
  its final place and renamed into it whole (``tastemaker.artifacts``), with a manifest.

The registry (``DATASETS``) is data: tests swap in entries pointing at a loopback server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit

from tastemaker.artifacts import MANIFEST, atomic_directory, atomic_write_bytes, write_manifest
from tastemaker.errors import DataError, UsageError

KIND = "dataset"
FORMAT_VERSION = 1
DATA_DIR = "data"  # the unpacked files, beside manifest.json
CHECKSUMS = "checksums.json"  # SHA-256 recorded on first use, per URL
CACHE_SETTING = "TASTEMAKER_DATA"
CHUNK = 1 << 20
LEVELS_ALL = ("artist", "release", "recording")


@dataclass(frozen=True)
class Download:
    """One file to download. ``checksum`` is ``"sha256:HEX"`` or ``"md5:HEX"`` (pinned), or
    None (verified on first use). ``path``: where a plain file goes in the data folder (for an
    archive, None: it is unpacked there)."""

    url: str
    checksum: str | None = None
    path: str | None = None

    @property
    def filename(self) -> str:
        return self.path or PurePosixPath(urlsplit(self.url).path).name


@dataclass(frozen=True)
class Dataset:
    """A public data set: where it comes from, how the readers take it, its licence."""

    name: str
    title: str
    homepage: str
    licence: str
    downloads: tuple[Download, ...]
    # Inside the data folder: what the readers are pointed at ("." for the folder itself).
    source: str = "."
    format: str | None = None  # reader; None: detected
    # Reader options for a delimited source (format "csv").
    columns: tuple[str, ...] | None = None
    delimiter: str = ","
    header: bool = True
    levels: tuple[str, ...] = LEVELS_ALL  # item levels the data can be reduced to
    size: str = ""  # the published download size, where one is published
    checksum_source: str = ""  # where the pinned checksums come from
    # Checksums of unpacked files, where the makers publish them ("md5:HEX").
    files: dict[str, str] = field(default_factory=dict)

    @property
    def verification(self) -> str:
        """How the download is verified: 'pinned sha256', 'pinned md5' or 'first use'."""
        kinds = {d.checksum.partition(":")[0] for d in self.downloads if d.checksum}
        if not kinds or any(d.checksum is None for d in self.downloads):
            return "first use"
        return "pinned " + "+".join(sorted(kinds))


_LB_COMMIT = "0a119846de26bcaa48503b6b65634d80e977c3b1"
_LB_RAW = f"https://raw.githubusercontent.com/metabrainz/listenbrainz-server/{_LB_COMMIT}"
_LB_FILES = {
    # path in the data folder (and under listenbrainz_spark/testdata upstream): its SHA-256
    "full-dump-1/0.parquet": "bccb575e2c3018c193a154cce90124590b3c0abd0cb5b4e6e6f4b1e001142749",
    "full-dump-1/1.parquet": "e27185c8e2a998d28401aac80cb13b4429a0006259465fad98530ec921f40867",
    "full-dump-1/2.parquet": "ac01f71162d59a3079cc21c0fbf28a8401f3e16d1395a7ac9cabbca0dea2e7c5",
    "full-dump-1/3.parquet": "aaec4e7da66b82642cca1a99b2ef86724214fb27a394c640d00c6845ae038ed9",
    "full-dump-1/4.parquet": "7cf94a465e9c85861ae8656c1ca5de113159fcc11c6d01fbe4defceb3f8f6031",
    "full-dump-1/5.parquet": "e8e10ef1f37780b35871831ca81c633921cf328543021db924341884a4c6d188",
    "full-dump-1/6.parquet": "f9e864e146b061d80c7ea18be3e68f4f6f29520ecb27821a04bda0282aa74ae5",
    "full-dump-1/COPYING": "60956abfddf65f738592c008f38b2e5db22112a38a599691d2e7a6602ba0eb92",
    "incremental-dump-2/0.parquet": (
        "a7979b934d167bb4c1670614139812c2ae741377d4df893d404b13702cf9c5c8"
    ),
    "incremental-dump-3/0.parquet": (
        "6ad8d8fd925950d66bfb62a1d53f9a7dd4af8812926a8f8b00705ce2ecd5e496"
    ),
    "incremental-dump-4/fresh_releases_listens.parquet": (
        "d89f084241c5219117828902bba7b6bdd51f46ef0ccea0e22cc80eee5913c749"
    ),
    "incremental-dump-5/rec_listens.parquet": (
        "e519816a3edf02b001d0673743f2f9caf1a1c0f6a18970210228bfc8e736a057"
    ),
}

_LASTFM_LICENCE = (
    "non-commercial use only (distributed with the permission of Last.fm; cite Last.fm and "
    "Celma 2010)"
)

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="hetrec2011-lastfm-2k",
            title="HetRec 2011 Last.fm 2K: 1,892 users' top-50 artists with play counts, tags",
            homepage="https://grouplens.org/datasets/hetrec-2011/",
            licence="non-commercial use only (Last.fm; cite the HetRec 2011 workshop)",
            downloads=(
                Download(
                    "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
                    "sha256:6738f48195667ff03caaab4d32ca9a3133d8cc026b7c3cdaf6ce1010e913c59c",
                ),
            ),
            format="hetrec",
            levels=("artist",),
            checksum_source="GroupLens publishes none; the SHA-256 three other projects pin",
        ),
        Dataset(
            name="lastfm-1k",
            title="Last.fm 1K: 19.2 M timestamped scrobbles of 992 users (to May 2009)",
            homepage="https://zenodo.org/records/6090214",
            licence=_LASTFM_LICENCE,
            downloads=(
                Download(
                    "https://zenodo.org/records/6090214/files/lastfm-dataset-1K.tar.gz?download=1",
                    "md5:a79a6808f54f73354789a9fb02cb1e41",
                ),
            ),
            source="lastfm-dataset-1K",
            format="lastfm-1k",
            size="~642 MB",
            checksum_source="archive MD5 as listed on the Zenodo record; file MD5s from the "
            "data set's README",
            files={
                "lastfm-dataset-1K/userid-timestamp-artid-artname-traid-traname.tsv": (
                    "md5:64747b21563e3d2aa95751e0ddc46b68"
                ),
                "lastfm-dataset-1K/userid-profile.tsv": "md5:c53608b6b445db201098c1489ea497df",
            },
        ),
        Dataset(
            name="lastfm-360k",
            title="Last.fm 360K: 17.5 M (user, artist, play count) rows of 359,347 users",
            homepage="https://zenodo.org/records/6090214",
            licence=_LASTFM_LICENCE,
            downloads=(
                Download(
                    "https://zenodo.org/records/6090214/files/lastfm-dataset-360K.tar.gz"
                    "?download=1",
                    "md5:635e6ed3fc873aa4ba33aba0ebce02b1",
                ),
            ),
            source="lastfm-dataset-360K/usersha1-artmbid-artname-plays.tsv",
            format="lastfm-360k",
            levels=("artist",),
            size="~543 MB",
            checksum_source="archive MD5 as listed on the Zenodo record; file MD5s from the "
            "data set's README",
            files={
                "lastfm-dataset-360K/usersha1-artmbid-artname-plays.tsv": (
                    "md5:be672526eb7c69495c27ad27803148f1"
                ),
                "lastfm-dataset-360K/usersha1-profile.tsv": "md5:51159d4edf6a92cb96f87768aa2be678",
            },
        ),
        Dataset(
            name="listenbrainz-sample",
            title="ListenBrainz sample dumps: a full and four incremental Parquet dumps "
            "(128 listens of 2 users; a schema sample, too small to train on)",
            homepage="https://github.com/metabrainz/listenbrainz-server/tree/"
            f"{_LB_COMMIT}/listenbrainz_spark/testdata",
            licence="test data of listenbrainz-server (a GPL-2.0 repository; the dumps' COPYING "
            "says 'Sample Dump License'); real ListenBrainz dumps are CC0",
            downloads=tuple(
                Download(f"{_LB_RAW}/listenbrainz_spark/testdata/{path}", f"sha256:{digest}", path)
                for path, digest in _LB_FILES.items()
            ),
            format="listenbrainz",
            size="~117 kB",
            checksum_source=f"SHA-256 of the files at listenbrainz-server commit {_LB_COMMIT[:12]}",
        ),
        Dataset(
            name="msd-taste-profile",
            title="Million Song Dataset, Echo Nest Taste Profile: 48 M (user, song, play count) "
            "triplets of 1 M users; songs only, no artists",
            homepage="http://millionsongdataset.com/tasteprofile/",
            licence="the Million Song Dataset's terms (research use); read them before any other",
            downloads=(
                Download(
                    "http://millionsongdataset.com/sites/default/files/challenge/"
                    "train_triplets.txt.zip"
                ),
            ),
            source="train_triplets.txt",
            format="csv",
            columns=("user", "item", "count"),
            delimiter="\t",
            header=False,
            levels=("recording",),
            checksum_source="none published: the SHA-256 of the first download is recorded",
        ),
    )
}


def dataset(name: str) -> Dataset:
    """The registered data set ``name``; UsageError naming the choices when unknown."""
    if name not in DATASETS:
        raise UsageError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def cache_dir() -> Path:
    """Where data sets are kept: ``$TASTEMAKER_DATA``, else the platform's cache folder."""
    setting = os.environ.get(CACHE_SETTING)
    if setting:
        return Path(setting).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tastemaker")) / "datasets"


def installed(name: str, root: Path | None = None) -> Path | None:
    """The unpacked data folder of ``name`` if it is in the cache, else None."""
    folder = (root or cache_dir()) / name
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(manifest, dict)
        or manifest.get("kind") != KIND
        or manifest.get("name") != name
        or manifest.get("format_version") != FORMAT_VERSION
        or not (folder / DATA_DIR).is_dir()
    ):
        return None
    return folder / DATA_DIR


def source_path(ds: Dataset, root: Path | None = None) -> Path | None:
    """What the readers take for ``ds`` (a file or folder in the cache), if it is there."""
    data = installed(ds.name, root)
    return None if data is None else data / ds.source


def fetch(
    name: str, force: bool = False, root: Path | None = None, console: Any | None = None
) -> Path:
    """Download, verify and unpack data set ``name`` into the cache (unless it is there, or
    ``force``); the path the readers take. Errors are one-line ``DataError``s."""
    ds = dataset(name)
    root = root or cache_dir()
    if not force and (path := source_path(ds, root)) is not None:
        return path
    console = console or _stderr()
    downloads = root / "downloads" / ds.name
    downloads.mkdir(parents=True, exist_ok=True)
    with _locked(downloads / ".lock"):
        if not force and (path := source_path(ds, root)) is not None:
            return path  # another process fetched it while this one waited
        console.print(f"{ds.name}: {ds.title}\nlicence: {ds.licence}")
        files = [(d, _download(d, downloads, console)) for d in ds.downloads]
        digests = [_verify(ds, d, file, root) for d, file in files]
        with atomic_directory(root / ds.name) as tmp:
            data = tmp / DATA_DIR
            data.mkdir()
            for d, file in files:
                if d.path is None:
                    unpack(file, data, console)
                else:
                    target = _inside(data, d.path, file)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(file, target)
            _check_unpacked(ds, data)
            write_manifest(
                tmp,
                KIND,
                FORMAT_VERSION,
                name=ds.name,
                source=ds.source,
                verification=ds.verification,
                downloads=[
                    {"url": d.url, "sha256": digest, "pinned": d.checksum}
                    for d, digest in zip(ds.downloads, digests, strict=True)
                ],
                fetched=datetime.now(UTC).isoformat(timespec="seconds"),
            )
        _record_first_use(ds, digests, root)
        for _, file in files:
            file.unlink(missing_ok=True)
    path = root / ds.name / DATA_DIR / ds.source
    console.print(f"{ds.name}: ready at {path}")
    return path


# -- download ----------------------------------------------------------------------------------


def _download(d: Download, folder: Path, console: Any) -> Path:
    """``d`` downloaded into ``folder`` (resuming a ``.part`` left by an earlier try); the
    complete file, not yet verified."""
    import httpx
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    # Plain files of one data set may share a name (0.parquet): flatten their whole path.
    done = folder / d.filename.replace("/", "__")
    if done.is_file():
        return done  # downloaded before; verified again below
    part = done.with_name(done.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    # Identity encoding: Range offsets count the bytes as stored, so none may be decoded.
    headers = {"Accept-Encoding": "identity"} | ({"Range": f"bytes={have}-"} if have else {})
    timeout = httpx.Timeout(30.0, read=120.0)
    try:
        with httpx.stream(
            "GET", d.url, headers=headers, follow_redirects=True, timeout=timeout
        ) as response:
            if response.status_code == 416 and have:
                part.replace(done)  # nothing left to send: the part was complete
                return done
            if response.status_code >= 400:
                raise DataError(
                    f"HTTP {response.status_code} {response.reason_phrase}; the server refused "
                    "the download, try again later",
                    path=d.url,
                )
            if response.status_code != 206:
                have = 0  # the server ignores Range: start again
            elif not response.headers.get("content-range", "").startswith(f"bytes {have}-"):
                raise DataError(
                    "the server resumed at another offset; delete the cache's "
                    f"partial file {part} and try again",
                    path=d.url,
                )
            length = response.headers.get("content-length")
            total = have + int(length) if length and length.isdigit() else None
            columns = (
                TextColumn(f"[bold]{PurePosixPath(d.filename).name}[/]"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            with (
                Progress(*columns, console=console, transient=True) as progress,
                open(part, "ab" if have else "wb") as out,
            ):
                task = progress.add_task("download", total=total, completed=have)
                for chunk in response.iter_raw():  # as it arrives: an interruption keeps it
                    out.write(chunk)
                    progress.advance(task, len(chunk))
    except httpx.HTTPError as exc:
        got = part.stat().st_size if part.is_file() else 0
        raise DataError(
            f"download interrupted after {got:,} bytes ({type(exc).__name__}: {exc}); run the "
            "same command again to resume",
            path=d.url,
        ) from None
    if total is not None and part.stat().st_size < total:
        raise DataError(
            f"download ended after {part.stat().st_size:,} of {total:,} bytes; run the same "
            "command again to resume",
            path=d.url,
        )
    part.replace(done)
    return done


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(ds: Dataset, d: Download, file: Path, root: Path) -> str:
    """Check ``file`` against the pinned checksum, or the one recorded on first use; its
    SHA-256. A mismatch deletes the file (the next try downloads it again)."""
    sha256 = file_digest(file, "sha256")
    expected: str | None
    if d.checksum is not None:
        algorithm, _, expected = d.checksum.partition(":")
        actual = sha256 if algorithm == "sha256" else file_digest(file, algorithm)
        what = f"the pinned {algorithm}"
    else:
        algorithm, expected, actual = "sha256", _first_use(root).get(d.url), sha256
        what = f"the sha256 recorded on its first download (in {root / CHECKSUMS})"
    if expected is not None and actual != expected.lower():
        file.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch: {what} is {expected}, the download's is {actual}; the download "
            "was corrupted or the file changed upstream (deleted; run again to retry)",
            path=d.url,
        )
    return sha256


def _first_use(root: Path) -> dict[str, str]:
    try:
        record = json.loads((root / CHECKSUMS).read_text())
    except (OSError, ValueError):
        return {}
    return (
        {k: v for k, v in record.items() if isinstance(v, str)} if isinstance(record, dict) else {}
    )


def _record_first_use(ds: Dataset, digests: list[str], root: Path) -> None:
    record = _first_use(root)
    new = {
        d.url: digest
        for d, digest in zip(ds.downloads, digests, strict=True)
        if d.checksum is None and d.url not in record
    }
    if new:
        text = json.dumps({**record, **new}, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(root / CHECKSUMS, text.encode())


# -- unpacking ---------------------------------------------------------------------------------


def _inside(folder: Path, name: str, archive: Path) -> Path:
    """``folder / name`` for an archive member name that stays inside ``folder``."""
    member = PurePosixPath(name.replace("\\", "/"))
    if member.is_absolute() or ".." in member.parts or ":" in name or not member.parts:
        raise DataError(f"unsafe member name {name!r} (outside the target); not unpacked", archive)
    return folder.joinpath(*member.parts)


def unpack(archive: Path, folder: Path, console: Any | None = None) -> None:
    """Unpack a zip or tar (any compression) into ``folder``: plain files and folders only,
    every name inside ``folder``; anything else stops with a DataError naming the member."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    console = console or _stderr()
    columns = (TextColumn(f"unpacking {archive.name}"), BarColumn(), DownloadColumn())
    with (
        Progress(*columns, console=console, transient=True) as progress,
        open(archive, "rb") as raw,
    ):
        task = progress.add_task("unpack", total=archive.stat().st_size)
        # duck-typed: _Counting has the read/seek/tell zipfile and tarfile call
        counted = cast(BinaryIO, _Counting(raw, lambda n: progress.update(task, completed=n)))
        if zipfile.is_zipfile(archive):
            _unzip(archive, counted, folder)
        else:
            _untar(archive, counted, folder)


def _unzip(archive: Path, raw: BinaryIO, folder: Path) -> None:
    try:
        with zipfile.ZipFile(raw) as zf:
            members = zf.infolist()
            _check_space(folder, sum(m.file_size for m in members), archive)
            for member in members:
                target = _inside(folder, member.filename, archive)
                kind = stat.S_IFMT(member.external_attr >> 16)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if kind not in (0, stat.S_IFREG):
                    raise DataError(f"member {member.filename!r} is not a plain file", archive)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "xb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as exc:
        raise DataError(f"cannot unpack ({exc})", archive) from None


def _untar(archive: Path, raw: BinaryIO, folder: Path) -> None:
    try:
        with tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                target = _inside(folder, member.name, archive)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():  # links, devices, fifos
                    raise DataError(f"member {member.name!r} is not a plain file", archive)
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None  # a plain file (checked above) has contents
                with src, open(target, "xb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"cannot unpack ({exc})", archive) from None


def _check_space(folder: Path, needed: int, archive: Path) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DataError(
            f"unpacking needs {needed / 1e9:.1f} GB and {folder} has {free / 1e9:.1f} GB free; "
            f"set {CACHE_SETTING} to a folder with room",
            archive,
        )


def _check_unpacked(ds: Dataset, data: Path) -> None:
    """The source path exists and unpacked files match the checksums their makers publish."""
    if not (data / ds.source).exists():
        held = ", ".join(sorted(p.name for p in data.iterdir())[:10]) or "nothing"
        raise DataError(f"the download does not hold {ds.source} (it holds: {held})", ds.name)
    for name, checksum in ds.files.items():
        algorithm, _, expected = checksum.partition(":")
        path = data / name
        if not path.is_file():
            raise DataError(f"the download does not hold {name}", ds.name)
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise DataError(
                f"checksum mismatch: {name} has {algorithm} {actual}, the data set's README "
                f"says {expected}",
                ds.name,
            )


class _Counting:
    """A read-only file wrapper that reports how many bytes were read (for progress)."""

    def __init__(self, raw: BinaryIO, report) -> None:
        self._raw, self._report = raw, report

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._report(self._raw.tell())
        return data

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One fetch of a data set at a time (another process waits), where the OS has flock."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _stderr():
    from rich.console import Console

    return Console(stderr=True)


def with_url(ds: Dataset, *downloads: Download) -> Dataset:
    """``ds`` fetched from other places (a mirror, or a test's server)."""
    return dataclasses.replace(ds, downloads=tuple(downloads))

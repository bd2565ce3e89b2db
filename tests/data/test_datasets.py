"""Data sets by name: the whole path from a (loopback) server to a command's input: download,
resume, verify, unpack safely and atomically, cache, and the names in every command."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from data_server import DataServer, hetrec_zip, serve_as, sha256, tar_gz
from tastemaker.data import datasets
from tastemaker.data.load import load_interactions
from tastemaker.data.readers import READERS
from tastemaker.errors import DataError, UsageError

NAME_2K = "hetrec2011-lastfm-2k"


@pytest.fixture(scope="module")
def server():
    with DataServer() as running:
        yield running


@pytest.fixture
def cache(tmp_path, monkeypatch, server):
    """An empty cache folder (TASTEMAKER_DATA) and a server with nothing on it."""
    server.served.__init__()
    monkeypatch.setenv(datasets.CACHE_SETTING, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def hetrec_bytes() -> bytes:
    return hetrec_zip()


def test_registry_entries_are_well_formed():
    for ds in datasets.DATASETS.values():
        assert re.fullmatch(r"[a-z0-9-]+", ds.name)
        assert ds.licence and ds.title and ds.homepage.startswith(("http://", "https://"))
        assert ds.format is None or ds.format in READERS
        assert set(ds.levels) <= set(datasets.LEVELS_ALL)
        for d in ds.downloads:
            assert d.url.startswith(("http://", "https://"))
            if d.checksum is not None:
                algorithm, _, digest = d.checksum.partition(":")
                assert len(digest) == hashlib.new(algorithm).digest_size * 2
                assert re.fullmatch(r"[0-9a-f]+", digest)
    assert datasets.DATASETS["msd-taste-profile"].verification == "first use"
    assert datasets.DATASETS[NAME_2K].verification == "pinned sha256"


def test_listenbrainz_sample_pins_what_the_test_data_holds(listenbrainz_path):
    """The checksums pinned for the ListenBrainz sample are those of the test data (copied
    byte for byte from the same upstream commit)."""
    ds = datasets.DATASETS["listenbrainz-sample"]
    for d in ds.downloads:
        local = listenbrainz_path / d.path
        assert d.checksum == "sha256:" + datasets.file_digest(local, "sha256"), d.path


def test_fetch_verifies_unpacks_and_caches(cache, server, monkeypatch, hetrec_bytes):
    serve_as(monkeypatch, server, NAME_2K, "/hetrec.zip", hetrec_bytes, sha256(hetrec_bytes))
    path = datasets.fetch(NAME_2K)
    assert path == cache / NAME_2K / "data"  # the source of HetRec is the folder itself
    assert (path / "user_artists.dat").is_file()
    manifest = json.loads((cache / NAME_2K / "manifest.json").read_text())
    assert manifest["kind"] == "dataset" and manifest["verification"] == "pinned sha256"
    assert manifest["downloads"][0]["sha256"] == sha256(hetrec_bytes).partition(":")[2]
    assert not list((cache / "downloads" / NAME_2K).glob("*.zip*"))  # archive removed
    asked = len(server.served.requests)
    assert datasets.fetch(NAME_2K) == path and len(server.served.requests) == asked  # cached
    inter = load_interactions(NAME_2K)
    assert inter.n_users == 120 and inter.nnz == 120 * 15


def test_truncated_download_resumes_with_a_range_request(cache, server, monkeypatch):
    data = hetrec_zip(seed=1)
    serve_as(monkeypatch, server, NAME_2K, "/cut.zip", data, sha256(data))
    server.served.cut["/cut.zip"] = len(data) // 3
    with pytest.raises(DataError, match="run the same command again to resume"):
        datasets.fetch(NAME_2K)
    part = next((cache / "downloads" / NAME_2K).glob("*.part"))
    assert part.stat().st_size == len(data) // 3
    assert not (cache / NAME_2K).exists()
    datasets.fetch(NAME_2K)
    assert server.served.requests[-1] == ("/cut.zip", f"bytes={len(data) // 3}-")
    assert load_interactions(NAME_2K).n_users == 120


def test_a_server_ignoring_range_sends_it_all_again(cache, server, monkeypatch):
    data = hetrec_zip(seed=2)
    serve_as(monkeypatch, server, NAME_2K, "/norange.zip", data, sha256(data))
    server.served.cut["/norange.zip"] = 1000
    server.served.honour_range = False
    with pytest.raises(DataError, match="resume"):
        datasets.fetch(NAME_2K)
    assert (datasets.fetch(NAME_2K) / "user_artists.dat").is_file()


def test_checksum_mismatch_leaves_nothing(cache, server, monkeypatch, hetrec_bytes):
    serve_as(monkeypatch, server, NAME_2K, "/bad.zip", hetrec_bytes, sha256(b"something else"))
    with pytest.raises(DataError, match="checksum mismatch: the pinned sha256 is") as error:
        datasets.fetch(NAME_2K)
    assert "/bad.zip" in str(error.value) and "\n" not in str(error.value)
    assert not (cache / NAME_2K).exists()
    assert [p.name for p in (cache / "downloads" / NAME_2K).iterdir()] == [".lock"]


def test_server_error_is_one_line(cache, server, monkeypatch, hetrec_bytes):
    serve_as(monkeypatch, server, NAME_2K, "/down.zip", hetrec_bytes, sha256(hetrec_bytes))
    server.served.fail["/down.zip"] = 503
    with pytest.raises(DataError, match=r"down.zip: HTTP 503 .*try again later"):
        datasets.fetch(NAME_2K)
    assert not (cache / NAME_2K).exists()


def test_first_use_checksum_is_recorded_then_enforced(cache, server, monkeypatch, hetrec_bytes):
    serve_as(monkeypatch, server, NAME_2K, "/tofu.zip", hetrec_bytes, None)
    datasets.fetch(NAME_2K)
    record = json.loads((cache / "checksums.json").read_text())
    assert record == {server.url("/tofu.zip"): sha256(hetrec_bytes).partition(":")[2]}
    server.served.files["/tofu.zip"] = hetrec_zip(seed=3)  # upstream changed
    with pytest.raises(DataError, match="recorded on its first download"):
        datasets.fetch(NAME_2K, force=True)
    assert (cache / NAME_2K / "data" / "user_artists.dat").is_file()  # the old copy stays


def test_tar_archive_with_md5_and_published_file_checksums(cache, server, monkeypatch):
    """Last.fm 1K's way: a tar.gz pinned by MD5, and MD5s of the unpacked files."""
    tsv = b"user_000001\t2009-05-04T23:08:57Z\t\tDeep Dish\t\tFuck Me Im Famous\n" * 3
    tsv += b"user_000002\t2009-05-04T13:54:10Z\t\tAphex Twin\t\tWindowlicker\n"
    profile = b"#id\tgender\tage\tcountry\tregistered\nuser_000001\tm\t\tJapan\tAug 13, 2006\n"
    archive = tar_gz(
        {
            "lastfm-dataset-1K/userid-timestamp-artid-artname-traid-traname.tsv": tsv,
            "lastfm-dataset-1K/userid-profile.tsv": profile,
        }
    )
    md5 = "md5:" + hashlib.md5(archive).hexdigest()
    serve_as(monkeypatch, server, "lastfm-1k", "/1k.tar.gz", archive, md5)
    real = datasets.DATASETS["lastfm-1k"]
    files = {
        "lastfm-dataset-1K/userid-timestamp-artid-artname-traid-traname.tsv": "md5:"
        + hashlib.md5(tsv).hexdigest(),
        "lastfm-dataset-1K/userid-profile.tsv": "md5:" + hashlib.md5(profile).hexdigest(),
    }
    monkeypatch.setitem(datasets.DATASETS, "lastfm-1k", dataclasses.replace(real, files=files))
    inter = load_interactions("lastfm-1k", level="recording")
    assert inter.n_users == 2 and inter.user_items.sum() == 4
    # A published file checksum that does not match stops before anything is cached.
    files = {**files, "lastfm-dataset-1K/userid-profile.tsv": "md5:" + "0" * 32}
    monkeypatch.setitem(datasets.DATASETS, "lastfm-1k", dataclasses.replace(real, files=files))
    with pytest.raises(DataError, match="userid-profile.tsv has md5"):
        datasets.fetch("lastfm-1k", force=True)


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buffer.getvalue()


def _symlink_zip() -> bytes:
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777) << 16  # a symbolic link to /etc/passwd
    return _zip([(info, b"/etc/passwd")])


def _tar_with(member: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(member, io.BytesIO(b"x") if member.isfile() else None)
    return buffer.getvalue()


def _tar_link(kind: bytes, name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _tar_file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


@pytest.mark.parametrize(
    "archive, problem",
    [
        (_zip([("../evil.txt", b"x")]), "unsafe member name"),
        (_zip([("/tmp/evil.txt", b"x")]), "unsafe member name"),
        (_symlink_zip(), "not a plain file"),
        (_tar_with(_tar_file("../evil.txt")), "unsafe member name"),
        (_tar_with(_tar_link(tarfile.SYMTYPE, "link", "/etc/passwd")), "not a plain file"),
        (_tar_with(_tar_link(tarfile.LNKTYPE, "hard", "/etc/passwd")), "not a plain file"),
        (b"not an archive at all", "cannot unpack"),
    ],
    ids=[
        "zip-dotdot",
        "zip-absolute",
        "zip-symlink",
        "tar-dotdot",
        "tar-symlink",
        "tar-hardlink",
        "garbage",
    ],
)
def test_unsafe_or_broken_archives_are_refused(tmp_path, archive, problem):
    path = tmp_path / "archive.bin"
    path.write_bytes(archive)
    target = tmp_path / "deep" / "out"
    target.mkdir(parents=True)
    with pytest.raises(DataError, match=problem):
        datasets.unpack(path, target)
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (target / "link").is_symlink()


def test_level_and_csv_options_come_from_the_registry(cache, server, monkeypatch):
    """The Taste Profile holds songs only: read at recording level with its own columns."""
    triplets = b"".join(
        f"u{u}\tSO{(u * 7 + s) % 40:04d}\t{s + 1}\n".encode() for u in range(30) for s in range(6)
    )
    data = _zip([("train_triplets.txt", triplets)])
    serve_as(monkeypatch, server, "msd-taste-profile", "/msd.zip", data, None)
    with pytest.raises(UsageError, match="at level recording only"):
        load_interactions("msd-taste-profile")
    inter = load_interactions("msd-taste-profile", level="recording")
    assert inter.n_users == 30 and inter.nnz == 180 and inter.user_items.sum() == 30 * 21


def test_a_near_miss_name_gets_a_suggestion(cache):
    with pytest.raises(DataError, match="did you mean 'lastfm-1k'"):
        load_interactions("lastfm-1K")
    with pytest.raises(UsageError, match="unknown data set 'nope'; choose one of"):
        datasets.fetch("nope")


def test_commands_take_data_set_names(cache, server, monkeypatch, capsys, hetrec_bytes, tmp_path):
    serve_as(monkeypatch, server, NAME_2K, "/cli.zip", hetrec_bytes, sha256(hetrec_bytes))
    code, out, err = run_cli(capsys, "datasets", "fetch", NAME_2K)
    assert code == 0, err
    assert out.strip().endswith(f"{NAME_2K}/data") and "non-commercial" in err
    code, out, err = run_cli(capsys, "evaluate", NAME_2K, "--models", "popularity")
    assert code == 0, err
    assert "popularity" in out and "ndcg" in out
    code, out, err = run_cli(capsys, "ingest", NAME_2K, "--out", tmp_path / "ingested")
    assert code == 0, err
    assert (tmp_path / "ingested" / "manifest.json").is_file()
    code, out, err = run_cli(capsys, "datasets", "list")
    assert code == 0
    row = next(line for line in out.splitlines() if NAME_2K in line)
    assert "yes" in row and "pinned" in row
    code, out, err = run_cli(capsys, "datasets", "fetch", "nope")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown data set" in err


def test_tests_take_real_data_from_the_fixtures():
    """conftest's paths are for its fixtures: a test file that used them directly would error
    instead of skipping (or failing, under TASTEMAKER_REQUIRE_TEST_DATA) without the data."""
    offenders = []
    tests = REPO / "tests"
    for path in sorted(tests.rglob("*.py")):
        if path in (tests / "conftest.py", Path(__file__).resolve()):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b(HETREC|LISTENBRAINZ|LASTFM_1K|TEST_DATA|SHARED_DATA)\b", line) and (
                "conftest" in line or re.search(r"\b(HETREC|LISTENBRAINZ|LASTFM_1K)\s*/", line)
            ):
                offenders.append(f"{path.relative_to(tests)}:{number}: {line.strip()}")
    assert not offenders, "use the conftest fixtures (hetrec_path, ...): " + "; ".join(offenders)
    assert Path(REPO / "tests" / "conftest.py").read_text().count("def real_data") == 1

"""Bad input: one line naming the file (and row / row group), exit code 2, no traceback,
and nothing left behind; ``--on-bad-rows skip`` skips and counts instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO
from tastemaker.cli import main

LASTFM_TSV = "userid-timestamp-artid-artname-traid-traname.tsv"  # in the Last.fm 1K sample


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["tastemaker", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr()
    return stop.value.code, captured.out, captured.err


def fails(monkeypatch, capsys, tmp_path: Path, source: Path | str, *extra: str) -> str:
    """Ingest ``source`` expecting failure; return the one error line."""
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out" / "ingested"
    code, _, err = run(monkeypatch, capsys, "ingest", str(source), "--out", str(out), *extra)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    # Neither the output nor a temporary directory (nor the parent it would create) is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return lines[0]


def lines_file(path: Path, text: bytes) -> Path:
    path.write_bytes(text)
    return path


def test_missing_file(monkeypatch, capsys, tmp_path):
    line = fails(monkeypatch, capsys, tmp_path, tmp_path / "nowhere.csv")
    assert "nowhere.csv: no such file or directory" in line


def test_unreadable_file_a_directory_where_a_file_is_expected(monkeypatch, capsys, tmp_path):
    folder = tmp_path / "plays.csv"
    folder.mkdir()
    line = fails(monkeypatch, capsys, tmp_path, folder, "--format", "csv")
    assert "plays.csv: is a directory, expected a file" in line
    hetrec = tmp_path / "hetrec"
    (hetrec / "user_artists.dat").mkdir(parents=True)
    line = fails(monkeypatch, capsys, tmp_path, hetrec, "--format", "hetrec")
    assert "user_artists.dat: is a directory" in line


def test_unknown_format(monkeypatch, capsys, tmp_path):
    plays = lines_file(tmp_path / "p.csv", b"user,artist\nu,a\n")
    assert "unknown format 'nope'" in fails(
        monkeypatch, capsys, tmp_path, plays, "--format", "nope"
    )
    blob = lines_file(tmp_path / "data.bin", b"\x00\x01\x02")
    assert "data.bin: cannot tell the format" in fails(monkeypatch, capsys, tmp_path, blob)


def test_missing_columns(monkeypatch, capsys, tmp_path, listenbrainz_path):
    frame = pl.read_parquet(listenbrainz_path / "full-dump-1" / "0.parquet").drop("recording_msid")
    frame.write_parquet(tmp_path / "dump.parquet")
    line = fails(monkeypatch, capsys, tmp_path, tmp_path / "dump.parquet")
    assert "dump.parquet: missing columns ['recording_msid']" in line
    plays = lines_file(tmp_path / "p.csv", b"user,count\nu,3\n")
    line = fails(monkeypatch, capsys, tmp_path, plays, "--columns", "user,count")
    assert "p.csv: missing columns for artist level: item or artist" in line


def test_wrong_encoding(monkeypatch, capsys, tmp_path, lastfm_1k_path):
    good = (lastfm_1k_path / LASTFM_TSV).read_bytes().splitlines(keepends=True)[:20]
    latin1 = "user_000009\t2009-05-04T23:08:57Z\t\tBj\u00f6rk\t\tJ\u00f3ga\n".encode("latin-1")
    path = lines_file(tmp_path / FILENAME_1K, b"".join(good[:12] + [latin1] + good[12:]))
    line = fails(monkeypatch, capsys, tmp_path, path)
    assert f"{FILENAME_1K}: row 13: not valid UTF-8 (byte 0xf6 at column 37)" in line
    csv = lines_file(tmp_path / "p.csv", b"user,artist\nu1,A\nu2,Caf\xe9\n")
    assert "p.csv: row 3: not valid UTF-8" in fails(monkeypatch, capsys, tmp_path, csv)


FILENAME_1K = "userid-timestamp-artid-artname-traid-traname.tsv"


def test_malformed_lines(monkeypatch, capsys, tmp_path, lastfm_1k_path):
    jsonl = lines_file(
        tmp_path / "listens.jsonl",
        b'{"user_id": 1, "timestamp": 1600000000, "track_metadata": {"artist_name": "A"}}\n'
        b"\n"
        b'{"user_id": 1, "timestamp": 1600000100, "track_metadata": {"artist_n\n',
    )
    line = fails(monkeypatch, capsys, tmp_path, jsonl)
    assert "listens.jsonl: row 3: not valid JSON" in line
    good = (lastfm_1k_path / LASTFM_TSV).read_bytes().splitlines(keepends=True)[:5]
    extra = b"user_000009\t2009-05-04T23:08:57Z\t\tArtist\t\tTrack\tsurplus\n"
    tsv = lines_file(tmp_path / FILENAME_1K, b"".join(good + [extra]))
    line = fails(monkeypatch, capsys, tmp_path, tsv)
    assert f"{FILENAME_1K}: row 6: more than 6 fields (tab-separated)" in line
    short = lines_file(tmp_path / "short.csv", b"user,artist,count\nu1,A,1\nu2\n")
    assert "short.csv: row 3: missing artist name" in fails(monkeypatch, capsys, tmp_path, short)


@pytest.mark.parametrize(
    ("value", "problem"),
    [("nan", "play count 'nan' is NaN"), ("-3", "is not positive"), ("lots", "not a number")],
)
def test_bad_counts(monkeypatch, capsys, tmp_path, value, problem):
    plays = lines_file(tmp_path / "p.csv", f"user,artist,count\nu1,A,2\nu2,B,{value}\n".encode())
    line = fails(monkeypatch, capsys, tmp_path, plays)
    assert "p.csv: row 3: " in line and problem in line


def test_negative_count_in_lastfm_360k(monkeypatch, capsys, tmp_path):
    user = "00000c289a1829a808ac09c00daf10bc3c4e223b"
    path = lines_file(
        tmp_path / "usersha1-artmbid-artname-plays.tsv",
        f"{user}\t\tA\t10\n{user}\t\tB\t-4\n".encode(),
    )
    assert "row 2: play count '-4' is not positive" in fails(monkeypatch, capsys, tmp_path, path)


@pytest.mark.parametrize("stamp", ["1999-12-31T23:00:00Z", "4102444800", "2100-01-01"])
def test_timestamps_out_of_range_in_text(monkeypatch, capsys, tmp_path, stamp):
    plays = lines_file(
        tmp_path / "p.csv", f"user,artist,timestamp\nu1,A,2020-01-01\nu2,B,{stamp}\n".encode()
    )
    line = fails(monkeypatch, capsys, tmp_path, plays)
    assert "p.csv: row 3: timestamp" in line and "out of range (2000-01-01 .." in line


def test_timestamp_out_of_range_in_parquet_names_row_and_group(
    monkeypatch, capsys, tmp_path, listenbrainz_path
):
    frame = pl.read_parquet(listenbrainz_path / "full-dump-1" / "3.parquet")
    old = pl.Series([0] * 1, dtype=pl.Int64).cast(pl.Datetime("ns"))
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 6)
        .then(pl.lit(old[0]))
        .otherwise(pl.col("listened_at"))
        .alias("listened_at")
    )
    frame.write_parquet(tmp_path / "3.parquet", row_group_size=5)
    line = fails(monkeypatch, capsys, tmp_path, tmp_path / "3.parquet")
    assert "3.parquet: row 7: listened_at 1970-01-01 00:00:00 is out of range" in line
    assert "(row group 1)" in line


def test_truncated_parquet(monkeypatch, capsys, tmp_path, listenbrainz_path):
    data = (listenbrainz_path / "full-dump-1" / "3.parquet").read_bytes()
    dump = tmp_path / "dump" / "full-dump-1"
    dump.mkdir(parents=True)
    (dump / "0.parquet").write_bytes(data[: len(data) // 2])
    line = fails(monkeypatch, capsys, tmp_path, tmp_path / "dump")
    assert "0.parquet: not a readable Parquet file, truncated or corrupted" in line


def test_truncated_parquet_through_the_installed_command(tmp_path, listenbrainz_path):
    """The real process: exit 2, one line on stderr, no traceback, no output."""
    data = (listenbrainz_path / "full-dump-1" / "3.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[:-100])
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "tastemaker"), "ingest", str(tmp_path / "cut.parquet")]
        + ["--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "cut.parquet: not a readable Parquet file" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.parquet"]


def test_skip_bad_rows_and_report_how_many(monkeypatch, capsys, tmp_path):
    plays = lines_file(
        tmp_path / "p.csv",
        b"user,artist,count,timestamp\n"
        b"u1,A,2,2020-01-01\n"
        b"u2,B,nan,2020-01-01\n"  # NaN count
        b"u2,B,-1,2020-01-01\n"  # negative count
        b"u3,C,1,1970-01-01\n"  # out of range
        b"u3,C,1,2020-01-01,extra\n"  # too many fields
        b"u4,Caf\xe9,1,2020-01-01\n"  # not UTF-8
        b",D,1,2020-01-01\n"  # no user
        b"u5,E,3,2020-02-01\n",
    )
    out = tmp_path / "out"
    code, stdout, _ = run(
        monkeypatch, capsys, "ingest", str(plays), "--out", str(out), "--on-bad-rows", "skip"
    )
    assert code in (0, None)
    assert "rows skipped" in stdout and " 6 " in stdout.split("rows skipped")[1].splitlines()[0]
    from tastemaker.data.interactions import Interactions

    inter = Interactions.load(out)
    assert inter.users.to_list() == ["u1", "u5"] and inter.user_items.sum() == 5
    assert inter.source["skipped_rows"] == 6
    json_lines = lines_file(
        tmp_path / "l.jsonl",
        b'{"user_id": 1, "timestamp": 1600000000, "track_metadata": {"artist_name": "A"}}\n'
        b"{broken\n"
        b'{"user_id": 2, "timestamp": 99, "track_metadata": {"artist_name": "A"}}\n'
        b'{"user_id": 2, "timestamp": 1600000000, "track_metadata": {}}\n',
    )
    code, stdout, _ = run(
        monkeypatch, capsys, "ingest", str(json_lines), "--out", str(out), "--on-bad-rows", "skip"
    )
    assert code in (0, None)
    assert Interactions.load(out).source["skipped_rows"] == 3


def test_skip_in_parquet_counts_rows(tmp_path, listenbrainz_path):
    from tastemaker.data.load import load_interactions
    from tastemaker.data.readers import ReaderOptions

    frame = pl.read_parquet(listenbrainz_path / "full-dump-1" / "3.parquet")
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) < 4)
        .then(pl.lit(0).cast(pl.Datetime("ns")))
        .otherwise(pl.col("listened_at"))
        .alias("listened_at")
    )
    frame.write_parquet(tmp_path / "x.parquet")
    inter = load_interactions(tmp_path / "x.parquet", options=ReaderOptions(on_bad_rows="skip"))
    assert inter.user_items.sum() == 14 and inter.source["skipped_rows"] == 4

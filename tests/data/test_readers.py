"""Readers on the real files beside the checkout, and on small fixtures written here."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import zstandard
from typer.testing import CliRunner

from conftest import run_cli
from tastemaker.cli import app
from tastemaker.data.load import load_interactions
from tastemaker.data.names import fold
from tastemaker.data.readers import ReaderOptions, detect_format, read_source, read_sources
from tastemaker.data.schema import LISTENS_SCHEMA, MBID_PATTERN
from tastemaker.errors import DataError

API_EXPORT = "listenbrainz_listens.jsonl"  # in the ListenBrainz test data


def collect(path, **kwargs) -> pl.DataFrame:
    return read_source(path, **kwargs).listens.collect()


def raw_listenbrainz(root: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted(root.glob("*/*.parquet"))])


# -- ListenBrainz Parquet -------------------------------------------------------------------


def test_listenbrainz_testdata_gives_128_listens_of_2_users(listenbrainz_path):
    source = read_source(listenbrainz_path)
    assert source.format == "listenbrainz"
    frame = source.listens.collect()
    assert frame.schema == pl.Schema(LISTENS_SCHEMA)
    assert frame.height == 128
    assert frame.group_by("user").len().sort("user").rows() == [("1", 64), ("2", 64)]
    assert source.stats["duplicates_dropped"] == 0
    # ns timestamps on disk, ms in the canonical table; the documented range.
    assert str(frame["listened_at"].min())[:10] == "2020-01-04"
    assert str(frame["listened_at"].max())[:10] == "2021-08-09"
    # artist_id / artist_mbid: the first MBID of the credit, null for the 22 unmapped rows.
    assert frame["artist_id"].null_count() == 22
    assert frame["artist_id"].equals(frame["artist_mbid"])


def test_listenbrainz_single_dump_and_single_file(listenbrainz_path):
    assert read_source(listenbrainz_path / "full-dump-1").listens.collect().height == 68
    one = listenbrainz_path / "incremental-dump-5" / "rec_listens.parquet"
    assert detect_format(one) == "listenbrainz"
    assert read_source(one).listens.collect().height == 30


def write_dumps(root: Path, full: pl.DataFrame, incremental: list[pl.DataFrame]) -> Path:
    (root / "full-dump-1").mkdir(parents=True)
    half = full.height // 2
    full[:half].write_parquet(root / "full-dump-1" / "0.parquet")
    full[half:].write_parquet(root / "full-dump-1" / "1.parquet")
    for n, frame in enumerate(incremental, start=2):
        (root / f"incremental-dump-{n}").mkdir()
        frame.write_parquet(root / f"incremental-dump-{n}" / "0.parquet")
    return root


def test_listens_repeated_across_full_and_incremental_dumps_count_once(tmp_path, listenbrainz_path):
    raw = raw_listenbrainz(listenbrainz_path)
    full, later = raw[:100], raw[100:]
    # Incremental 2 repeats 15 listens of the full dump; incremental 3 repeats 5 of those
    # again and 3 of its own neighbour, plus listens of its own.
    inc2 = pl.concat([full[40:55], later[:10]])
    inc3 = pl.concat([full[40:45], later[:3], later[10:]])
    root = write_dumps(tmp_path / "dumps", full, [inc2, inc3])
    source = read_source(root)
    frame = source.listens.collect()
    assert frame.height == 128
    assert source.stats["duplicates_dropped"] == 15 + 5 + 3
    keys = frame.select("user", "listened_at", "recording_msid")
    assert keys.unique().height == frame.height
    # The same dumps given as separate paths are merged the same way.
    separate = read_sources(sorted(p for p in root.iterdir()))
    assert separate.listens.collect().height == 128
    assert separate.stats["duplicates_dropped"] == 23
    inter = load_interactions(root)
    assert inter.user_items.sum() == 128 and inter.n_users == 2


def test_listenbrainz_millisecond_and_nanosecond_timestamps_agree(tmp_path, listenbrainz_path):
    raw = raw_listenbrainz(listenbrainz_path)
    ms = raw.with_columns(pl.col("listened_at").cast(pl.Datetime("ms")))
    ms.write_parquet(tmp_path / "ms.parquet")
    raw.write_parquet(tmp_path / "ns.parquet")
    a = collect(tmp_path / "ms.parquet")
    b = collect(tmp_path / "ns.parquet")
    assert a.equals(b)


# -- ListenBrainz JSON -----------------------------------------------------------------------


def dump_line(row: dict) -> str:
    mapping = None
    if row["recording_mbid"] is not None:
        mapping = {
            "recording_mbid": row["recording_mbid"],
            "release_mbid": row["release_mbid"],
            "artist_mbids": row["artist_credit_mbids"],
            "recording_name": row["recording_name"],
        }
    return json.dumps(
        {
            "user_id": row["user_id"],
            "user_name": f"user{row['user_id']}",
            "timestamp": int(row["listened_at"].timestamp()),
            "recording_msid": row["recording_msid"],
            "track_metadata": {
                "artist_name": row["artist_name"],
                "track_name": row["recording_name"],
                "release_name": row["release_name"],
                "additional_info": {"duration_ms": 200_000, "artist_mbids": "not a list"},
                "mbid_mapping": mapping,
            },
        }
    )


def write_json_dump(root: Path, frame: pl.DataFrame) -> Path:
    """The JSON dump layout listens/YYYY/M.listens from parquet rows."""
    by_month: dict[tuple[int, int], list[str]] = {}
    for row in frame.iter_rows(named=True):
        when = row["listened_at"]
        by_month.setdefault((when.year, when.month), []).append(dump_line(row))
    for (year, month), lines in by_month.items():
        folder = root / "listens" / str(year)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{month}.listens").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def json_dump(tmp_path_factory, listenbrainz_path) -> Path:
    root = tmp_path_factory.mktemp("json") / "listenbrainz-listens-dump-1-full"
    return write_json_dump(root, raw_listenbrainz(listenbrainz_path))


def test_json_dump_layout_matches_the_parquet_dump(json_dump, listenbrainz_path):
    assert detect_format(json_dump) == "listenbrainz-json"
    from_parquet = load_interactions(listenbrainz_path, level="recording")
    from_json = load_interactions(json_dump, level="recording")
    assert from_json.users == from_parquet.users
    assert from_json.items == from_parquet.items
    assert abs(from_json.user_items - from_parquet.user_items).sum() == 0
    assert np.array_equal(from_json.last_listened, from_parquet.last_listened)


def test_json_dump_read_straight_from_tar_zst(json_dump, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(json_dump, arcname=json_dump.name)
        extra = tmp_path / "COPYING"
        extra.write_text("licence")
        archive.add(extra, arcname=f"{json_dump.name}/COPYING")
    path = tmp_path / "listenbrainz-listens-dump-1-full.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(buffer.getvalue()))
    assert detect_format(path) == "listenbrainz-json"
    frame = collect(path)
    assert frame.height == 128
    assert frame.group_by("user").len().sort("user").rows() == [("1", 64), ("2", 64)]


def test_json_api_export_shape(listenbrainz_path):
    source = read_source(listenbrainz_path / API_EXPORT)
    assert source.format == "listenbrainz-json"
    frame = source.listens.collect()
    assert frame.height == 2
    first = frame.row(0, named=True)
    assert first["artist_name"] == "The Stranglers" and first["recording_name"] == "Golden Brown"
    assert first["recording_mbid"] == "c7d0bf6e-b2aa-4ffa-bded-2448415b39b0"
    assert first["artist_mbid"] == "a96d82a0-cdca-40bf-b4c8-3d7ec178d85b"
    assert first["recording_msid"] == "03dcc65c-0e01-4f25-aa1f-0f469d10e2ad"
    assert int(first["listened_at"].timestamp()) == 1748964167
    # The export holds one user's listens and names nobody: the file name stands in.
    assert set(frame["user"]) == {"listenbrainz_listens"}


def test_json_export_user_from_user_json(tmp_path, listenbrainz_path):
    folder = tmp_path / "export"
    (folder / "listens" / "2025").mkdir(parents=True)
    shutil.copy(listenbrainz_path / API_EXPORT, folder / "listens" / "2025" / "6.jsonl")
    (folder / "user.json").write_text(json.dumps({"user_id": 7, "username": "rob"}))
    assert set(collect(folder)["user"]) == {"rob"}
    # --user names the person of an export that names nobody.
    assert set(collect(folder, options=ReaderOptions(user="robin"))["user"]) == {"robin"}


def test_json_dumps_merged_with_repeats_counted_once(json_dump, tmp_path, listenbrainz_path):
    raw = raw_listenbrainz(listenbrainz_path)
    incremental = write_json_dump(tmp_path / "incremental", pl.concat([raw[:10], raw[:3]]))
    source = read_sources([json_dump, incremental])
    assert source.listens.collect().height == 128
    assert source.stats["duplicates_dropped"] == 13


# -- Last.fm ----------------------------------------------------------------------------------


def test_lastfm_1k_sample(lastfm_1k_path):
    assert detect_format(lastfm_1k_path) == "lastfm-1k"
    frame = collect(lastfm_1k_path)
    assert frame.height == 5000
    assert frame.group_by("user").len().sort("user").rows() == [
        ("user_000001", 4997),
        ("user_000002", 3),
    ]
    assert str(frame["listened_at"].min())[:10] == "2008-12-08"
    assert str(frame["listened_at"].max())[:19] == "2009-05-04 23:08:57"
    assert frame["artist_mbid"].null_count() == 353
    assert frame["recording_mbid"].null_count() == 1396
    assert frame["artist_name"].n_unique() == 235
    assert frame["recording_name"].n_unique() == 1185
    # Names with quote characters survive (no quoting in this format).
    assert 'Johnny "Hammond" Smith' in frame["artist_name"].to_list()
    inter = load_interactions(lastfm_1k_path, level="recording")
    assert inter.n_users == 2 and inter.user_items.sum() == 5000
    assert inter.events is not None and len(inter.events) == 5000


def test_lastfm_360k(tmp_path):
    path = tmp_path / "usersha1-artmbid-artname-plays.tsv"
    user = "00000c289a1829a808ac09c00daf10bc3c4e223b"
    other = "00001411dc427966b17297bf4d69e7e193135d89"
    mbid = "3bd73256-3905-4f3a-97e2-8b341527f805"
    path.write_text(
        f"{user}\t{mbid}\tbetty blowtorch\t2137\n"
        f'{user}\t\tdie "Ärzte"\t1099\n'
        f"{other}\t{mbid}\tBetty Blowtorch\t12\n"
    )
    assert detect_format(tmp_path) == "lastfm-360k"
    inter = load_interactions(tmp_path)
    assert (inter.n_users, inter.n_items, inter.nnz) == (2, 2, 3)
    assert inter.user_items[inter.users.index(user), inter.items.index(mbid)] == 2137
    assert inter.user_items[inter.users.index(user), inter.items.index("die arzte")] == 1099
    assert inter.last_listened is None and inter.events is None


# -- delimited ----------------------------------------------------------------------------------

ROWS = [
    ("u1", "Radiohead", "OK Computer", "Airbag", 3, "2020-01-01T10:00:00Z"),
    ("u1", "Boards of Canada", "Geogaddi", "Music Is Math", 2, "2020-01-02T10:00:00Z"),
    ("u2", " radiohead ", "ok computer", "Airbag", 1, "2021-05-01T12:00:00+02:00"),
    ("u2", "Björk", "Homogenic", "Jóga", 4, "2019-03-01T00:00:00Z"),
]
COLUMNS = "user,artist,release,recording,count,timestamp"


def write_delimited(path: Path, separator: str, header: bool, rows=ROWS, columns=COLUMNS) -> Path:
    lines = [separator.join(columns.split(","))] if header else []
    lines += [separator.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("separator", [",", "\t", ";", "|"])
@pytest.mark.parametrize("header", [True, False])
def test_csv_each_delimiter_with_and_without_header(tmp_path, separator, header):
    path = write_delimited(tmp_path / "plays.csv", separator, header)
    options = ReaderOptions(columns=COLUMNS.split(","), delimiter=separator, header=header)
    inter = load_interactions(path, format="csv", options=options)
    assert inter.users.to_list() == ["u1", "u2"]
    assert inter.items.to_list() == ["bjork", "boards of canada", "radiohead"]
    dense = inter.user_items.toarray()
    assert dense.tolist() == [[0, 2, 3], [4, 0, 1]]
    assert inter.last_listened.tolist() == [1577959200, 1577872800, 1551398400, 1619863200]


def test_csv_roles_from_header_and_ignored_columns(tmp_path):
    path = tmp_path / "plays.csv"
    path.write_text("user,artist,count\nu1,A,2\nu2,B,1\n")
    assert load_interactions(path).user_items.sum() == 3
    other = tmp_path / "other.csv"
    other.write_text("who,junk,what\nu1,x,A\nu2,y,B\n")
    with pytest.raises(DataError, match="--columns"):
        load_interactions(other)
    options = ReaderOptions(columns=["user", "ignore", "artist"])
    inter = load_interactions(other, options=options)
    assert inter.items.to_list() == ["a", "b"]


@pytest.mark.parametrize(
    "stamp", ["1577872800", "1577872800000", "2020-01-01 10:00:00", "2020-01-01T11:00:00+01:00"]
)
def test_csv_timestamps_epoch_seconds_ms_or_iso(tmp_path, stamp):
    path = tmp_path / "t.csv"
    path.write_text(f"user,artist,timestamp\nu1,A,{stamp}\n")
    assert load_interactions(path).events.timestamp.tolist() == [1577872800]


def test_csv_item_column_is_the_level_id(tmp_path):
    rows = [
        ("u1", "id-1", "A", 2),
        ("u2", "id-1", "a different spelling", 1),
        ("u2", "id-2", "B", 5),
    ]
    path = write_delimited(tmp_path / "i.csv", ",", True, rows, "user,item,artist,count")
    for level in ("artist", "release", "recording"):
        options = ReaderOptions(columns=["user", "item", "artist", "count"])
        inter = load_interactions(path, level=level, options=options)
        assert inter.items.to_list() == ["id-1", "id-2"], level
        assert inter.user_items.toarray().tolist() == [[2, 0], [1, 5]]
    # Without names, the id names the item.
    bare = write_delimited(tmp_path / "b.csv", ",", False, [("u1", "x")], "user,item")
    inter = load_interactions(bare, options=ReaderOptions(columns=["user", "item"], header=False))
    assert inter.item_metadata["name"].to_list() == ["x"]


# -- levels -----------------------------------------------------------------------------------


def test_levels_key_by_mbid_else_normalized_names(listenbrainz_path):
    # Name keys are folded names (docs/identity.md); a name-only row whose names belong to one
    # MBID in the data joins that MBID's item.
    raw = raw_listenbrainz(listenbrainz_path)
    first_mbid = raw["artist_credit_mbids"].list.first()
    for level, mbid, name in (
        ("artist", None, None),
        ("release", "release_mbid", "release_name"),
        ("recording", "recording_mbid", "recording_name"),
    ):
        inter = load_interactions(listenbrainz_path, level=level)
        ids = first_mbid if mbid is None else raw[mbid]
        unmapped = raw.filter(ids.is_null())
        forms = {
            fold(artist) + ("" if name is None else f" | {fold(title)}")
            for artist, title in zip(
                unmapped["artist_name"], unmapped[name or "artist_name"], strict=True
            )
        }
        name_keyed = [k for k in inter.items.to_list() if not re.fullmatch(MBID_PATTERN, k)]
        identity = inter.source["identity"]
        assert name_keyed and set(name_keyed) <= forms, level
        assert set(inter.items.to_list()) - set(name_keyed) == set(ids.drop_nulls()), level
        assert len(name_keyed) == identity["unmatched_names"] + identity["ambiguous_names"]
        assert identity["unmatched_listens"] + identity["reconciled_listens"] == unmapped.height
        assert inter.user_items.sum() == 128
        if level != "artist":
            row = inter.item_metadata.filter(pl.col("item") == name_keyed[0]).row(0, named=True)
            assert fold(row["name"].replace(" – ", " | ")) == fold(name_keyed[0])


def test_detection_of_each_layout(
    tmp_path, hetrec_path, json_dump, listenbrainz_path, lastfm_1k_path
):
    assert detect_format(hetrec_path) == "hetrec"
    assert detect_format(listenbrainz_path) == "listenbrainz"
    assert detect_format(lastfm_1k_path / "userid-timestamp-artid-artname-traid-traname.tsv") == (
        "lastfm-1k"
    )
    assert detect_format(write_delimited(tmp_path / "x.tsv", "\t", True)) == "csv"
    unknown = tmp_path / "notes.bin"
    unknown.write_bytes(b"\x00\x01")
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format(unknown)


def test_hetrec_counts_and_tags(hetrec):
    assert (hetrec.n_users, hetrec.n_items, hetrec.nnz) == (1892, 17632, 92834)
    assert hetrec.user_items.max() == 352_698
    assert hetrec.tags is not None and len(hetrec.tags.item) > 180_000
    assert hetrec.item_metadata.filter(pl.col("item") == "289")["name"].item() == "Britney Spears"


# -- tab-separated text and quotes (issue 14) --------------------------------------------------

VOICE = 'Moves Like Jagger - Studio Recording From "The Voice" Performance'


def test_tab_separated_files_read_double_quotes_as_data(tmp_path):
    path = tmp_path / "plays.tsv"
    path.write_text(
        "user\tartist\trecording\tcount\n"
        f"u1\tMaroon 5\t{VOICE}\t2\n"
        'u2\tThe Mix\t12" Remix\t1\n'
        'u3\t"Quoted"\tTitle\t1\n'
    )
    options = ReaderOptions(delimiter="\t")
    frame = collect(path, options=options)
    assert frame["recording_name"].to_list() == [VOICE, '12" Remix', "Title"]
    assert frame["artist_name"].to_list() == ["Maroon 5", "The Mix", '"Quoted"']
    # --quote '"' asks for CSV quoting in a tab-separated file: a field may then hold a tab.
    quoted = tmp_path / "quoted.tsv"
    quoted.write_text('user\tartist\tcount\nu1\t"A\tB"\t1\nu2\t"C ""D"""\t2\n')
    frame = collect(quoted, options=ReaderOptions(delimiter="\t", quote='"'))
    assert frame["artist_name"].to_list() == ["A B", 'C "D"']


def test_a_stray_quote_names_its_line_and_cause(tmp_path):
    path = tmp_path / "plays.csv"
    path.write_text('user,artist,count\nu1,A,1\nu2,12" Mix,1\nu3,B,2\n')
    with pytest.raises(
        DataError, match=r"plays.csv: row 3: a field quoted with \" opens .*--quote none"
    ):
        collect(path)
    assert collect(path, options=ReaderOptions(quote="none"))["artist_name"].to_list() == [
        "A",
        '12" Mix',
        "B",
    ]
    skipped = read_source(path, options=ReaderOptions(on_bad_rows="skip"))
    assert skipped.listens.collect()["user"].to_list() == ["u1", "u3"]
    assert skipped.stats["skipped_rows"] == 1
    # A quoted field holding a line break spans two lines; the rows after it keep their lines.
    multi = tmp_path / "multi.csv"
    multi.write_text('user,artist,count\nu1,"Line\nbreak",1\nu2,B,lots\n')
    with pytest.raises(DataError, match=r"multi.csv: row 4: play count 'lots' is not a number"):
        collect(multi)


def test_quote_option_on_the_command_line(capsys, tmp_path):
    path = tmp_path / "plays.csv"
    path.write_text('user,artist\nu1,12" Mix\nu2,B\n')
    code, _, err = run_cli(capsys, "ingest", path, "--out", tmp_path / "a")
    assert code == 2 and "plays.csv: row 2: a field quoted with" in err and "--quote none" in err
    code, _, err = run_cli(capsys, "ingest", path, "--out", tmp_path / "b", "--quote", "none")
    assert code == 0, err
    code, _, err = run_cli(capsys, "ingest", path, "--out", tmp_path / "c", "--quote", "x")
    assert code == 2 and "--quote must be one of" in err


# -- Spotify (issue 14) ------------------------------------------------------------------------


def extended_play(ts: str, ms: int, artist=None, title=None, album=None, episode=None, **extra):
    return {
        "ts": ts,
        "platform": "android",
        "ms_played": ms,
        "conn_country": "DE",
        "master_metadata_track_name": title,
        "master_metadata_album_artist_name": artist,
        "master_metadata_album_album_name": album,
        "spotify_track_uri": f"spotify:track:{abs(hash(title)) % 10**6}" if title else None,
        "episode_name": episode,
        "episode_show_name": "Show" if episode else None,
        "spotify_episode_uri": "spotify:episode:x" if episode else None,
        "reason_start": "trackdone",
        "reason_end": "trackdone",
        "shuffle": False,
        "skipped": None,
        **extra,
    }


EXTENDED_PLAYS = [
    extended_play("2021-03-02T18:17:05Z", 200_000, "Radiohead", "Airbag", "OK Computer"),
    extended_play("2021-03-02T18:20:05Z", 5_000, "Radiohead", "Paranoid Android", "OK Computer"),
    extended_play("2021-03-02T19:20:05Z", 1_500_000, episode="Episode 1"),
    extended_play("2021-03-03T10:00:00Z", 100_000, "Bj\u0000örk", "Jóga", "Homogenic"),
    extended_play("2021-03-04T10:00:00Z", 40_000),  # names nothing (content since removed)
]


def spotify_zip(path: Path, plays=EXTENDED_PLAYS, extra: dict | None = None) -> Path:
    folder = "Spotify Extended Streaming History"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            f"{folder}/Streaming_History_Audio_2021_0.json", json.dumps(plays, indent=2)
        )
        # A second export's file repeating the first play: counted once.
        archive.writestr(f"{folder}/endsong_0.json", json.dumps(plays[:1]))
        archive.writestr(f"{folder}/Streaming_History_Video_2021.json", "[]")
        archive.writestr(f"{folder}/ReadMeFirst_ExtendedStreamingHistory.pdf", "%PDF")
        for name, text in (extra or {}).items():
            archive.writestr(name, text)
    return path


def test_spotify_extended_history_zip(tmp_path):
    path = spotify_zip(tmp_path / "alice.zip")
    assert detect_format(path) == "spotify"
    source = read_source(path)
    frame = source.listens.collect()
    assert frame.select("artist_name", "release_name", "recording_name").rows() == [
        ("Radiohead", "OK Computer", "Airbag"),
        ("Björk", "Homogenic", "Jóga"),  # the NUL removed
    ]
    # listened_at is when the play started: the end time less the time played.
    assert str(frame["listened_at"][0]) == "2021-03-02 18:13:45+00:00"
    assert set(frame["user"]) == {"alice"}  # the zip's name: these plays name no account
    stats = source.stats
    assert (stats["skipped_podcasts"], stats["skipped_short_plays"]) == (1, 1)
    assert (stats["skipped_unnamed"], stats["duplicates_dropped"]) == (1, 1)
    assert stats["skipped_rows"] == 0
    assert stats["left_out"] == [
        f"{path}: Spotify Extended Streaming History/Streaming_History_Video_2021.json "
        "(video history: not listens)"
    ]
    inter = load_interactions(path, level="release")
    assert inter.items.to_list() == ["bjork | homogenic", "radiohead | ok computer"]


def test_spotify_user_threshold_and_override(tmp_path):
    named = [dict(play, username="alice99") for play in EXTENDED_PLAYS]
    path = spotify_zip(tmp_path / "my_spotify_data.zip", named)
    assert set(collect(path)["user"]) == {"alice99"}
    assert set(collect(path, options=ReaderOptions(user="me"))["user"]) == {"me"}
    everything = read_source(path, options=ReaderOptions(min_play_seconds=0))
    assert everything.listens.collect().height == 3
    assert everything.stats["skipped_short_plays"] == 0


def test_spotify_account_data_folder(tmp_path):
    folder = tmp_path / "MyData"
    folder.mkdir()
    (folder / "StreamingHistory_music_0.json").write_text(
        json.dumps(
            [
                {
                    "endTime": "2019-02-01 08:24",
                    "artistName": "Bonobo",
                    "trackName": "Kerala",
                    "msPlayed": 242333,
                },
                {
                    "endTime": "2019-02-01 08:25",
                    "artistName": "Bonobo",
                    "trackName": "Kerala",
                    "msPlayed": 2000,
                },
                {
                    "endTime": "2019-02-01 09:00",
                    "artistName": "Bonobo",
                    "trackName": "Cirrus",
                    "msPlayed": -4,
                },
            ]
        )
    )
    (folder / "StreamingHistory_podcast_0.json").write_text(
        json.dumps(
            [
                {
                    "endTime": "2019-02-01 09:24",
                    "podcastName": "P",
                    "episodeName": "E",
                    "msPlayed": 2_000_000,
                }
            ]
        )
    )
    (folder / "Userdata.json").write_text(json.dumps({"username": "bob42", "country": "DE"}))
    assert detect_format(folder) == "spotify"
    with pytest.raises(
        DataError, match=r"StreamingHistory_music_0.json: row 3: play length -4 ms is negative"
    ):
        collect(folder)
    source = read_source(folder, options=ReaderOptions(on_bad_rows="skip"))
    frame = source.listens.collect()
    assert frame.select("user", "artist_name", "recording_name").rows() == [
        ("bob42", "Bonobo", "Kerala")
    ]
    assert frame["release_name"].null_count() == 1  # this format has no album
    assert str(frame["listened_at"][0]) == "2019-02-01 08:19:57.667000+00:00"
    assert (source.stats["skipped_podcasts"], source.stats["skipped_short_plays"]) == (1, 1)
    assert source.stats["skipped_rows"] == 1
    # Beside the extended history, the account data (the same plays) is left out.
    spotify_zip(folder / "extended.zip")
    shutil.unpack_archive(folder / "extended.zip", folder)
    (folder / "extended.zip").unlink()
    both = read_source(folder)
    assert set(both.listens.collect()["recording_name"]) == {"Airbag", "Jóga"}
    assert any("StreamingHistory_music_0.json (account data" in e for e in both.stats["left_out"])


def test_spotify_ingest_summary_reports_what_was_skipped(capsys, tmp_path):
    path = spotify_zip(tmp_path / "alice.zip")
    result = CliRunner().invoke(
        app, ["ingest", str(path), "--out", str(tmp_path / "o"), "--min-play-seconds", "3"]
    )
    assert result.exit_code == 0, result.output
    for line in ("podcast episodes skipped", "plays naming no track skipped", "duplicates dropped"):
        assert line in result.stdout
    assert "plays under 3 s" not in result.stdout  # nothing was that short
    assert "History/Streaming_History_Video_2021.json (video history: not listens)" in " ".join(
        result.stdout.split()
    )
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["source"]["skipped"]["podcast episodes"] == 1
    assert manifest["source"]["listens"] == 3
    code, _, err = run_cli(capsys, "ingest", path, path, "--out", tmp_path / "p", "--user", "x")
    assert code == 2 and "--user names the person of one export" in err


# -- folders: every listens file read, or said to be left out (issue 14) -----------------------


def test_listenbrainz_folder_says_which_files_it_left_out(tmp_path, listenbrainz_path):
    """The JSON lines beside the Parquet dumps are a user export naming no user: its listens
    could not be matched against the dumps', so the folder reads the dumps and says so."""
    api_lines = listenbrainz_path / API_EXPORT
    source = read_source(listenbrainz_path)
    entry = f"{api_lines} (listenbrainz-json; give it as a source of its own to read it too)"
    assert source.stats["left_out"] == [entry]
    result = CliRunner().invoke(
        app, ["ingest", str(listenbrainz_path), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert f"left out: {entry}" in " ".join(result.stdout.split())
    both = read_sources([listenbrainz_path, api_lines])
    assert both.listens.collect().height == 130 and "left_out" in both.stats

"""The ingest pipeline: one atomic directory, the listens table in the manifest, the CLI,
and the integer-coded reduction checked against a plain polars group-by."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tastemaker.artifacts import read_manifest
from tastemaker.cli import app
from tastemaker.data.filters import Filters
from tastemaker.data.ingest import LISTENS_FILE, ingest, summary
from tastemaker.data.interactions import Interactions
from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.names import fold
from tastemaker.data.schema import LISTENS_SCHEMA, conform
from tastemaker.errors import DataError


def test_ingest_writes_listens_and_matrix_in_one_manifest(tmp_path, listenbrainz_path):
    out = tmp_path / "lb"
    inter = ingest([listenbrainz_path], out, listens=True)
    manifest = read_manifest(out, kind="interactions")  # verifies every checksum
    assert LISTENS_FILE in manifest["files"]
    assert {"matrix.npz", "users.parquet", "items.parquet", "events.npz"} <= set(manifest["files"])
    listens = pl.read_parquet(out / LISTENS_FILE)
    assert listens.schema == pl.Schema(LISTENS_SCHEMA)
    assert listens.height == 128
    loaded = Interactions.load(out)
    assert loaded.fingerprint == inter.fingerprint
    assert len(loaded.events) == 128
    assert summary(loaded)["listens"] == 128 and summary(loaded)["users"] == 2
    # Nothing but the output directory is left beside it.
    assert [p.name for p in tmp_path.iterdir()] == ["lb"]


def test_ingest_is_deterministic_and_replaces_atomically(tmp_path, listenbrainz_path):
    out = tmp_path / "lb"
    first = ingest([listenbrainz_path], out, level="recording")
    items_before = (out / "items.parquet").read_bytes()
    second = ingest([listenbrainz_path], out, level="recording")
    assert first.fingerprint == second.fingerprint
    assert (out / "items.parquet").read_bytes() == items_before
    np.testing.assert_array_equal(first.events.timestamp, second.events.timestamp)
    assert [p.name for p in tmp_path.iterdir()] == ["lb"]


def test_the_listens_table_is_written_by_default_only_for_text_sources(tmp_path, listenbrainz_path):
    # A ListenBrainz Parquet dump is re-readable as it is: no second copy by default.
    parquet = ingest([listenbrainz_path], tmp_path / "parquet")
    assert not (tmp_path / "parquet" / LISTENS_FILE).exists()
    assert parquet.source["listens_table"] is None
    text = ingest([listenbrainz_path / "listenbrainz_listens.jsonl"], tmp_path / "json")
    assert LISTENS_FILE in read_manifest(tmp_path / "json")["files"]
    assert pl.read_parquet(tmp_path / "json" / LISTENS_FILE).height == text.source["listens"]
    # Without the table an ingested directory is no source for another level: one clear error.
    with pytest.raises(DataError, match="ingested directory without listens.parquet"):
        ingest([tmp_path / "parquet"], tmp_path / "again", level="recording")
    assert not (tmp_path / "again").exists()


def test_ingest_several_sources_and_options(tmp_path, listenbrainz_path):
    dumps = sorted(p for p in listenbrainz_path.iterdir() if p.is_dir())
    inter = ingest(dumps, tmp_path / "a", listens=False, keep_events=False)
    assert not (tmp_path / "a" / LISTENS_FILE).exists()
    assert inter.events is None and inter.user_items.sum() == 128
    assert inter.source["paths"] == [str(p) for p in dumps]
    # Duplicates across separately given sources: the full dump twice over counts once.
    again = ingest([dumps[0], dumps[0]], tmp_path / "b")
    assert again.source["listens"] == 68 and again.source["duplicates_dropped"] == 68


def test_an_ingested_directory_is_a_source_for_another_level(tmp_path, listenbrainz_path):
    ingest([listenbrainz_path], tmp_path / "artist", listens=True)
    direct = ingest([listenbrainz_path], tmp_path / "direct", level="recording")
    again = ingest([tmp_path / "artist"], tmp_path / "recording", level="recording")
    assert again.fingerprint == direct.fingerprint
    assert again.source["format"] == "listens"


def test_ingest_applies_filters_and_reports_them(tmp_path, listenbrainz_path):
    filters = Filters(
        start=datetime(2021, 1, 1, tzinfo=UTC),
        end=datetime(2021, 7, 15, tzinfo=UTC),
        min_user_items=3,
    )
    inter = ingest([listenbrainz_path], tmp_path / "f", filters=filters, listens=True)
    listens = pl.read_parquet(tmp_path / "f" / LISTENS_FILE)
    in_range = listens.filter(
        (pl.col("listened_at") >= filters.start) & (pl.col("listened_at") < filters.end)
    )
    steps = {step["name"]: step for step in inter.source["filtered"]}
    assert steps["date range"]["listens"] == 128 - in_range.height
    assert (np.diff(inter.user_items.indptr) >= 3).all()
    assert steps["k-core"]["users"] >= 0 and inter.nnz > 0
    assert inter.events.timestamp.min() >= int(filters.start.timestamp())
    assert inter.events.timestamp.max() < int(filters.end.timestamp())
    assert listens.height == 128  # the listens table keeps every listen


def test_cli_ingest_prints_a_summary(tmp_path, listenbrainz_path):
    result = CliRunner().invoke(
        app, ["ingest", str(listenbrainz_path), "--out", str(tmp_path / "o"), "--level", "release"]
    )
    assert result.exit_code == 0, result.output
    for label in ("users", "items", "interactions", "listens", "duplicates dropped"):
        assert label in result.stdout
    assert "128" in result.stdout
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["level"] == "release"


# -- the reduction against a plain polars implementation -------------------------------------


def random_listens(seed: int, n: int = 3000) -> pl.DataFrame:
    """Listens with every kind of key: ids, MBIDs, name-only rows, unkeyable rows, counts."""
    rng = np.random.default_rng(seed)
    artist = rng.integers(0, 40, n)
    title = rng.integers(0, 30, n)
    spelled = np.array(["Artist", " artist", "ARTIST  "])[rng.integers(0, 3, n)]
    return pl.DataFrame(
        {
            "user": [f"u{u}" for u in rng.integers(0, 60, n)],
            "listened_at": pl.Series(rng.integers(1_500_000_000_000, 1_600_000_000_000, n)).cast(
                pl.Datetime("ms", "UTC")
            ),
            "count": rng.integers(1, 5, n),
            "artist_id": [f"id{a}" if a % 3 == 0 else None for a in artist],
            "artist_mbid": [f"mb{a}" if a % 3 == 1 else None for a in artist],
            "artist_name": [
                None if (a == 7 and t == 0) else f"{s} {a}"
                for a, t, s in zip(artist, title, spelled, strict=True)
            ],
            "release_name": [None if t == 5 else f"Rel {t % 7}" for t in title],
            "release_mbid": [f"rel{t}" if t % 4 == 0 else None for t in title],
            "recording_name": [f"Song {t}" for t in title],
            "recording_mbid": [
                f"rec{a}-{t}" if (a + t) % 5 == 0 else None
                for a, t in zip(artist, title, strict=True)
            ],
        }
    )


def reference_keys(frame: pl.DataFrame, level: str) -> list[str | None]:
    """The identity rule row by row, for names without credits (docs/identity.md): the id;
    else the id the folded names belong to alone; else the folded names."""
    title = {"artist": None, "release": "release_name", "recording": "recording_name"}[level]
    ids = {
        "artist": [a or m for a, m in zip(frame["artist_id"], frame["artist_mbid"], strict=True)],
        "release": frame["release_mbid"].to_list(),
        "recording": frame["recording_mbid"].to_list(),
    }[level]
    artists = frame["artist_name"].to_list()
    titles = frame[title].to_list() if title else [""] * frame.height

    def form(artist, name):
        if artist is None or name is None or not fold(artist) or (title and not fold(name)):
            return None
        return fold(artist) + (f" | {fold(name)}" if title else "")

    forms = [form(a, t) for a, t in zip(artists, titles, strict=True)]
    owners: dict[str, set] = {}
    for key, name in zip(ids, forms, strict=True):
        if key is not None and name is not None:
            owners.setdefault(name, set()).add(key)
    return [
        key
        if key is not None
        else (next(iter(owners[name])) if len(owners.get(name, ())) == 1 else name)
        for key, name in zip(ids, forms, strict=True)
    ]


def reference(frame: pl.DataFrame, level: str) -> tuple[list, list, dict]:
    keyed = frame.with_columns(item=pl.Series(reference_keys(frame, level), dtype=pl.Utf8))
    keyed = keyed.filter(pl.col("item").is_not_null())
    pairs = keyed.group_by("user", "item").agg(
        pl.col("count").sum(), pl.col("listened_at").max().dt.epoch("s").alias("last")
    )
    cells = {(r["user"], r["item"]): (r["count"], r["last"]) for r in pairs.iter_rows(named=True)}
    return sorted(pairs["user"].unique()), sorted(pairs["item"].unique()), cells


@pytest.mark.parametrize("level", ["artist", "release", "recording"])
def test_reduction_matches_a_plain_group_by(level):
    frame = random_listens(seed=len(level))
    inter = interactions_from_listens(conform(frame.lazy()), level=level)
    users, items, cells = reference(frame, level)
    assert inter.users.to_list() == users
    assert inter.items.to_list() == items
    coo = inter.user_items.tocoo()
    got = {}
    last = dict(zip(zip(coo.row, coo.col, strict=True), inter.last_listened, strict=True))
    for r, c, v in zip(coo.row, coo.col, coo.data, strict=True):
        got[(users[r], items[c])] = (int(v), int(last[(r, c)]))
    assert got == cells
    # Events: one per keyed row, sorted by user then time, summing to the counts' rows.
    ev = inter.events
    assert len(ev) == sum(1 for _ in range(frame.height)) - inter.source.get("rows_without_item", 0)
    order = np.lexsort((ev.item, ev.timestamp, ev.user))
    np.testing.assert_array_equal(order, np.arange(len(ev)))
    rows = np.bincount(
        ev.user.astype(np.int64) * inter.n_items + ev.item, minlength=inter.n_users * inter.n_items
    )
    assert (rows.reshape(inter.n_users, inter.n_items) > 0).sum() == inter.nnz


@pytest.mark.parametrize("chunk", [7, 1 << 22])
def test_single_listens_take_the_packed_sort_and_match_a_group_by(monkeypatch, chunk):
    # One play per row with known times: pairs and events come from in-place sorts of packed
    # keys, processed in chunks (a tiny chunk puts pair runs across chunk boundaries).
    import tastemaker.data.listens as listens_module
    import tastemaker.data.pairs as pairs_module

    # The encoding and the reduction both work in chunks of CHUNK_ROWS.
    monkeypatch.setattr(listens_module, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(pairs_module, "CHUNK_ROWS", chunk)
    frame = random_listens(n=1500, seed=3).with_columns(count=pl.lit(1, pl.Int64))
    table = listens_module.encode_listens(conform(frame.lazy()), "artist")
    assert table.count is None and table.time is not None
    expected = sorted(
        zip(
            table.users.ids.gather(table.user),
            table.item.tolist(),
            table.time.tolist(),
            strict=True,
        )
    )
    inter = listens_module.interactions_from_table(table, consume=True)
    users, items, cells = reference(frame, "artist")
    coo = inter.user_items.tocoo()
    last = dict(zip(zip(coo.row, coo.col, strict=True), inter.last_listened, strict=True))
    got = {
        (users[r], items[c]): (int(v), int(last[(r, c)]))
        for r, c, v in zip(*coo.nonzero(), coo.data, strict=True)
    }
    assert got == cells
    ev = inter.events
    np.testing.assert_array_equal(np.lexsort((ev.item, ev.timestamp, ev.user)), np.arange(len(ev)))
    events = sorted(
        zip(inter.users.ids.gather(ev.user), ev.item.tolist(), ev.timestamp.tolist(), strict=True)
    )
    assert events == expected

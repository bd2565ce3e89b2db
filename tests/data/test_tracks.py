"""Track data kept at ingest for playlists (``data/tracks.py``, ``data/top_tracks.py``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from tastemaker.data.ingest import ingest
from tastemaker.data.interactions import Interactions
from tastemaker.data.listens import interactions_from_listens, key_listens
from tastemaker.data.schema import conform
from tastemaker.data.synth import synthesize, synthetic_listens
from tastemaker.data.top_tracks import attach_tracks
from tastemaker.data.tracks import FAVOURITES_PER_USER, TRACKS_FILE, TRACKS_PER_ITEM
from tastemaker.errors import ArtifactError
from tastemaker.models import load_model
from tastemaker.models.popularity import Popularity

SMALL = {"users": 60, "artists": 80, "bots": 0}


@pytest.fixture(scope="module")
def listens() -> pl.DataFrame:
    return synthetic_listens(listens=12_000, seed=4, **SMALL)


@pytest.fixture(scope="module")
def data(listens) -> Interactions:
    return attach_tracks(listens.lazy(), interactions_from_listens(listens.lazy()))


def test_top_recordings_per_artist_are_the_real_play_counts(listens, data):
    tracks = data.tracks
    assert tracks is not None and tracks.has_recordings
    per_item = tracks.tracks.group_by("item").len()["len"]
    assert per_item.max() <= TRACKS_PER_ITEM
    expected = (
        key_listens(listens.lazy())
        .rename({"artist_key": "a", "recording_key": "r"})
        .collect()
        .group_by("a", "r")
        .agg(pl.col("count").sum().alias("plays"))
    )
    for item in (0, 7, data.n_items - 1):
        artist = data.items.id(item)
        truth = expected.filter(pl.col("a") == artist).sort(
            ["plays", "r"], descending=[True, False]
        )
        got = tracks.item_tracks(item)
        assert got["recording"].to_list() == truth["r"].head(TRACKS_PER_ITEM).to_list()
        assert got["plays"].to_list() == truth["plays"].head(TRACKS_PER_ITEM).to_list()
        assert (got["item"] == item).all()
    with_mbid = tracks.tracks.filter(pl.col("recording_mbid").is_not_null())
    assert with_mbid.height and (with_mbid["recording"] == with_mbid["recording_mbid"]).all()


def test_favourites_are_each_users_most_played_recordings(listens, data):
    favourites = data.tracks.favourites
    assert favourites.group_by("user").len()["len"].max() <= 2 * FAVOURITES_PER_USER
    user = 5
    source_id = data.users.id(user)
    truth = (
        key_listens(listens.lazy(), ("recording",))
        .filter(pl.col("user") == source_id)
        .rename({"recording_key": "r"})
        .collect()
        .group_by("r")
        .agg(pl.col("count").sum().alias("plays"), pl.col("listened_at").max().alias("last"))
        .sort(["plays", "r"], descending=[True, False])
    )
    got = data.tracks.user_favourites(user)
    top = truth.head(FAVOURITES_PER_USER)["r"].to_list()
    assert got["recording"].head(FAVOURITES_PER_USER).to_list() == top
    assert got["last_heard"][0] == truth["last"][0].timestamp()
    latest = truth.sort(["last", "r"], descending=[True, False]).head(FAVOURITES_PER_USER)
    assert set(latest["r"].to_list()) <= set(got["recording"].to_list())


def test_size_follows_the_catalogue_not_the_listens():
    """Four times the listens over the same users and artists: the tables stay within
    their bounds (items x 20, users x 100)."""
    sizes = []
    for n in (6_000, 24_000):
        frame = synthetic_listens(listens=n, seed=1, **SMALL).lazy()
        data = attach_tracks(frame, interactions_from_listens(frame))
        assert data.tracks.tracks.height <= data.n_items * TRACKS_PER_ITEM
        assert data.tracks.favourites.height <= data.n_users * 2 * FAVOURITES_PER_USER
        sizes.append((n, data.tracks.tracks.height + data.tracks.favourites.height))
    (small_listens, small), (big_listens, big) = sizes
    assert big / small < big_listens / small_listens / 2


def test_ingest_writes_the_tables_and_models_carry_them(tmp_path):
    dump = synthesize(tmp_path / "dump", listens=8_000, seed=2, chunk_rows=2_000, **SMALL)
    out = ingest([dump], tmp_path / "ingested")
    manifest = json.loads((tmp_path / "ingested" / "manifest.json").read_text())
    assert TRACKS_FILE in manifest["files"] and "favourite_tracks.parquet" in manifest["files"]
    loaded = Interactions.load(tmp_path / "ingested")
    assert loaded.tracks is not None
    assert loaded.tracks.tracks.equals(out.tracks.tracks)
    model_dir = Popularity().fit(loaded).save(tmp_path / "model")
    assert (model_dir / "data" / TRACKS_FILE).is_file()
    carried = load_model(model_dir).interactions_.tracks
    assert carried is not None and carried.favourites.equals(loaded.tracks.favourites)


def test_recording_level_items_are_their_own_tracks(listens):
    frame = listens.lazy()
    data = attach_tracks(frame, interactions_from_listens(frame, level="recording"))
    assert data.tracks.tracks["item"].to_list() == list(range(data.n_items))
    assert data.tracks.tracks["title"].null_count() == 0


def test_a_damaged_track_table_is_refused(tmp_path, data):
    directory = data.save(tmp_path / "d")
    bad = data.tracks.tracks.with_columns(pl.lit(data.n_items + 5, pl.Int32).alias("item"))
    bad.write_parquet(directory / TRACKS_FILE)
    with pytest.raises(ArtifactError, match="outside"):
        Interactions.load(directory, verify=False)


def test_hetrec_has_no_recordings_and_says_so(hetrec):
    assert hetrec.tracks is not None
    assert not hetrec.tracks.has_recordings
    # Its tags become each artist's top tags, for radio terms.
    tags = hetrec.tracks.item_tags
    assert tags.height > 1000
    assert tags.group_by("item").len()["len"].max() <= 10
    assert np.all(np.diff(tags.filter(pl.col("item") == tags["item"][0])["weight"]) <= 0)


def _listen(user: str, day: int, artist: str, title: str, **ids: str) -> dict:
    return {
        "user": user,
        "listened_at": datetime(2024, 1, day, tzinfo=UTC),
        "artist_name": artist,
        "recording_name": title,
        **ids,
    }


def test_a_name_only_listen_counts_for_the_mbid_artist_and_recording():
    """Ingest joins a name-only listen to the one MBID with its names: so do the track
    tables (plays per track, and the listener's favourites)."""
    artist, song = "a0000000-0000-4000-8000-000000000001", "b0000000-0000-4000-8000-000000000001"
    ids = {"artist_mbid": artist, "recording_mbid": song}
    rows = [_listen("mapped", d, "Björk", "Jóga", **ids) for d in range(1, 4)]
    rows += [_listen("unmapped", d, "BJORK", "joga") for d in (5, 6)]  # no MBID, other spelling
    rows += [_listen("unmapped", 7, "Sigur Rós", "Hoppípolla")]  # no MBID anywhere
    frame = conform(pl.DataFrame(rows).lazy())
    data = attach_tracks(frame, interactions_from_listens(frame))
    assert data.n_items == 2
    item = data.items.index(artist)
    tracks = data.tracks.item_tracks(item)
    assert tracks["recording"].to_list() == [song]
    assert tracks["plays"].to_list() == [5]  # 3 mapped + 2 name-only listens
    user = data.users.index("unmapped")
    favourites = data.tracks.user_favourites(user)
    by_recording = dict(zip(favourites["recording"], favourites["plays"], strict=True))
    assert by_recording[song] == 2
    assert favourites.filter(pl.col("recording") == song)["item"].to_list() == [item]
    # The name-keyed artist keys on its folded name, as the vocabulary does.
    other = data.items.index("sigur ros")
    assert other >= 0 and data.tracks.item_tracks(other)["plays"].to_list() == [1]
    assert set(favourites["recording"]) == {song, "sigur ros | hoppipolla"}


def test_track_keys_are_the_vocabularys_ids(listens, data):
    """Every recording key in the track tables is an item of the recording-level vocabulary
    of the same listens, and every artist-level item with named listens has tracks."""
    recordings = interactions_from_listens(listens.lazy(), level="recording")
    vocabulary = set(recordings.items.ids.to_list())
    for table in (data.tracks.tracks, data.tracks.favourites):
        assert set(table["recording"].to_list()) <= vocabulary
    assert data.tracks.tracks["item"].n_unique() == data.n_items
    # No listen is lost: each user's favourites cover their most played recording.
    plays = recordings.user_items.max(axis=1).toarray().ravel()
    top = data.tracks.favourites.group_by("user").agg(pl.col("plays").max())
    got = dict(zip(top["user"], top["plays"], strict=True))
    for user in range(0, data.n_users, 7):
        source = recordings.users.index(data.users.id(user))
        assert got[user] == plays[source]


def test_key_listens_keys_every_listen_as_ingest_does(listens):
    """Per listen and at every level at once, the key ``encode_listens`` gives it (the
    synthetic listens have name-only rows, credit and spelling variants)."""
    from tastemaker.data.listens import encode_listens

    frame = listens.lazy().with_row_index("row")
    keyed = key_listens(frame, ("artist", "release", "recording")).sort("row").collect()
    reconciled = 0
    for level in ("artist", "release", "recording"):
        table = encode_listens(frame, level)
        reconciled += table.identity["reconciled_listens"]
        got = keyed[f"{level}_key"]
        assert got.null_count() == table.rows_without_item
        assert got.drop_nulls().equals(table.items.ids.gather(table.item), check_names=False)
    assert reconciled > 0

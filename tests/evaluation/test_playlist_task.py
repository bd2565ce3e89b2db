"""The playlist task (``evaluation/playlist_task.py``) on a small synthetic history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tastemaker.data.synth import synthetic_listens
from tastemaker.evaluation.playlist_task import BUILDERS, Judge, playlist_task, split_listens
from tastemaker.playlists.constraints import Rules
from tastemaker.playlists.library import Library
from tastemaker.playlists.playlist import Playlist

PARAMS = {"factors": 8, "iterations": 6, "seed": 0}


@pytest.fixture(scope="module")
def listens() -> pl.DataFrame:
    return synthetic_listens(users=60, artists=120, listens=20_000, seed=9, bots=0)


@pytest.fixture(scope="module")
def result(listens):
    return playlist_task(listens.lazy(), "als", PARAMS, users=15, seed=0)


def test_every_mode_and_builder_is_measured_with_no_violations(result):
    assert result["users"] == 15
    assert set(result["results"]) == {
        f"{m}/{b}" for m in ("jams", "exploration", "mix") for b in BUILDERS
    }
    for key, row in result["results"].items():
        for metric in ("track_hit_rate", "artist_hit_rate", "discovery_hit_rate"):
            assert 0.0 <= row[metric] <= 1.0
        assert row["tracks"] <= 50
        if not key.endswith("/recipe"):
            assert row["violations"] == 0, key
    # Exploration is only of new artists: each of its artist hits is a discovery.
    explore = result["results"]["exploration/tastemaker"]
    assert explore["discovery_hit_rate"] == pytest.approx(explore["artist_hit_rate"])
    assert set(result["ratios"]) >= {"jams track hit rate vs recipe"}


def test_the_window_follows_the_cutoff_and_nothing_after_it_is_used(listens):
    before, window, cutoff = split_listens(listens.lazy(), None, 28)
    last = listens["listened_at"].max()
    assert cutoff == last - timedelta(days=28)
    assert before.select(pl.col("listened_at").max()).collect().item() < cutoff
    assert window.height > 0


def test_the_judge_counts_what_was_played(listens):
    from tastemaker.data.listens import interactions_from_listens
    from tastemaker.data.top_tracks import attach_tracks
    from tastemaker.models import create_model

    before, window, cutoff = split_listens(listens.lazy(), None, 28)
    train = attach_tracks(before, interactions_from_listens(before))
    library = Library(create_model("als", **PARAMS).fit(train))
    judge = Judge(library, window)
    user = next(iter(judge.recordings))
    listener = library.listener(user=user, now=cutoff.replace(tzinfo=UTC))
    played = judge.recordings[user]
    # A playlist of the user's window recordings (as far as the track tables know them)
    # hits every time; one of recordings nobody played, never.
    tracks = [
        t for i in range(train.n_items) for t in library.item_tracks(i) if t.recording in played
    ]
    assert tracks
    hit = Playlist("t", "c", datetime.now(UTC), "jams", tracks[:10], 10, 2)
    assert judge.scores(hit, listener, Rules(10))["track_hit_rate"] == 1.0
    miss = [t for t in library.item_tracks(0) if t.recording not in played][:1]
    scores = judge.scores(
        Playlist("t", "c", datetime.now(UTC), "jams", miss, 1, 2), listener, Rules(1)
    )
    assert scores["track_hit_rate"] == 0.0


def test_a_name_only_window_listen_is_a_hit_on_the_mbid_recording(listens):
    """The window is keyed by the identity rule: a listen with names only (another
    spelling, no MBIDs) of a recording the track tables carry by MBID is a hit on it."""
    from tastemaker.data.listens import interactions_from_listens
    from tastemaker.data.top_tracks import attach_tracks
    from tastemaker.models import create_model

    cutoff = listens["listened_at"].max() - timedelta(days=28)
    before = listens.filter(pl.col("listened_at") < cutoff)
    train = attach_tracks(before.lazy(), interactions_from_listens(before.lazy()))
    library = Library(create_model("als", **PARAMS).fit(train))
    track = next(t for t in library.item_tracks(0) if t.recording_mbid)
    source = before.filter(pl.col("recording_mbid") == track.recording_mbid).row(0, named=True)
    user = train.users.id(1)
    unmapped = {
        **{c: None for c in listens.columns},
        "user": user,
        "listened_at": cutoff + timedelta(days=1),
        "count": 1,
        "artist_name": source["artist_name"].upper(),
        "recording_name": source["recording_name"].lower(),
    }
    window_rows = pl.DataFrame([unmapped], schema=listens.schema)
    # The listener's own window listens of that recording are removed: only the name-only one.
    rest = listens.filter(
        ~((pl.col("user") == user) & (pl.col("listened_at") >= cutoff))
        | (pl.col("recording_mbid") != track.recording_mbid).fill_null(True)
    )
    _, window, _ = split_listens(pl.concat([rest, window_rows]).lazy(), cutoff, 28)
    judge = Judge(library, window)
    assert track.recording in judge.recordings[1]
    listener = library.listener(user=1, now=cutoff)
    hit = Playlist("t", "c", datetime.now(UTC), "jams", [track], 1, 2)
    assert judge.scores(hit, listener, Rules(1))["track_hit_rate"] == 1.0

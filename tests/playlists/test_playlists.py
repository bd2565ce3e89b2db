"""Playlists (``tastemaker.playlists``): the rules hold on every playlist, whoever built it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tastemaker.data.interactions import Interactions
from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.synth import synthetic_listens
from tastemaker.data.top_tracks import attach_tracks
from tastemaker.errors import UsageError
from tastemaker.models import create_model
from tastemaker.playlists.constraints import (
    PERSONAL_MAX_PER_ARTIST,
    RADIO_MAX_PER_ARTIST,
    Freshness,
    Rules,
    violations,
)
from tastemaker.playlists.export import render, to_jspf
from tastemaker.playlists.library import Library
from tastemaker.playlists.ordering import random_order_similarity, transition_similarity
from tastemaker.playlists.personal import (
    MODES,
    freshness,
    listenbrainz_recipe,
    personal_playlist,
    plain_top,
)
from tastemaker.playlists.playlist import Playlist, Track
from tastemaker.playlists.radio import parse_prompt, radio

NOW = datetime(2025, 1, 15, tzinfo=UTC)  # two weeks after the data ends


@pytest.fixture(scope="module")
def data() -> Interactions:
    listens = synthetic_listens(users=80, artists=150, listens=25_000, seed=6, bots=0).lazy()
    return attach_tracks(listens, interactions_from_listens(listens))


@pytest.fixture(scope="module", params=["als", "itemknn"])
def library(request, data) -> Library:
    params = {"als": {"factors": 16, "iterations": 8, "seed": 0}, "itemknn": {"neighbours": 30}}
    return Library(create_model(request.param, **params[request.param]).fit(data))


def rules_for(playlist: Playlist, library: Library, listener) -> Rules:
    mode = playlist.mode.removeprefix("top-")
    return Rules(playlist.requested, PERSONAL_MAX_PER_ARTIST, freshness(mode, listener))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    user=st.integers(0, 79),
    mode=st.sampled_from(MODES),
    n=st.integers(1, 80),
    seed=st.integers(0, 10_000),
    day=st.dates(date(2024, 1, 1), date(2025, 1, 1)),
    shuffle=st.booleans(),
)
def test_every_personal_playlist_keeps_every_rule(library, user, mode, n, seed, day, shuffle):
    now = datetime(day.year, day.month, day.day, tzinfo=UTC)
    listener = library.listener(user=user, now=now)
    playlist = personal_playlist(library, listener, mode, n=n, seed=seed, shuffle=shuffle)
    assert violations(playlist, rules_for(playlist, library, listener)) == []
    assert len(playlist.tracks) + playlist.short_by == n
    assert all(t.reason for t in playlist.tracks)
    top = plain_top(library, listener, mode, n=n)
    assert violations(top, rules_for(top, library, listener)) == []


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=3),
    weights=st.lists(st.sampled_from(["", ":2", ":0.5"]), min_size=3, max_size=3),
    mode=st.sampled_from(["easy", "medium", "hard"]),
    n=st.integers(1, 120),
)
def test_every_radio_keeps_every_rule(library, picks, weights, mode, n):
    data = library.data
    terms = []
    for k, pick in enumerate(picks):
        if pick % 2:
            terms.append(f"artist:({library.item_name[pick % data.n_items]}){weights[k]}")
        else:
            terms.append(f"user:({data.users.id(pick % data.n_users)}){weights[k]}")
    playlist = radio(library, " ".join(terms), mode, n=n, now=NOW)
    assert violations(playlist, Rules(n, RADIO_MAX_PER_ARTIST)) == []
    assert playlist.shortfall or len(playlist.tracks) == n


def track(i: int, artist: str, title: str, recording: str | None = None) -> Track:
    return Track(item=i, artist=artist, title=title, recording=recording or f"r{i}", reason="x")


def test_the_checker_catches_each_broken_rule():
    """Each rule on its own, so the property tests above could fail."""

    def broken(tracks, rules=None) -> list[str]:
        playlist = Playlist("t", "c", NOW, "jams", tracks, 3, 2)
        return violations(playlist, rules or Rules(3))

    good = [track(0, "A", "one"), track(1, "B", "two"), track(2, "A", "three")]
    assert broken(good) == []
    assert "duplicate recording" in broken([good[0], good[1], track(9, "C", "x", "r0")])[0]
    same_song = track(7, "the  a", "ONE", "other")  # same artist and title, another release
    assert (
        "duplicate song"
        in broken(
            [good[0], good[1], same_song.__class__(**{**same_song.__dict__, "artist": "A "})]
        )[0]
    )
    assert "per artist" in broken([good[0], good[1], track(3, "a", "four")], Rules(3, 1))[0]
    assert "back to back" in broken([good[0], good[2], good[1]])[0]
    assert "length" in broken(good[:2])[0]
    stale = Rules(3, 2, Freshness("not-recent", recent=frozenset({"r1"})))
    assert "freshness" in broken(good, stale)[0]
    unknown = Rules(3, 2, Freshness("new-artists", known=frozenset({"b"})))
    assert "freshness" in broken(good, unknown)[0]


def test_a_playlist_is_the_same_all_day_and_changes_the_next(library):
    listener = library.listener(user=3, now=NOW)
    first = personal_playlist(library, listener, "jams", day=date(2025, 1, 15))
    again = personal_playlist(library, listener, "jams", day=date(2025, 1, 15))
    tomorrow = personal_playlist(library, listener, "jams", day=date(2025, 1, 16))
    assert [t.recording for t in first.tracks] == [t.recording for t in again.tracks]
    assert [t.recording for t in first.tracks] != [t.recording for t in tomorrow.tracks]


def test_modes_keep_their_promises(library):
    # The most active listener: enough artists of their own for a mix's familiar part.
    heaviest = int(np.argmax(np.diff(library.data.user_items.indptr)))
    listener = library.listener(user=heaviest, now=NOW)
    explore = personal_playlist(library, listener, "exploration")
    assert explore.tracks and all(t.artist_key not in listener.known for t in explore.tracks)
    mix = personal_playlist(library, listener, "mix")
    discoveries = sum(t.discovery for t in mix.tracks)
    assert 0.2 * len(mix.tracks) <= discoveries <= 0.45 * len(mix.tracks)
    jams = personal_playlist(library, listener, "jams")
    assert any(t.reason.startswith("one of your favourites") for t in jams.tracks)


def test_smooth_order_beats_a_random_order(library):
    ratios = []
    for user in range(0, 80, 8):
        listener = library.listener(user=user, now=NOW)
        playlist = personal_playlist(library, listener, "mix")
        similarity = library.similarity(playlist.tracks)
        ordered = transition_similarity(similarity, np.arange(len(playlist.tracks)))
        shuffled = random_order_similarity(similarity, np.random.default_rng(user))
        ratios.append(ordered / shuffled)
    assert np.median(ratios) >= 1.3


def test_baselines_are_built_from_the_same_ranking(library):
    listener = library.listener(user=4, now=NOW)
    recipe = listenbrainz_recipe(library, listener, "jams", seed=1)
    assert len(recipe.tracks) == 50
    per_artist = {}
    for t in recipe.tracks:
        per_artist[t.artist_key] = per_artist.get(t.artist_key, 0) + 1
    assert max(per_artist.values()) <= 2
    assert not {t.recording for t in recipe.tracks} & listener.recent


def test_a_playlist_that_cannot_be_filled_says_how_short_and_why(library):
    listener = library.listener(user=2, now=NOW)
    playlist = personal_playlist(library, listener, "exploration", n=2000)
    assert playlist.short_by > 0
    assert playlist.describe_shortfall().startswith(f"{playlist.short_by} tracks short of 2000")


def test_artist_only_data_gives_an_artist_list_and_says_so():
    data = Interactions.from_arrays(
        ["u1", "u1", "u2", "u2", "u3"], ["a", "b", "b", "c", "a"], [5, 2, 3, 1, 4]
    )
    library = Library(create_model("itemknn", neighbours=5).fit(data))
    playlist = personal_playlist(library, library.listener(user=0, now=NOW), "jams", n=3)
    assert playlist.artists_only and "list of artists" in playlist.notes[0]
    assert all(t.title is None for t in playlist.tracks)
    assert violations(playlist, Rules(3, 2, Freshness())) == []


def test_exports(library):
    playlist = personal_playlist(library, library.listener(user=1, now=NOW), "jams", n=10)
    document = json.loads(render(playlist, "jspf"))
    assert document == to_jspf(playlist)
    body = document["playlist"]
    assert {"title", "creator", "date", "track"} <= set(body)
    assert len(body["track"]) == 10
    with_mbid = [t for t in playlist.tracks if t.recording_mbid]
    assert with_mbid
    entries = {e["title"]: e for e in body["track"]}
    entry = entries[with_mbid[0].title]
    assert entry["identifier"] == [
        f"https://musicbrainz.org/recording/{with_mbid[0].recording_mbid}"
    ]
    reason = entry["extension"]["https://musicbrainz.org/doc/jspf#track"]["additional_metadata"]
    assert reason["reason"] == with_mbid[0].reason
    root = ET.fromstring(render(playlist, "xspf").encode())
    assert len(root.findall("{http://xspf.org/ns/0/}trackList/{http://xspf.org/ns/0/}track")) == 10
    m3u = render(playlist, "m3u8").splitlines()
    assert m3u[0] == "#EXTM3U" and sum(line.startswith("#EXTINF") for line in m3u) == 10


def test_bad_prompts_are_one_line_errors(library):
    assert [t.weight for t in parse_prompt("artist:(A B) tag:(x y):2 user:(17):0.5")] == [1, 2, 0.5]
    for prompt, message in (
        ("radiohead", "cannot read"),
        ("genre:(x)", "unknown radio term"),
        ("artist:()", "empty"),
        ("artist:(x):0", "weights"),
    ):
        with pytest.raises(UsageError, match=message):
            parse_prompt(prompt)
    with pytest.raises(UsageError, match="no artist called"):
        radio(library, "artist:(zzzzqqqq nothing)")
    with pytest.raises(UsageError, match="need tags"):
        radio(library, "tag:(shoegaze)")


def test_radio_tag_terms_read_item_metadata_when_no_one_tagged(data):
    """Tags attached as item metadata (MusicBrainz, CSV) feed radio like per-user tags."""
    from tastemaker.testing import with_item_tags

    tagged = with_item_tags(
        data, [["dream pop"] if i % 5 == 0 else ["noise"] for i in range(data.n_items)]
    )
    assert tagged.tags is None or not len(tagged.tags.item)
    library = Library(create_model("itemknn", neighbours=30).fit(tagged))
    playlist = radio(library, "tag:(Dream Pop)", n=20)
    asked = [t for t in playlist.tracks if t.reason == "tagged Dream Pop"]
    assert asked and all(t.item % 5 == 0 for t in asked)

"""Choosing a personal playlist on arrays (``playlists.picking``): the rules of ``Selection``
applied to candidates by position, on the track table's key hashes, give what ``Selection``
gives on ``Track`` objects, collisions included."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions
from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.synth import synthetic_listens
from tastemaker.data.top_tracks import attach_tracks
from tastemaker.models import create_model
from tastemaker.playlists.candidates import exact_known_and_new
from tastemaker.playlists.constraints import PERSONAL_MAX_PER_ARTIST, Rules, Selection
from tastemaker.playlists.library import Library
from tastemaker.playlists.personal import freshness
from tastemaker.playlists.picking import Picker, Stream, picked_tracks, weighted_pool
from tastemaker.playlists.playlist import Track
from tastemaker.playlists.track_table import recording_hash, song_hash

NOW = datetime(2025, 1, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def data() -> Interactions:
    listens = synthetic_listens(users=40, artists=200, listens=12_000, seed=4, bots=0).lazy()
    return attach_tracks(listens, interactions_from_listens(listens))


@pytest.fixture(scope="module")
def library(data) -> Library:
    return Library(create_model("als", factors=8, iterations=4, seed=0).fit(data))


def test_row_hashes_are_the_hashes_of_the_tracks_keys(library, data):
    table = library.table
    for item in range(0, data.n_items, 7):
        start = int(table.offsets[item])
        for k, track in enumerate(library.item_tracks(item)):
            if track.title is None:
                continue  # an artist entry has no row
            assert table.recording_hash[start + k] == recording_hash(track.recording, item)
            assert table.song_hash[start + k] == song_hash(*track.song_key)


def _as_tracks(library, listener, stream) -> list[Track]:
    """The stream's candidates as ``Track``s, as the playlist makes them when picked."""
    pool = stream.pool
    pool.extend(len(pool))
    out = []
    for i in range(len(pool)):
        favourite = pool.favourite(i)
        if favourite is not None:
            out.append(favourite)
            continue
        reason = (
            "" if pool.discovery[i] else f"because you play {library.item_artist[pool.items[i]]}"
        )
        out.extend(
            library.table.tracks(
                np.asarray([pool.items[i]]), np.asarray([pool.rows[i]]), [reason],
                [pool.discovery[i]],
            )
        )  # fmt: skip
    return out


@pytest.mark.parametrize("collide", [False, True])
@pytest.mark.parametrize("mode", ["jams", "exploration"])
def test_the_picker_picks_what_selection_would(library, data, mode, collide):
    """Every candidate offered in turn: the same tracks kept, the same refusals counted. With
    ``collide`` every hash is made the same, so only the check on the keys tells them apart."""
    compared = 0
    for user in range(0, data.n_users, 3):
        listener = library.listener(user=user, now=NOW)
        rules = Rules(30, PERSONAL_MAX_PER_ARTIST, freshness(mode, listener))
        known, new = exact_known_and_new(library, listener, 60)
        ranked, loved = (known, True) if mode == "jams" else (new, False)
        build = partial(weighted_pool, library, listener, ranked, None, loved, rules.freshness)
        stream = Stream(build)
        pool = stream.pool
        tracks = _as_tracks(library, listener, stream)
        if collide:
            pool.recording = [0] * len(pool)
            pool.song = [0] * len(pool)
        picker, selection = Picker(rules), Selection(rules)
        for i, track in enumerate(tracks):
            assert picker.offer(pool, i) == selection.offer(track), (user, i)
        assert picker.refused == selection.refused
        assert picker.shortfall("x") == selection.shortfall("x")
        made = picked_tracks(library, picker, dict.fromkeys(range(data.n_items), ""))
        assert [(t.item, t.recording, t.title) for t in made] == [
            (t.item, t.recording, t.title) for t in selection.tracks
        ]
        compared += len(tracks)
    assert compared > 1000


def test_a_listener_history_row_is_the_matrix_row(library, data):
    for user in (0, 5, data.n_users - 1):
        row = library.listener(user=user, now=NOW).history
        expected = data.user_items[user]
        assert isinstance(row, sp.csr_matrix) and row.shape == expected.shape
        assert (row != expected).nnz == 0
        row.data[:] = -1  # its own arrays: the model's matrix is untouched
        assert (data.user_items[user].data >= 0).all()


def test_items_of_artists_are_every_item_of_those_artists(library):
    keys = library.item_artist_key
    chosen = frozenset(keys[::9]) | {"no such artist"}
    expected = [i for i, key in enumerate(keys) if key in chosen]
    assert library.items_of_artists(chosen).tolist() == expected
    assert library.items_of_artists(frozenset()).tolist() == []

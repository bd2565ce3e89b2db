"""Exploration's track choice with the order in mind (``playlists.coherence``)."""

from __future__ import annotations

import numpy as np

from tastemaker.playlists.coherence import coherent_fill, most_contrasted
from tastemaker.playlists.constraints import Rules
from tastemaker.playlists.ordering import random_order_similarity, smooth_order
from tastemaker.playlists.picking import Picker, Stream
from tastemaker.playlists.playlist import Track


def _tracks(codes) -> list[Track]:
    return [Track(item=i, artist=f"artist {c}", title=f"t{i}") for i, c in enumerate(codes)]


class _Pool:
    """The part of ``picking.Pool`` a ``Picker`` reads: candidate i is track ``t{i}`` by
    ``artist {codes[i]}``, all distinct recordings, none stale."""

    def __init__(self, codes) -> None:
        self.size = len(codes)
        self.items = self.rows = list(range(self.size))
        self.artist = [f"artist {c}" for c in codes]
        self.recording = [hash(("recording", i)) for i in range(self.size)]
        self.song = [hash(("song", i)) for i in range(self.size)]
        self.stale = [False] * self.size

    def keys(self, i: int) -> tuple[str, tuple[str, str]]:
        return f"r{i}", (self.artist[i], f"t{i}")

    def extend(self, upto: int) -> None:
        pass


def _stream(codes) -> Stream:
    pool = _Pool(codes)
    return Stream(lambda: pool)  # type: ignore[arg-type, return-value]


def _picked(picker: Picker) -> list[int]:
    return [pool.items[i] for pool, i in picker.picked]


def _cosine(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit @ unit.T


def test_the_track_alike_to_everything_and_the_outlier_go_first():
    # Pairs of near tracks (0-1, 2-3, 4-5), one track halfway between every pair (6) and one
    # far from all (7): 6 and 7 have no neighbour that stands out from the rest.
    base = np.eye(4)[:3]
    vectors = np.vstack([base[0], base[0] + 0.1 * base[1], base[1], base[1] + 0.1 * base[2]])
    vectors = np.vstack([vectors, base[2], base[2] + 0.1 * base[0], base.sum(0), np.eye(4)[3]])
    vectors = vectors + 0.05
    codes = np.arange(8)
    assert most_contrasted(_cosine(vectors), codes, 6).tolist() == [0, 1, 2, 3, 4, 5]
    # The first track stays whatever it is; ties drop the later track.
    assert 0 in most_contrasted(_cosine(vectors[::-1]), codes, 2).tolist()
    assert most_contrasted(np.ones((5, 5)), codes[:5], 3).tolist() == [0, 1, 2]


def test_a_neighbour_of_the_same_artist_does_not_count():
    # 0 and 1 are one artist and alike; 2 and 3 are two artists and alike; 4 is alike to 0.
    similarity = np.full((5, 5), 0.1)
    similarity[0, 1] = similarity[1, 0] = 0.9
    similarity[2, 3] = similarity[3, 2] = 0.9
    similarity[0, 4] = similarity[4, 0] = 0.5
    assert most_contrasted(similarity, np.asarray([0, 0, 1, 2, 3]), 4).tolist() == [0, 2, 3, 4]


def test_coherent_fill_keeps_the_rules_and_the_order():
    codes = [0, 0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8]
    rng = np.random.default_rng(1)
    similarity = _cosine(rng.normal(size=(len(codes), 5)))
    picker = Picker(Rules(6, max_per_artist=2))
    coherent_fill(picker, _stream(codes), lambda items: similarity[np.ix_(items, items)])
    items = _picked(picker)
    assert len(items) == 6 and items == sorted(items) and items[0] == 0
    assert 2 not in items  # artist 0's third track: refused by the rules, never offered


def test_coherent_fill_short_of_tracks_says_why():
    picker = Picker(Rules(5, max_per_artist=2))
    coherent_fill(picker, _stream([0, 0, 0, 0, 1]), lambda items: np.eye(len(items)))
    assert _picked(picker) == [0, 1, 4]
    assert picker.shortfall("the ranking") == "the ranking ran out (2 by per-artist limit)"


def test_the_chosen_tracks_leave_the_order_more_to_do():
    # Clustered tracks: the kept ones' smoothed order beats a random order of them by more
    # than the first n of the same candidates' does.
    rng = np.random.default_rng(7)
    gains = []
    for _ in range(12):
        centres = rng.normal(size=(6, 8))
        vectors = centres[rng.integers(0, 6, 70)] + 0.8 * rng.normal(size=(70, 8))
        vectors[:, 0] += 2.5  # a shared direction: a random order averages about 0.6
        codes = rng.permutation(np.repeat(np.arange(35), 2))
        similarity = _cosine(vectors)
        ratios = []
        for chosen in (np.arange(50), most_contrasted(similarity, codes, 50)):
            sub = similarity[np.ix_(chosen, chosen)]
            ordered = smooth_order(_tracks(codes[chosen]), sub)[0]
            path = np.asarray([t.item for t in ordered])
            mean = sub[path[:-1], path[1:]].mean()
            ratios.append(mean / random_order_similarity(sub, np.random.default_rng(0)))
        gains.append(ratios[1] / ratios[0])
    assert np.median(gains) > 1.05 and min(gains) > 1.0


def test_exploration_orders_better_for_its_choice(monkeypatch):
    from datetime import UTC, datetime
    from functools import partial

    from tastemaker.data.listens import interactions_from_listens
    from tastemaker.data.synth import synthetic_listens
    from tastemaker.data.top_tracks import attach_tracks
    from tastemaker.models import create_model
    from tastemaker.playlists import personal
    from tastemaker.playlists.constraints import PERSONAL_MAX_PER_ARTIST, violations
    from tastemaker.playlists.library import Library

    listens = synthetic_listens(users=60, artists=400, listens=20_000, seed=2, bots=0).lazy()
    data = attach_tracks(listens, interactions_from_listens(listens))
    library = Library(create_model("als", factors=16, iterations=8, seed=0).fit(data))
    now = datetime(2025, 1, 15, tzinfo=UTC)

    def ratio() -> float:  # as the playlist task states it: mean over mean
        ordered, shuffled = [], []
        for user in range(0, 60, 5):
            listener = library.listener(user=user, now=now)
            playlist = personal.personal_playlist(library, listener, "exploration", n=30)
            rules = Rules(30, PERSONAL_MAX_PER_ARTIST, personal.freshness("exploration", listener))
            assert violations(playlist, rules) == [] and len(playlist.tracks) == 30
            similarity = library.similarity(playlist.tracks)
            ordered.append(similarity[np.arange(29), np.arange(1, 30)].mean())
            shuffled.append(random_order_similarity(similarity, np.random.default_rng(0)))
        return float(np.mean(ordered) / np.mean(shuffled))

    chosen = ratio()
    monkeypatch.setattr(personal, "coherent_fill", partial(coherent_fill, extra=0.0))
    plain = ratio()
    assert chosen > 1.05 * plain

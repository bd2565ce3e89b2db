"""The playlist task: playlists made from listens before a cut-off, judged on what each
listener played in the window after it (default 28 days).

One model is fitted on the listens before the cut-off (track tables built from the same
listens, so nothing after the cut-off leaks in). For a sample of listeners who play in the
window, every mode's playlist is built three ways: tastemaker's (``personal_playlist``), the
ListenBrainz recipe (random 50 of the model's top 1,000 recordings with its filters) and the
plain top-n of the same ranking under the same rules. Per playlist:

- track hit rate: share of its tracks the listener played in the window;
- artist hit rate: share of its tracks whose artist the listener played in the window;
- discovery hit rate: share of its tracks that are by artists new to the listener whose
  artist they played in the window (they took up the discovery); the discovery track hit
  rate counts only the very recordings;
- distinct artists; mean transition similarity (consecutive tracks, in the model's item
  space), that of random orders of the same tracks and the most any order could reach
  (``transition_bound``); rule violations (``violations``).

Means over listeners per (mode, builder), and the ratios the targets are stated in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from tastemaker.data.listens import interactions_from_listens, key_listens
from tastemaker.data.top_tracks import attach_tracks
from tastemaker.errors import UsageError
from tastemaker.models.registry import fit_model
from tastemaker.playlists.constraints import PERSONAL_MAX_PER_ARTIST, Freshness, Rules, violations
from tastemaker.playlists.library import Library, Listener
from tastemaker.playlists.ordering import (
    random_order_similarity,
    transition_bound,
    transition_similarity,
)
from tastemaker.playlists.personal import (
    MODES,
    freshness,
    listenbrainz_recipe,
    personal_playlist,
    plain_top,
)
from tastemaker.playlists.playlist import Playlist, normalised

WINDOW_DAYS = 28
BUILDERS = ("tastemaker", "recipe", "top")
METRICS = (
    "track_hit_rate",
    "artist_hit_rate",
    "discovery_hit_rate",
    "discovery_track_hit_rate",
    "distinct_artists",
    "transition_similarity",
    "random_order_similarity",
    "transition_bound",
    "violations",
    "tracks",
)


def split_listens(
    listens: pl.LazyFrame, cutoff: datetime | None, window_days: int
) -> tuple[pl.LazyFrame, pl.DataFrame, datetime]:
    """(listens before the cut-off, the window's (user, recording, artist name) rows, cut-off);
    the default cut-off leaves exactly one window at the end of the data."""
    if cutoff is None:
        last = listens.select(pl.col("listened_at").max()).collect().item()
        if last is None:
            raise UsageError("the playlist task needs timestamped listens")
        cutoff = last - timedelta(days=window_days)
    end = cutoff + timedelta(days=window_days)
    before = listens.filter(pl.col("listened_at") < cutoff)
    # The window's recordings keyed by the identity rule decided over the training listens
    # plus the window: a name-only window listen joins the MBID recording the track tables
    # (keyed over the training listens) carry, including for names training never saw. The
    # rule over the training listens alone could not key those; the price of adding the
    # window is that an id first seen in it can make a name ambiguous that training joined
    # (that listen then judges as a miss), which is rare and errs against hits.
    keyed = key_listens(listens.filter(pl.col("listened_at") < end), ("recording",))
    window = (
        keyed.filter(pl.col("listened_at") >= cutoff)
        .select("user", pl.col("recording_key").alias("recording"), "artist_name")
        .unique()
        .collect(engine="streaming")
    )
    return before, window, cutoff


class Judge:
    """What each listener played in the window: recordings and artists (normalised)."""

    def __init__(self, library: Library, window: pl.DataFrame) -> None:
        data = library.data
        self.recordings: dict[int, set[str]] = {}
        self.artists: dict[int, set[str]] = {}
        users = data.users.indices(window["user"])
        for user, recording, artist in zip(
            users.tolist(),
            window["recording"].to_list(),
            window["artist_name"].to_list(),
            strict=True,
        ):
            if user < 0:
                continue  # a listener who appears only after the cut-off: no history to use
            self.recordings.setdefault(user, set()).add(recording)
            self.artists.setdefault(user, set()).add(normalised(artist))
        # An artist-level item's own name counts too (a credit "X feat. Y" plays X).
        self._library = library

    def scores(self, playlist: Playlist, listener: Listener, rules: Rules) -> dict[str, float]:
        tracks = playlist.tracks
        user = listener.user
        played = self.recordings.get(user, set()) if user is not None else set()
        artists = self.artists.get(user, set()) if user is not None else set()
        k = max(len(tracks), 1)
        hits = [t.recording in played for t in tracks]
        artist_hits = [t.artist_key in artists or normalised(t.creator) in artists for t in tracks]
        new = [t.artist_key not in listener.known for t in tracks]
        similarity = self._library.similarity(tracks)
        rng = np.random.default_rng(user)
        return {
            "track_hit_rate": sum(hits) / k,
            "artist_hit_rate": sum(artist_hits) / k,
            "discovery_hit_rate": sum(a and d for a, d in zip(artist_hits, new, strict=True)) / k,
            "discovery_track_hit_rate": sum(h and d for h, d in zip(hits, new, strict=True)) / k,
            "distinct_artists": len({t.artist_key for t in tracks}),
            "transition_similarity": transition_similarity(similarity, np.arange(len(tracks))),
            "random_order_similarity": random_order_similarity(similarity, rng),
            "transition_bound": transition_bound(similarity, [t.artist_key for t in tracks]),
            "violations": len(violations(playlist, rules)),
            "tracks": len(tracks),
        }


def _builders(mode: str, n: int, seed: int) -> dict[str, Callable[[Library, Listener], Playlist]]:
    recipe_mode = "exploration" if mode == "exploration" else "jams"
    return {
        "tastemaker": lambda lib, who: personal_playlist(lib, who, mode, n=n, seed=seed),
        "recipe": lambda lib, who: listenbrainz_recipe(lib, who, recipe_mode, n=n, seed=seed),
        "top": lambda lib, who: plain_top(lib, who, mode, n=n),
    }


def _rules(mode: str, builder: str, listener: Listener, n: int) -> Rules:
    if builder == "recipe":  # its own filters: ListenBrainz's, which do not separate artists
        recipe_mode = "exploration" if mode == "exploration" else "jams"
        rule = freshness(recipe_mode, listener) if recipe_mode == "jams" else Freshness()
        return Rules(n, PERSONAL_MAX_PER_ARTIST, rule)
    return Rules(n, PERSONAL_MAX_PER_ARTIST, freshness(mode, listener))


def playlist_task(
    listens: pl.LazyFrame,
    model: str,
    params: dict[str, Any] | None = None,
    level: str = "artist",
    cutoff: datetime | None = None,
    window_days: int = WINDOW_DAYS,
    n: int = 50,
    users: int = 200,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the task; a JSON-ready dict of means per mode and builder, with the ratios."""
    before, window, cutoff = split_listens(listens, cutoff, window_days)
    train = attach_tracks(before, interactions_from_listens(before, level=level))
    if train.nnz == 0:
        raise UsageError(f"no listens before the cut-off {cutoff:%Y-%m-%d}")
    library = Library(fit_model(model, params or {}, train))
    judge = Judge(library, window)
    candidates = np.asarray(sorted(judge.recordings), dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(candidates)[:users]) if len(candidates) else candidates
    sums: dict[tuple[str, str], dict[str, list[float]]] = {}
    now = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=UTC)
    for done, user in enumerate(chosen.tolist(), 1):
        listener = library.listener(user=user, now=now)
        for mode in MODES:
            for builder, build in _builders(mode, n, seed).items():
                scores = judge.scores(
                    build(library, listener), listener, _rules(mode, builder, listener, n)
                )
                bucket = sums.setdefault((mode, builder), {})
                for key, value in scores.items():
                    bucket.setdefault(key, []).append(value)
        if progress is not None:
            progress(done, len(chosen))
    return _summary(sums, model, params or {}, level, cutoff, window_days, n, len(chosen), library)


def _summary(sums, model, params, level, cutoff, window_days, n, users, library) -> dict[str, Any]:
    results = {
        f"{mode}/{builder}": {key: float(np.nanmean(values)) for key, values in bucket.items()}
        for (mode, builder), bucket in sums.items()
    }

    def ratio(a: str, b: str, metric: str) -> float | None:
        if a not in results or b not in results or not results[b][metric]:
            return None
        return results[a][metric] / results[b][metric]

    ratios = {
        "jams track hit rate vs recipe": ratio("jams/tastemaker", "jams/recipe", "track_hit_rate"),
        "mix track hit rate vs recipe": ratio("mix/tastemaker", "mix/recipe", "track_hit_rate"),
        "exploration discovery hit rate vs recipe": ratio(
            "exploration/tastemaker", "exploration/recipe", "discovery_hit_rate"
        ),
    }
    for mode in MODES:
        row = results.get(f"{mode}/tastemaker")
        if row and row["random_order_similarity"]:
            ratios[f"{mode} transition similarity vs random order"] = (
                row["transition_similarity"] / row["random_order_similarity"]
            )
            # What no order of the same tracks can beat (ordering.transition_bound).
            ratios[f"{mode} best possible order vs random order (bound)"] = (
                row["transition_bound"] / row["random_order_similarity"]
            )
    return {
        "task": "playlists",
        "model": model,
        "params": params,
        "level": level,
        "cutoff": cutoff.isoformat(),
        "window_days": window_days,
        "n": n,
        "users": users,
        "artists_only": library.artists_only,
        "results": results,
        "ratios": ratios,
    }

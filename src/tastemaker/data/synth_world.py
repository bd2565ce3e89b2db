"""The synthetic world fixed before the first listen (``synth``): the catalogue (artists,
genres, releases, recordings, popularity), users (activity, tastes, libraries) and the plan of
their sessions, all drawn from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from tastemaker.data.synth_names import artist_names, spellings
from tastemaker.errors import UsageError

DAY = 86_400
# Reserved time per track when laying out sessions; actual gaps are 150-330 s (times the
# user's pace factor), so sessions of one user never overlap and no two listens of a user
# share a second (the ListenBrainz dedup key is user, listened_at, recording_msid).
MAX_TRACK_SECONDS = 330
MIN_TRACK_SECONDS = 150
# Shares of a human listen's source: the user's own library (genre of the session), the
# session genre at large (popularity-weighted), anything (global popularity).
LIBRARY_SHARE = 0.80
GENRE_SHARE = 0.15
ALBUM_RUN = 0.35  # chance that the next track continues the current release
MEAN_SESSION = 8.0
BOT_SESSION = 200.0


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generator; ``synthesize`` and ``synthetic_interactions`` fill it."""

    users: int = 2000
    artists: int = 5000
    listens: int = 1_000_000
    seed: int = 0
    bots: int | None = None  # None: one per 1,000 users
    bot_share: float = 0.01  # of all listens, split among the bots
    genres: int | None = None  # None: artists / 100, between 4 and 50
    mbid_share: float = 0.85  # listens with MBIDs (the rest carry names only)
    days: int = 730
    end: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    incremental_days: float = 7.0  # 0: no incremental dump
    overlap_hours: float = 6.0  # the incremental dump repeats this much of the full dump
    chunk_rows: int = 500_000  # listens generated (and written as one row group) at a time
    rows_per_file: int = 4_000_000

    def __post_init__(self) -> None:
        for name in ("users", "artists", "listens", "chunk_rows", "rows_per_file"):
            if getattr(self, name) < 1:
                raise UsageError(f"synth: {name} must be at least 1")
        if self.bots is not None and self.bots < 0:
            raise UsageError("synth: bots must not be negative")
        if self.listens < self.users + self.n_bots:
            raise UsageError(
                f"synth: {self.listens} listens cannot cover {self.users + self.n_bots} users "
                "(each needs at least one)"
            )
        if not 0 <= self.mbid_share <= 1 or not 0 <= self.bot_share < 1:
            raise UsageError("synth: mbid_share must be in [0, 1] and bot_share in [0, 1)")
        if self.days < 1 or self.incremental_days < 0 or self.overlap_hours < 0:
            raise UsageError("synth: days must be >= 1, incremental_days and overlap >= 0")

    @property
    def n_bots(self) -> int:
        return round(self.users / 1000) if self.bots is None else self.bots

    @property
    def n_genres(self) -> int:
        k = self.genres if self.genres is not None else int(np.clip(self.artists // 100, 4, 50))
        return max(1, min(k, self.artists))


# -- the world: catalogue, users, sessions ---------------------------------------------------


def group_starts(lengths: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    return starts


def exclusive_group_cumsum(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per group (consecutive runs of the given lengths): sum of the earlier values in it."""
    total = np.cumsum(values)
    exclusive = total - values
    first = group_starts(lengths)[:-1]
    return exclusive - np.repeat(exclusive[first], lengths)


def _round_split(totals: np.ndarray, weights: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Split each group's integer total over its members in proportion to weights, exactly.

    Cumulative rounding: the running share is rounded, so parts are >= 0 and sum to the total.
    """
    inclusive = exclusive_group_cumsum(weights, lengths) + weights
    group_sum = np.repeat(inclusive[group_starts(lengths)[1:] - 1], lengths)
    running = np.rint(inclusive / group_sum * np.repeat(totals, lengths)).astype(np.int64)
    return running - _previous_in_group(running, lengths)


def _previous_in_group(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    shifted = np.concatenate([np.zeros(1, values.dtype), values[:-1]])
    shifted[group_starts(lengths)[:-1]] = 0
    return shifted


@dataclass
class World:
    """Everything fixed before the first listen: catalogue, user tastes, the session plan."""

    config: SynthConfig
    # catalogue
    artist_genre: np.ndarray
    artist_second: np.ndarray  # a second genre, -1 for none
    artist_mapped: np.ndarray
    artist_names: pa.Array  # as MusicBrainz spells them (some with accents, some shared)
    artist_plain_names: pa.Array  # the same without accents, as people often type them
    artist_accented: np.ndarray
    homonyms: int  # artists whose name another artist also has
    popular_artists: np.ndarray  # the top 30 % by popularity: guests of credits come from them
    release_start: np.ndarray  # per artist, its first release id; n_releases per artist
    n_releases: np.ndarray
    track_start: np.ndarray  # per release, its first recording id
    n_tracks: np.ndarray
    genre_cdf: np.ndarray  # concatenated per-genre CDFs, genre g's segment offset by g
    genre_artist: np.ndarray
    global_cdf: np.ndarray
    # users (humans first, then bots)
    n_humans: int
    library: np.ndarray  # flat artist ids; segment = (user, genre slot)
    segment_start: np.ndarray
    segment_length: np.ndarray
    pace: np.ndarray  # per user, factor on track gaps (heavy users and bots skip through)
    # sessions, sorted by start time
    session_user: np.ndarray
    session_start: np.ndarray  # epoch seconds
    session_length: np.ndarray
    session_segment: np.ndarray  # library segment (-1 for bots)
    session_genre: np.ndarray
    p_mapped: float
    t0: int
    t1: int


def _draw_catalogue(rng: np.random.Generator, config: SynthConfig) -> dict[str, Any]:
    """Artists: genres, popularity (Zipf over a random ranking), releases and recordings,
    who MusicBrainz knows, and per-genre popularity CDFs."""
    n_artists, n_genres = config.artists, config.n_genres
    # Catalogue: every genre gets artists; popularity is Zipf over a random global ranking.
    artist_genre = (rng.permutation(n_artists) % n_genres).astype(np.int32)
    rank = rng.permutation(n_artists)
    popularity = 1.0 / (rank + 10.0) ** 1.05
    second = np.where(rng.random(n_artists) < 0.2, rng.integers(0, n_genres, n_artists), -1)
    # MusicBrainz knows most artists; the unknown ones are mostly in the long tail.
    unknown = rng.random(n_artists) < np.where(rank > 0.3 * n_artists, 0.12, 0.02)
    n_releases = np.minimum(1 + rng.geometric(0.45, n_artists), 12).astype(np.int64)
    release_start = group_starts(n_releases)[:-1]
    n_tracks = rng.integers(5, 15, int(n_releases.sum())).astype(np.int64)
    track_start = group_starts(n_tracks)[:-1]

    members_genre = np.concatenate([artist_genre, second[second >= 0]])
    members_artist = np.concatenate([np.arange(n_artists), np.flatnonzero(second >= 0)])
    members_weight = np.concatenate([popularity, 0.5 * popularity[second >= 0]])
    order = np.lexsort((members_artist, members_genre))
    members_genre, members_artist = members_genre[order], members_artist[order]
    members_weight = members_weight[order]
    per_genre = np.bincount(members_genre, minlength=n_genres)
    within = exclusive_group_cumsum(members_weight, per_genre) + members_weight
    genre_total = np.repeat(within[group_starts(per_genre)[1:] - 1], per_genre)
    genre_cdf = members_genre + within / genre_total
    genre_cdf[group_starts(per_genre)[1:] - 1] = np.arange(1, n_genres + 1)
    global_cdf = np.cumsum(popularity) / popularity.sum()
    global_cdf[-1] = 1.0

    return {
        "artist_genre": artist_genre,
        "genre_cdf": genre_cdf,
        "global_cdf": global_cdf,
        "members_artist": members_artist,
        "n_releases": n_releases,
        "n_tracks": n_tracks,
        "popularity": popularity,
        "rank": rank,
        "release_start": release_start,
        "second": second,
        "track_start": track_start,
        "unknown": unknown,
    }


def _draw_users(
    rng: np.random.Generator, config: SynthConfig, drawn: dict[str, Any]
) -> dict[str, Any]:
    """Humans and bots: listens per user, genre slots and weights, libraries of favourites."""
    n_genres = config.n_genres
    genre_cdf, members_artist = drawn["genre_cdf"], drawn["members_artist"]
    # Users: log-normal activity; 1-3 genres with Dirichlet weights; a personal library per
    # (user, genre) of popularity-weighted favourites, its size growing with activity.
    n_humans, n_bots = config.users, config.n_bots
    bot_listens = round(config.listens * config.bot_share) if n_bots else 0
    bot_listens = max(bot_listens, n_bots)
    human_listens = config.listens - bot_listens
    activity = rng.lognormal(0.0, 1.4, n_humans)
    human_n = 1 + _round_split(np.array([human_listens - n_humans]), activity, np.array([n_humans]))
    bot_n = (
        1 + _round_split(np.array([bot_listens - n_bots]), np.ones(n_bots), np.array([n_bots]))
        if n_bots
        else np.zeros(0, np.int64)
    )
    listens_per_user = np.concatenate([human_n, bot_n]).astype(np.int64)

    slots = 1 + np.minimum(rng.binomial(2, 0.35, n_humans), n_genres - 1)
    genre_prior = 1.0 / (np.arange(n_genres) + 3.0) ** 0.7
    genre_prior = rng.permutation(genre_prior / genre_prior.sum())
    # Slot genres: distinct per user, drawn by genre size (Gumbel top-k, vectorised).
    keys = np.log(genre_prior)[None, :] - np.log(-np.log(rng.random((n_humans, n_genres))))
    top = np.argsort(-keys, axis=1)[:, :3]
    if top.shape[1] < 3:  # fewer than three genres: the unused slots get weight 0 below
        top = np.pad(top, ((0, 0), (0, 3 - top.shape[1])), mode="edge")
    slot_weight = rng.dirichlet(np.ones(3) * 1.2, n_humans)
    slot_weight[np.arange(3)[None, :] >= slots[:, None]] = 0.0
    slot_weight[:, 0] += 0.3  # a main genre
    slot_weight /= slot_weight.sum(axis=1, keepdims=True)
    library_size = np.clip(np.rint(2.0 * human_n**0.6), 3, 3000).astype(np.int64)
    segment_length = np.where(
        slot_weight > 0, np.maximum(1, np.rint(library_size[:, None] * slot_weight)), 0
    ).astype(np.int64)
    segment_genre = top.astype(np.int64)
    flat_length = segment_length.ravel()
    entry_genre = np.repeat(segment_genre.ravel(), flat_length)
    library = members_artist[
        np.searchsorted(genre_cdf, entry_genre + rng.random(len(entry_genre)), side="right")
    ].astype(np.int32)
    segment_start = group_starts(flat_length)[:-1]

    return {
        "flat_length": flat_length,
        "library": library,
        "listens_per_user": listens_per_user,
        "n_bots": n_bots,
        "n_humans": n_humans,
        "segment_genre": segment_genre,
        "segment_start": segment_start,
        "slot_weight": slot_weight,
        "slots": slots,
    }


def _draw_sessions(
    rng: np.random.Generator, config: SynthConfig, drawn: dict[str, Any]
) -> dict[str, Any]:
    """Sessions per user: how many, how long, which library segment and genre each plays."""
    listens_per_user, n_bots, n_humans, segment_genre, slot_weight, slots = (
        drawn["listens_per_user"],
        drawn["n_bots"],
        drawn["n_humans"],
        drawn["segment_genre"],
        drawn["slot_weight"],
        drawn["slots"],
    )
    # Sessions: counts from activity; lengths split each user's listens exactly.
    n_users = n_humans + n_bots
    is_bot = np.arange(n_users) >= n_humans
    mean = np.where(is_bot, BOT_SESSION, MEAN_SESSION)
    n_sessions = np.clip(np.rint(listens_per_user / mean), 1, listens_per_user).astype(np.int64)
    session_user = np.repeat(np.arange(n_users, dtype=np.int32), n_sessions)
    extra = _round_split(
        listens_per_user - n_sessions, rng.exponential(1.0, len(session_user)), n_sessions
    )
    session_length = (1 + extra).astype(np.int64)
    cumulative_slot = np.cumsum(slot_weight, axis=1)
    human_sessions = session_user < n_humans
    u = rng.random(len(session_user))
    slot = np.zeros(len(session_user), dtype=np.int64)
    hs_user = session_user[human_sessions]
    slot[human_sessions] = np.minimum(
        (u[human_sessions, None] > cumulative_slot[hs_user, :2]).sum(axis=1), slots[hs_user] - 1
    )
    session_segment = np.where(human_sessions, session_user.astype(np.int64) * 3 + slot, -1)
    session_genre = np.where(
        human_sessions, segment_genre.ravel()[np.maximum(session_segment, 0)], -1
    )

    return {
        "is_bot": is_bot,
        "n_sessions": n_sessions,
        "n_users": n_users,
        "session_genre": session_genre,
        "session_length": session_length,
        "session_segment": session_segment,
        "session_user": session_user,
    }


def _lay_out_time(
    rng: np.random.Generator, config: SynthConfig, drawn: dict[str, Any]
) -> dict[str, Any]:
    """Each user's active window and the start of each session in it (``order``: the
    sessions sorted by start)."""
    is_bot, listens_per_user, n_sessions, n_users, session_length, session_user = (
        drawn["is_bot"],
        drawn["listens_per_user"],
        drawn["n_sessions"],
        drawn["n_users"],
        drawn["session_length"],
        drawn["session_user"],
    )
    # Time: each user is active in a window of the span; sessions are laid out in it with
    # exponential gaps. Heavy users and bots get a pace factor < 1 (skipping through tracks).
    t1 = int(config.end.timestamp())
    t0 = t1 - config.days * DAY
    span = t1 - t0
    join = t0 + (rng.beta(0.7, 2.0, n_users) * 0.8 * span).astype(np.int64)
    leave = np.where(
        rng.random(n_users) < 0.75, t1, join + (rng.uniform(0.2, 1.0, n_users) * (t1 - join))
    ).astype(np.int64)
    needed = listens_per_user * MAX_TRACK_SECONDS
    pace = np.clip(0.8 * (leave - join) / needed, 0.08, 1.0)
    pace[is_bot] = 0.08
    busy = np.ceil(needed * pace).astype(np.int64)
    bot_window = (busy * 1.05).astype(np.int64)
    join = np.where(
        is_bot,
        t0 + (rng.random(n_users) * np.maximum(span - bot_window, 0)).astype(np.int64),
        join,
    )
    leave = np.where(is_bot, join + bot_window, leave)
    join = np.where(leave - join < busy, np.maximum(t0, leave - busy), join)
    free = np.maximum(leave - join - busy, 0)
    reserved = np.ceil(session_length * MAX_TRACK_SECONDS * pace[session_user]).astype(np.int64)
    gaps = _round_split(free, rng.exponential(1.0, len(session_user)), n_sessions)
    session_start = (
        np.repeat(join, n_sessions)
        + exclusive_group_cumsum(reserved, n_sessions)
        + exclusive_group_cumsum(gaps, n_sessions)
        + gaps  # the gap before each session, the first included
    )
    order = np.argsort(session_start, kind="stable")

    return {"order": order, "pace": pace, "session_start": session_start, "t0": t0, "t1": t1}


def build_world(config: SynthConfig) -> World:
    # One random stream, drawn stage by stage in a fixed order (the same seed, the same world).
    rng = np.random.default_rng([config.seed, 0])
    n_artists = config.artists
    drawn = _draw_catalogue(rng, config)
    drawn |= _draw_users(rng, config, drawn)
    drawn |= _draw_sessions(rng, config, drawn)
    drawn |= _lay_out_time(rng, config, drawn)

    # Per-listen chance of a MusicBrainz mapping, so that about mbid_share of all listens have
    # MBIDs once the listens of artists MusicBrainz does not know are counted out.
    unknown_share = drawn["popularity"][drawn["unknown"]].sum() / drawn["popularity"].sum()
    p_mapped = min(1.0, config.mbid_share / max(1e-9, 1.0 - unknown_share))

    return World(
        config=config,
        artist_genre=drawn["artist_genre"],
        artist_second=drawn["second"].astype(np.int32),
        artist_mapped=~drawn["unknown"],
        **spellings(
            artist_names(n_artists, config.seed), ~drawn["unknown"], drawn["rank"], config.seed
        ),
        popular_artists=np.flatnonzero(drawn["rank"] < max(1, 0.3 * n_artists)),
        release_start=drawn["release_start"],
        n_releases=drawn["n_releases"],
        track_start=drawn["track_start"],
        n_tracks=drawn["n_tracks"],
        genre_cdf=drawn["genre_cdf"],
        genre_artist=drawn["members_artist"].astype(np.int32),
        global_cdf=drawn["global_cdf"],
        n_humans=drawn["n_humans"],
        library=drawn["library"],
        segment_start=drawn["segment_start"],
        segment_length=drawn["flat_length"],
        pace=drawn["pace"],
        # Compact types: at 100 M listens there are about 12 M sessions.
        session_user=drawn["session_user"][drawn["order"]],
        session_start=drawn["session_start"][drawn["order"]],
        session_length=drawn["session_length"][drawn["order"]].astype(np.int32),
        session_segment=drawn["session_segment"][drawn["order"]].astype(np.int32),
        session_genre=drawn["session_genre"][drawn["order"]].astype(np.int16),
        p_mapped=p_mapped,
        t0=drawn["t0"],
        t1=drawn["t1"],
    )

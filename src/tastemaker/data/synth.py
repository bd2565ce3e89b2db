"""Deterministic synthetic listening data in the ListenBrainz Parquet dump format.

``synthesize`` writes a dump directory exactly like ListenBrainz's "spark" listens dump
(``full-dump-1/N.parquet`` plus ``incremental-dump-2/0.parquet``, the schema of
``SPARK_LISTENS_SCHEMA``), chunk by chunk with ``pyarrow.parquet.ParquetWriter``, so 100 M
listens stream to disk in bounded memory. ``synthetic_interactions`` runs the same generator
straight into an ``Interactions`` (with per-listen events) for tests and demos.

What makes the data realistic enough to test recommenders on:

* power-law user activity (log-normal) and artist popularity (Zipf);
* latent taste communities: every artist belongs to one genre (some to a second), every user
  to one to three genres with their own weights; each user has a personal library of favourite
  artists drawn from those genres, so collaborative filtering has structure to find;
* listening sessions: several tracks a few minutes apart, one genre per session, album runs
  (consecutive tracks of one release), hours to days between sessions, about two years in all;
* an artist -> release -> recording hierarchy with deterministic MBIDs; about 15 % of listens
  are unmapped (names only, no MBIDs), partly for artists MusicBrainz does not know at all;
  their names are spelled as people submit them: lower case, without the accents of the
  MusicBrainz name, "and" for "&", with a guest credit ("A feat. B", "A & B", "A, B", "A x B");
  a few artists share a name with another (homonyms: ``synth.json`` counts them);
* a few bot accounts: thousands of listens a day of uniformly random artists;
* an incremental dump that repeats the listens of the last hours of the full dump (a
  ListenBrainz reader must count those once), and some listens submitted days late.

The same seed gives byte-identical files (the chunking is part of the data: keep
``chunk_rows`` fixed). ``synth.json`` beside the dumps records the parameters and counts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tastemaker.artifacts import atomic_directory
from tastemaker.data import synth_tags
from tastemaker.data.interactions import Interactions
from tastemaker.data.names import fold_many
from tastemaker.errors import UsageError

#: The ListenBrainz spark listens dump schema (``SPARK_LISTENS_SCHEMA`` upstream).
LISTENBRAINZ_SCHEMA = pa.schema(
    [
        pa.field("listened_at", pa.timestamp("ms"), nullable=False),
        pa.field("created", pa.timestamp("ms"), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("recording_msid", pa.string(), nullable=False),
        pa.field("artist_name", pa.string(), nullable=False),
        pa.field("artist_credit_id", pa.int64()),
        pa.field("release_name", pa.string()),
        pa.field("release_mbid", pa.string()),
        pa.field("recording_name", pa.string(), nullable=False),
        pa.field("recording_mbid", pa.string()),
        pa.field("artist_credit_mbids", pa.list_(pa.string())),
    ]
)

SUMMARY_FILE = "synth.json"
METADATA_FOLDER = "metadata"  # the synthetic tags, beside the dumps
# As ListenBrainz writes its dumps: zstd, dictionary-encoded columns (repeated names and ids).
PARQUET: dict = {"compression": "zstd", "use_dictionary": True}
# What synth.json says the folder is (a dump cannot carry a manifest: see artifacts).
DUMP_KIND = "synth"
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


def _wordlist(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ADJECTIVES = _wordlist(
    "Silver Electric Golden Velvet Hollow Crimson Paper Neon Quiet Wild Broken Frozen Burning "
    "Lunar Solar Purple Black White Scarlet Distant Midnight Northern Southern Western Eastern "
    "Hidden Lost Secret Sacred Savage Gentle Lonely Happy Strange Royal Cosmic Atomic Digital "
    "Analog Crystal Iron Copper Glass Stone Amber Blue Green Red Yellow Grey Pale Dark Bright "
    "Sleepy Restless Sonic Static Magnetic Tropical Arctic Desert Ocean Mountain Urban Rural "
    "Little Big Young Old New Modern Ancient Future Final First Last Second Endless Infinite"
)
_NOUNS = _wordlist(
    "Wolf Tiger Raven Fox Bear Owl Hawk Whale Shark Snake Horse Lion Falcon Crow Swan Moth "
    "River Mountain Valley Forest Ocean Desert Island Garden City Harbor Bridge Tower Castle "
    "Engine Machine Signal Radio Rocket Satellite Planet Comet Star Moon Sun Cloud Storm "
    "Thunder Rain Snow Fire Flame Smoke Shadow Ghost Dream Echo Mirror Crown Heart Rose Lily "
    "Orchid Pine Oak Willow Cedar Arrow Sword Shield Anchor Compass Lantern Candle Circle "
    "Square Spiral Wave Pulse Drum Bell Choir Parade Carnival Circus Temple Palace Kingdom"
)
_FIRST = _wordlist(
    "Anna Ben Clara David Emma Felix Grace Hugo Iris Jonas Kira Leo Maya Nina Oscar Paula "
    "Quinn Rosa Sam Tara Uma Victor Wanda Xavier Yara Zoe Aiko Bruno Chloe Dmitri Elena Farah "
    "Goran Hana Ivan Julia Kofi Lena Marco Noor Olga Pedro Rita Sven Tomas Ulla Vera Wim Yusuf"
)
_LAST = _wordlist(
    "Adams Berg Costa Diaz Eriksen Fischer Garcia Hansen Ito Jensen Kowalski Larsen Meyer "
    "Novak Okafor Petrov Quist Rossi Sato Tanaka Ullman Vargas Weber Xu Yilmaz Zeller Abbott "
    "Bauer Chen Dubois Evans Ferreira Gruber Horvat Ivanova Jovanovic Kim Lindqvist Moreau "
    "Nielsen Olsen Park Quintero Richter Schmidt Torres Ueda Vogel Wagner Young"
)
_WORDS = _wordlist(
    "Love Night Day Time Life Heart Dream Light Fire Rain Home Road Sky Sea Blue Gold Run "
    "Dance Fall Rise Hold Stay Go Back Down Up Away Again Alone Together Forever Never Always "
    "Tonight Tomorrow Yesterday Morning Evening Summer Winter Spring Autumn City Street Train "
    "Car Radio Song Voice Silence Noise Echo Shadow Ghost Angel Devil Money Gold Diamond Glass "
    "Paper Stone Water Wind Storm Thunder Sun Moon Star Planet Ocean River Mountain Desert "
    "Island Garden Window Door Wall Bridge Tower Kingdom Empire Revolution Machine Signal Wave"
)


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


# -- hashing and vectorised strings ---------------------------------------------------------


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A good 64-bit mixer (vectorised); wraps modulo 2**64 by design."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash(keys: np.ndarray, seed: int, kind: int) -> np.ndarray:
    salt = _splitmix64(np.array([seed * 1_000_003 + kind], dtype=np.uint64))[0]
    return _splitmix64(keys.astype(np.uint64) ^ salt)


# Two hex digits per byte value, as little-endian uint16 (first digit in the low byte).
_HEX_PAIRS = np.array(
    [ord(f"{i:02x}"[0]) | ord(f"{i:02x}"[1]) << 8 for i in range(256)], dtype="<u2"
)


def _fixed_width_strings(chars: np.ndarray) -> pa.StringArray:
    """An arrow string array from an (n, width) uint8 matrix of ASCII characters."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))]
    return pa.Array.from_buffers(pa.string(), n, buffers)


def uuids(keys: np.ndarray, seed: int, kind: int) -> pa.StringArray:
    """Deterministic version-4-looking UUID strings, one per integer key (no Python loop)."""
    n = len(keys)
    words = np.empty((n, 2), dtype=np.uint64)
    words[:, 0] = _hash(keys, seed, kind)
    words[:, 1] = _splitmix64(words[:, 0] ^ np.uint64(0xD1B54A32D192ED03))
    raw = words.view(np.uint8).reshape(n, 16)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = _HEX_PAIRS[raw].view(np.uint8).reshape(n, 32)
    chars = np.empty((n, 36), dtype=np.uint8)
    chars[:, [8, 13, 18, 23]] = ord("-")
    chars[:, 0:8] = digits[:, 0:8]
    chars[:, 9:13] = digits[:, 8:12]
    chars[:, 14:18] = digits[:, 12:16]
    chars[:, 19:23] = digits[:, 16:20]
    chars[:, 24:36] = digits[:, 20:32]
    return _fixed_width_strings(chars)


def _titles(keys: np.ndarray, seed: int, kind: int) -> pa.Array:
    """One to three capitalised words per key, e.g. 'Midnight Train' (vectorised)."""
    words = pa.array(_WORDS)
    h = _hash(keys, seed, kind)
    n_words = (h % np.uint64(7)).astype(np.int64)  # 0-1: one word, 2-4: two, 5-6: three
    parts = []
    for position in range(3):
        index = ((h >> np.uint64(8 + 12 * position)) % np.uint64(len(_WORDS))).astype(np.int64)
        word = words.take(pa.array(index))
        if position:
            present = n_words >= (2 if position == 1 else 5)
            word = pc.if_else(pa.array(present), word, pa.scalar(None, pa.string()))
        parts.append(word)
    return pc.binary_join_element_wise(*parts, " ", null_handling="skip")


def _artist_names(n: int, seed: int) -> list[str]:
    """Distinct, plausible artist names of several shapes, a deterministic function of the seed.

    A per-catalogue loop (not per listen): 200 k artists take a fraction of a second.
    """
    adjectives, nouns, first, last = _ADJECTIVES, _NOUNS, _FIRST, _LAST
    na, nf, nl = len(adjectives), len(first), len(last)
    shapes = (  # (share, size of the name space, name of code c)
        (
            0.2,
            len(adjectives) * len(nouns),
            lambda c: f"The {adjectives[c % na]} {nouns[c // na]}s",
        ),
        (0.2, len(adjectives) * len(nouns), lambda c: f"{adjectives[c % na]} {nouns[c // na]}"),
        (0.25, len(first) * len(last), lambda c: f"{first[c % nf]} {last[c // nf]}"),
        (
            0.1,
            len(adjectives) * len(nouns),
            lambda c: f"{adjectives[c % na]}{nouns[c // na].lower()}",
        ),
        (0.05, len(first) * len(adjectives), lambda c: f"DJ {first[c % nf]} {adjectives[c // nf]}"),
        (
            0.2,
            len(first) * len(last) * len(nouns),
            lambda c: f"{first[c % nf]} {last[(c // nf) % nl]} & the {nouns[c // (nf * nl)]}s",
        ),
    )
    shares = np.array([share for share, _, _ in shapes])
    rng = np.random.default_rng([seed, 2])
    shape_of = rng.choice(len(shapes), size=n, p=shares / shares.sum())
    names = [""] * n
    for k, (_, size, make) in enumerate(shapes):
        members = np.flatnonzero(shape_of == k)
        # An odd multiplier coprime with the space permutes it: distinct names, shuffled.
        mult = 2_654_435_761
        while np.gcd(mult, size) != 1:
            mult += 2
        start = int(rng.integers(0, size))
        for rank, artist in enumerate(members.tolist()):
            name = make((start + rank * mult) % size)
            names[artist] = name if rank < size else f"{name} {rank // size + 1}"
    return names


# Accented letters of some artists' names ("Wölf", "Émma"), and what the ASCII typing gives.
_ACCENTS = str.maketrans({"o": "ö", "e": "é", "a": "á", "u": "ü", "E": "É", "O": "Ö"})
ACCENTED_SHARE = 0.10
HOMONYM_SHARE = 0.005  # of popular mapped artists: a name another mapped artist also has
# Unmapped listens: credits with a guest ("A feat. B", "A & B", ...), the ASCII spelling of an
# accented name, "and" typed for "&".
CREDIT_SHARE = 0.08
PLAIN_SHARE = 0.5
AND_SHARE = 0.10
_CREDIT_JOINERS = (" feat. ", " ft. ", " & ", ", ", " x ")


def _spellings(names: list[str], mapped: np.ndarray, rank: np.ndarray, seed: int) -> dict:
    """Canonical and ASCII names per artist: a share gets accents, and a few popular mapped
    artists take the name of another mapped artist (homonyms, as MusicBrainz has: the identity
    rule must leave such names apart). Hash-chosen: the seeded listens stay as they were."""
    n = len(names)
    keys = np.arange(n)
    h = _hash(keys, seed, _SPELLING)
    accented = (h % np.uint64(1000)) < np.uint64(ACCENTED_SHARE * 1000)
    popular = mapped & (rank < 0.3 * n)
    taker = popular & (((h >> np.uint64(16)) % np.uint64(100_000)) < HOMONYM_SHARE * 100_000)
    givers = np.flatnonzero(popular & ~taker)
    plain = list(names)
    if len(givers):
        for artist in np.flatnonzero(taker).tolist():  # a handful: a loop is fine
            giver = int(givers[int(_hash(np.array([artist]), seed, _SPELLING)[0] % len(givers))])
            plain[artist] = names[giver]
    else:
        taker[:] = False
    canonical = [
        name.translate(_ACCENTS) if accent else name
        for name, accent in zip(plain, accented.tolist(), strict=True)
    ]
    # Shared as the identity rule sees names: folded ("Royal Whale" and "Róyal Whálé" are one).
    shared = np.array(fold_many(canonical), dtype=object)
    _, inverse, counts = np.unique(shared, return_inverse=True, return_counts=True)
    return {
        "artist_names": pa.array(canonical, pa.string()),
        "artist_plain_names": pa.array(plain, pa.string()),
        "artist_accented": accented & (np.array(canonical, dtype=object) != np.array(plain)),
        "homonyms": int((counts[inverse] > 1).sum()),
    }


# -- the world: catalogue, users, sessions ---------------------------------------------------


def _group_starts(lengths: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    return starts


def _exclusive_group_cumsum(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per group (consecutive runs of the given lengths): sum of the earlier values in it."""
    total = np.cumsum(values)
    exclusive = total - values
    first = _group_starts(lengths)[:-1]
    return exclusive - np.repeat(exclusive[first], lengths)


def _round_split(totals: np.ndarray, weights: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Split each group's integer total over its members in proportion to weights, exactly.

    Cumulative rounding: the running share is rounded, so parts are >= 0 and sum to the total.
    """
    inclusive = _exclusive_group_cumsum(weights, lengths) + weights
    group_sum = np.repeat(inclusive[_group_starts(lengths)[1:] - 1], lengths)
    running = np.rint(inclusive / group_sum * np.repeat(totals, lengths)).astype(np.int64)
    return running - _previous_in_group(running, lengths)


def _previous_in_group(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    shifted = np.concatenate([np.zeros(1, values.dtype), values[:-1]])
    shifted[_group_starts(lengths)[:-1]] = 0
    return shifted


@dataclass
class _World:
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


def _build_world(config: SynthConfig) -> _World:
    rng = np.random.default_rng([config.seed, 0])
    n_artists, n_genres = config.artists, config.n_genres

    # Catalogue: every genre gets artists; popularity is Zipf over a random global ranking.
    artist_genre = (rng.permutation(n_artists) % n_genres).astype(np.int32)
    rank = rng.permutation(n_artists)
    popularity = 1.0 / (rank + 10.0) ** 1.05
    second = np.where(rng.random(n_artists) < 0.2, rng.integers(0, n_genres, n_artists), -1)
    # MusicBrainz knows most artists; the unknown ones are mostly in the long tail.
    unknown = rng.random(n_artists) < np.where(rank > 0.3 * n_artists, 0.12, 0.02)
    n_releases = np.minimum(1 + rng.geometric(0.45, n_artists), 12).astype(np.int64)
    release_start = _group_starts(n_releases)[:-1]
    n_tracks = rng.integers(5, 15, int(n_releases.sum())).astype(np.int64)
    track_start = _group_starts(n_tracks)[:-1]

    members_genre = np.concatenate([artist_genre, second[second >= 0]])
    members_artist = np.concatenate([np.arange(n_artists), np.flatnonzero(second >= 0)])
    members_weight = np.concatenate([popularity, 0.5 * popularity[second >= 0]])
    order = np.lexsort((members_artist, members_genre))
    members_genre, members_artist = members_genre[order], members_artist[order]
    members_weight = members_weight[order]
    per_genre = np.bincount(members_genre, minlength=n_genres)
    within = _exclusive_group_cumsum(members_weight, per_genre) + members_weight
    genre_total = np.repeat(within[_group_starts(per_genre)[1:] - 1], per_genre)
    genre_cdf = members_genre + within / genre_total
    genre_cdf[_group_starts(per_genre)[1:] - 1] = np.arange(1, n_genres + 1)
    global_cdf = np.cumsum(popularity) / popularity.sum()
    global_cdf[-1] = 1.0

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
    segment_start = _group_starts(flat_length)[:-1]

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
        + _exclusive_group_cumsum(reserved, n_sessions)
        + _exclusive_group_cumsum(gaps, n_sessions)
        + gaps  # the gap before each session, the first included
    )
    order = np.argsort(session_start, kind="stable")

    # Per-listen chance of a MusicBrainz mapping, so that about mbid_share of all listens have
    # MBIDs once the listens of artists MusicBrainz does not know are counted out.
    unknown_share = popularity[unknown].sum() / popularity.sum()
    p_mapped = min(1.0, config.mbid_share / max(1e-9, 1.0 - unknown_share))

    return _World(
        config=config,
        artist_genre=artist_genre,
        artist_second=second.astype(np.int32),
        artist_mapped=~unknown,
        **_spellings(_artist_names(n_artists, config.seed), ~unknown, rank, config.seed),
        popular_artists=np.flatnonzero(rank < max(1, 0.3 * n_artists)),
        release_start=release_start,
        n_releases=n_releases,
        track_start=track_start,
        n_tracks=n_tracks,
        genre_cdf=genre_cdf,
        genre_artist=members_artist.astype(np.int32),
        global_cdf=global_cdf,
        n_humans=n_humans,
        library=library,
        segment_start=segment_start,
        segment_length=flat_length,
        pace=pace,
        # Compact types: at 100 M listens there are about 12 M sessions.
        session_user=session_user[order],
        session_start=session_start[order],
        session_length=session_length[order].astype(np.int32),
        session_segment=session_segment[order].astype(np.int32),
        session_genre=session_genre[order].astype(np.int16),
        p_mapped=p_mapped,
        t0=t0,
        t1=t1,
    )


# -- listens, chunk by chunk -------------------------------------------------------------------

(
    _MSID,
    _RECORDING,
    _RELEASE,
    _ARTIST,
    _COLLAB,
    _RELEASE_TITLE,
    _RECORDING_TITLE,
    _MAPPING,
    _SPELLING,
    _VARIANT,
) = range(1, 11)


@dataclass
class _Listens:
    """A chunk of listens in integer form (strings are made only when writing)."""

    user: np.ndarray
    t: np.ndarray  # listened_at, epoch seconds
    created: np.ndarray
    artist: np.ndarray
    release: np.ndarray
    recording: np.ndarray
    mapped: np.ndarray  # has MBIDs (MusicBrainz mapping found)
    lowercase: np.ndarray  # unmapped listen whose artist name was typed in lower case
    no_release: np.ndarray  # unmapped listen without a release name

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: np.ndarray | slice) -> _Listens:
        return _Listens(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    @staticmethod
    def concat(a: _Listens, b: _Listens) -> _Listens:
        return _Listens(
            *(
                np.concatenate([getattr(a, f.name), getattr(b, f.name)])
                for f in dataclasses.fields(a)
            )
        )


def _generate(world: _World, lo: int, hi: int, chunk: int) -> _Listens:
    """The listens of sessions ``lo:hi`` (vectorised; random state derived from the chunk)."""
    config = world.config
    rng = np.random.default_rng([config.seed, 1, chunk])
    lengths = world.session_length[lo:hi].astype(np.int64)
    n = int(lengths.sum())
    session = np.repeat(np.arange(hi - lo), lengths)
    index = np.arange(n)
    position = index - np.repeat(_group_starts(lengths)[:-1], lengths)
    user = world.session_user[lo:hi][session]
    bot = user >= world.n_humans

    step = (rng.integers(MIN_TRACK_SECONDS, MAX_TRACK_SECONDS + 1, n) * world.pace[user]).astype(
        np.int64
    )
    t = world.session_start[lo:hi][session] + _exclusive_group_cumsum(step, lengths)

    segment = np.maximum(world.session_segment[lo:hi][session], 0)
    genre = np.maximum(world.session_genre[lo:hi][session], 0)
    seg_length = world.segment_length[segment]
    pick = np.minimum((seg_length * rng.random(n) ** 2.2).astype(np.int64), seg_length - 1)
    from_library = world.library[world.segment_start[segment] + np.maximum(pick, 0)]
    from_genre = world.genre_artist[
        np.searchsorted(world.genre_cdf, genre + rng.random(n), side="right")
    ]
    from_all = np.minimum(
        np.searchsorted(world.global_cdf, rng.random(n), side="right"), config.artists - 1
    )
    source = rng.random(n)
    artist = np.where(
        source < LIBRARY_SHARE,
        from_library,
        np.where(source < LIBRARY_SHARE + GENRE_SHARE, from_genre, from_all),
    )
    artist = np.where(bot, rng.integers(0, config.artists, n), artist).astype(np.int64)
    release = world.release_start[artist] + (world.n_releases[artist] * rng.random(n) ** 2).astype(
        np.int64
    )
    track = (world.n_tracks[release] * rng.random(n) ** 1.5).astype(np.int64)

    # Album runs: a listen that does not pick anew plays the next track of the current release.
    fresh = (position == 0) | (rng.random(n) >= ALBUM_RUN) | bot
    anchor = np.maximum.accumulate(np.where(fresh, index, 0))
    artist, release = artist[anchor], release[anchor]
    track = (track[anchor] + index - anchor) % world.n_tracks[release]
    recording = world.track_start[release] + track

    # The mapping is text matching: a recording maps for everybody or for nobody.
    mapped_recording = _hash(recording, config.seed, _MAPPING) < np.uint64(
        min(world.p_mapped, 1.0) * float(2**64 - 1)
    )
    mapped = world.artist_mapped[artist] & mapped_recording
    lowercase = ~mapped & (rng.random(n) < 0.15)
    no_release = ~mapped & (rng.random(n) < 0.25)
    delay = rng.integers(0, 30, n)
    late = rng.random(n) < 0.02  # offline players submit hours to weeks later
    delay = np.where(late, rng.integers(3600, 14 * DAY, n), delay)
    return _Listens(
        user=user.astype(np.int64),
        t=t,
        created=t + delay,
        artist=artist,
        release=release,
        recording=recording,
        mapped=mapped,
        lowercase=lowercase,
        no_release=no_release,
    )


def _chunks(world: _World) -> Iterator[_Listens]:
    """All listens in ``listened_at`` order, about ``chunk_rows`` at a time.

    Sessions are generated in start order; listens of sessions still running when the next
    chunk's first session starts are carried over, so the order is global, not per chunk.
    """
    n_sessions = len(world.session_length)
    ends = np.cumsum(world.session_length, dtype=np.int64)
    cuts = np.searchsorted(
        ends, np.arange(world.config.chunk_rows, ends[-1], world.config.chunk_rows)
    )
    bounds = np.unique(np.concatenate([[0], cuts + 1, [n_sessions]]))
    bounds = bounds[bounds <= n_sessions]
    carry: _Listens | None = None
    for chunk, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        listens = _generate(world, int(lo), int(hi), chunk)
        if carry is not None:
            listens = _Listens.concat(carry, listens)
        listens = listens.take(np.lexsort((listens.user, listens.t)))
        if hi < n_sessions:
            split = int(np.searchsorted(listens.t, world.session_start[hi], side="left"))
            carry = listens.take(slice(split, None))
            listens = listens.take(slice(0, split))
        if len(listens):
            yield listens


def _unmapped_spelling(world: _World, listens: _Listens) -> pa.Array:
    """The artist name of each listen: MusicBrainz's for mapped ones; for unmapped ones, as
    submitted: sometimes with a guest credit (a popular artist), the ASCII spelling of an
    accented name, "and" for "&" (lower case is applied later)."""
    seed = world.config.seed
    unmapped = ~listens.mapped
    h = _hash(listens.recording * 8191 + listens.t, seed, _VARIANT)

    def share(shift: int, p: float) -> np.ndarray:
        return ((h >> np.uint64(shift)) % np.uint64(10_000)) < np.uint64(round(p * 10_000))

    artist = pa.array(listens.artist)
    plain = unmapped & world.artist_accented[listens.artist] & share(0, PLAIN_SHARE)
    name = pc.if_else(
        pa.array(plain), world.artist_plain_names.take(artist), world.artist_names.take(artist)
    )
    spelled_and = pa.array(unmapped & share(14, AND_SHARE))
    name = pc.if_else(spelled_and, pc.replace_substring(name, " & ", " and "), name)
    credit = unmapped & share(28, CREDIT_SHARE)
    # A popular guest: its own listens put its name in the data, as a real guest's would.
    popular = world.popular_artists
    guest = popular[((h >> np.uint64(42)) % np.uint64(len(popular))).astype(np.int64)]
    credit &= guest != listens.artist
    if not credit.any():
        return name
    joiner = np.array(_CREDIT_JOINERS)[((h >> np.uint64(59)) % np.uint64(5)).astype(np.int64)]
    credited = pc.binary_join_element_wise(
        name, world.artist_names.take(pa.array(guest)), pa.array(joiner)
    )
    return pc.if_else(pa.array(credit), credited, name)


def _to_arrow(world: _World, listens: _Listens) -> pa.Table:
    """ListenBrainz dump columns for a chunk of listens."""
    seed, n_artists = world.config.seed, world.config.artists
    n = len(listens)
    null = pa.scalar(None, pa.string())
    mapped = pa.array(listens.mapped)

    h = _hash(listens.recording, seed, _COLLAB)
    collab = listens.mapped & (h % np.uint64(100) < np.uint64(6)) & (n_artists > 1)
    partner = (
        listens.artist
        + 1
        + ((h >> np.uint64(8)) % np.uint64(max(n_artists - 1, 1))).astype(np.int64)
    ) % n_artists
    collab &= world.artist_mapped[partner]
    primary = _unmapped_spelling(world, listens)
    joiner = pa.array(np.where((h >> np.uint64(40)) % np.uint64(2) == 0, " & ", " feat. "))
    credited = pc.binary_join_element_wise(
        primary, world.artist_names.take(pa.array(partner)), joiner
    )
    artist_name = pc.if_else(pa.array(collab), credited, primary)
    artist_name = pc.if_else(pa.array(listens.lowercase), pc.utf8_lower(artist_name), artist_name)
    credit_id = np.where(collab, 10_000_000 + listens.recording, 1 + listens.artist)

    per_row = listens.mapped.astype(np.int32) * (1 + collab.astype(np.int32))
    offsets = _group_starts(per_row).astype(np.int32)
    owner = np.repeat(np.arange(n), per_row)
    second = np.arange(len(owner)) - offsets[owner] == 1
    credit_keys = np.where(second, partner[owner], listens.artist[owner])
    credit_mbids = pa.ListArray.from_arrays(
        pa.array(offsets),
        uuids(credit_keys, seed, _ARTIST),
        mask=pa.array(~listens.mapped),
    )
    variant = listens.lowercase.astype(np.int64) + 2 * listens.no_release.astype(np.int64)
    release_name = _titles(listens.release, seed, _RELEASE_TITLE)
    return pa.Table.from_arrays(
        [
            pa.array((listens.t * 1000).astype("datetime64[ms]")),
            pa.array((listens.created * 1000).astype("datetime64[ms]")),
            pa.array(listens.user + 1, pa.int64()),
            uuids(listens.recording * 4 + variant, seed, _MSID),
            artist_name,
            pa.array(credit_id, pa.int64(), mask=~listens.mapped),
            pc.if_else(pa.array(listens.no_release), null, release_name),
            pc.if_else(mapped, uuids(listens.release, seed, _RELEASE), null),
            _titles(listens.recording, seed, _RECORDING_TITLE),
            pc.if_else(mapped, uuids(listens.recording, seed, _RECORDING), null),
            credit_mbids,
        ],
        schema=LISTENBRAINZ_SCHEMA,
    )


# -- writing dumps -----------------------------------------------------------------------------


class _DumpWriter:
    """One dump folder of ``N.parquet`` files, each closed after about ``rows_per_file`` rows."""

    def __init__(self, folder: Path, rows_per_file: int, row_group: int) -> None:
        self.folder = folder
        self.rows_per_file = rows_per_file
        self.row_group = row_group
        self.files: list[str] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._file_rows = 0
        folder.mkdir(parents=True)

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self._writer is not None and self._file_rows >= self.rows_per_file:
            self._writer.close()
            self._writer = None
        if self._writer is None:
            name = f"{len(self.files)}.parquet"
            self.files.append(name)
            self._writer = pq.ParquetWriter(self.folder / name, LISTENBRAINZ_SCHEMA, **PARQUET)
            self._file_rows = 0
        self._writer.write_table(table, row_group_size=self.row_group)
        self._file_rows += table.num_rows
        self.rows += table.num_rows

    def close(self, start: int, end: int) -> None:
        if self._writer is not None:
            self._writer.close()
        if not self.files:  # an empty dump still has a (valid, empty) file
            pq.write_table(LISTENBRAINZ_SCHEMA.empty_table(), self.folder / "0.parquet", **PARQUET)
            self.files.append("0.parquet")
        for name, text in (
            ("COPYING", "Synthetic listens generated by tastemaker; free to use for any purpose."),
            ("SCHEMA_SEQUENCE", "1"),
            ("START_TIMESTAMP", _dump_time(start)),
            ("END_TIMESTAMP", _dump_time(end)),
        ):
            (self.folder / name).write_text(text + "\n")


def _artist_mbids(world: _World) -> pl.Series:
    return pl.Series(uuids(np.arange(world.config.artists), world.config.seed, _ARTIST))


def _write_tags(folder: Path, world: _World) -> dict[str, int | str]:
    """The synthetic tags beside the dump (``synth_tags``), for ``ingest --metadata``."""
    tags = synth_tags.artist_tags(world)
    assigned = synth_tags.assignments(world, tags)
    synth_tags.write_musicbrainz(folder / "artist.tar.xz", world, tags, _artist_mbids(world))
    synth_tags.write_hetrec(folder / "hetrec", world, assigned)
    return {
        "artist_tag_rows": tags.height,
        "artists_tagged": int(tags["artist"].n_unique()),
        "assignments": assigned.height,
        "taggers": int(assigned["user"].n_unique()),
        "files": f"{METADATA_FOLDER}/artist.tar.xz, {METADATA_FOLDER}/hetrec/",
    }


def _dump_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def synthesize(
    out: str | Path,
    users: int = 2000,
    artists: int = 5000,
    listens: int = 1_000_000,
    seed: int = 0,
    bots: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options,
) -> Path:
    """Write a synthetic ListenBrainz Parquet dump directory at ``out`` and return its path.

    ``out/full-dump-1/N.parquet`` holds every listen created before the last
    ``incremental_days``; ``out/incremental-dump-2/0.parquet`` the rest plus a repeat of the
    last ``overlap_hours`` of the full dump (duplicates a reader must drop). Further knobs:
    the fields of ``SynthConfig``. ``progress(done, total)`` is called after every chunk.
    The directory appears atomically, with ``synth.json`` describing what was generated.
    """
    config = SynthConfig(
        users=users, artists=artists, listens=listens, seed=seed, bots=bots, **options
    )
    world = _build_world(config)
    inc_start = world.t1 - int(config.incremental_days * DAY)
    overlap_start = inc_start - int(config.overlap_hours * 3600)
    incremental = config.incremental_days > 0
    out = Path(out)
    done = mapped = 0
    listened = np.zeros(config.artists, dtype=bool)  # artists with a listen (first credit)
    with atomic_directory(out, kind=DUMP_KIND) as tmp:
        full = _DumpWriter(tmp / "full-dump-1", config.rows_per_file, config.chunk_rows)
        inc = (
            _DumpWriter(tmp / "incremental-dump-2", config.rows_per_file, config.chunk_rows)
            if incremental
            else None
        )
        duplicates = 0
        for chunk in _chunks(world):
            table = _to_arrow(world, chunk)
            if inc is None:
                full.write(table)
            else:
                full.write(table.filter(pa.array(chunk.created < inc_start)))
                in_inc = chunk.created >= overlap_start
                duplicates += int((in_inc & (chunk.created < inc_start)).sum())
                rows = np.flatnonzero(in_inc)
                rows = rows[np.argsort(chunk.created[rows], kind="stable")]
                inc.write(table.take(pa.array(rows)))
            done += len(chunk)
            mapped += int(chunk.mapped.sum())
            listened[chunk.artist] = True
            if progress is not None:
                progress(done, config.listens)
        tag_counts = _write_tags(tmp / METADATA_FOLDER, world)
        full.close(world.t0, inc_start if incremental else world.t1)
        if inc is not None:
            inc.close(overlap_start, world.t1 + 14 * DAY)
        summary = {
            "generator": "tastemaker synth",
            "config": {
                **dataclasses.asdict(config),
                "end": config.end.isoformat(),
                "bots": config.n_bots,
                "genres": config.n_genres,
            },
            "listens": done,
            "rows": {"full": full.rows, "incremental": inc.rows if inc else 0},
            "duplicates": duplicates,
            "users": config.users + config.n_bots,
            "bot_user_ids": [config.users + 1 + i for i in range(config.n_bots)],
            "artists": config.artists,
            "artists_listened": int(listened.sum()),
            "homonyms": world.homonyms,
            "tags": tag_counts,
            "releases": int(world.n_releases.sum()),
            "recordings": int(world.n_tracks.sum()),
            "mbid_share": round(mapped / max(done, 1), 4),
            "start": _dump_time(world.t0),
            "end": _dump_time(world.t1),
            "files": {
                "full-dump-1": full.files,
                **({"incremental-dump-2": inc.files} if inc else {}),
            },
        }
        (tmp / SUMMARY_FILE).write_text(json.dumps({"kind": DUMP_KIND, **summary}, indent=2) + "\n")
    return out


def synthetic_listens(
    users: int = 500, artists: int = 1000, listens: int = 100_000, seed: int = 0, **options
) -> pl.DataFrame:
    """The generator's listens (no dump split, no duplicates) in the canonical listens schema."""
    from tastemaker.data.listens import conform

    world = _build_world(
        SynthConfig(users=users, artists=artists, listens=listens, seed=seed, **options)
    )
    tables = [_to_arrow(world, chunk) for chunk in _chunks(world)]
    frame = pl.from_arrow(pa.concat_tables(tables))
    assert isinstance(frame, pl.DataFrame)  # from a table, not an array
    first_credit = pl.col("artist_credit_mbids").list.first()
    return conform(
        frame.lazy().select(
            pl.col("user_id").cast(pl.Utf8).alias("user"),
            pl.col("listened_at").dt.replace_time_zone("UTC"),
            first_credit.alias("artist_id"),
            "artist_name",
            first_credit.alias("artist_mbid"),
            "release_name",
            "release_mbid",
            "recording_name",
            "recording_mbid",
            "recording_msid",
        )
    ).collect()


def synthetic_interactions(
    users: int = 500,
    artists: int = 1000,
    listens: int = 100_000,
    seed: int = 0,
    level: str = "artist",
    tags: bool = False,
    **options,
) -> Interactions:
    """The same generator straight to an ``Interactions`` with per-listen events (no disk);
    ``tags``: with the synthetic tags attached, as ``ingest --metadata`` of the dump's
    ``metadata/`` files attaches them."""
    from tastemaker.data.listens import interactions_from_listens

    frame = synthetic_listens(users, artists, listens, seed, **options)
    data = interactions_from_listens(
        frame.lazy(),
        level=level,
        source={
            "format": "synth",
            "paths": [],
            "synth": {"users": users, "artists": artists, "listens": listens, "seed": seed},
        },
    )
    if not tags:
        return data
    from tastemaker.data.metadata.attach import attach_rows

    world = _build_world(
        SynthConfig(users=users, artists=artists, listens=listens, seed=seed, **options)
    )
    artist_tags = synth_tags.artist_tags(world)
    assigned = synth_tags.assignments(world, artist_tags)
    sources = synth_tags.metadata_rows(world, artist_tags, assigned, _artist_mbids(world))
    return attach_rows(data, sources)

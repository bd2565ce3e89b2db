"""Listens, chunk by chunk (``synth``): the world's sessions played out as integer arrays,
then each chunk's ListenBrainz dump columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tastemaker.data.synth_names import (
    AND_SHARE,
    ARTIST_KIND,
    COLLAB_KIND,
    CREDIT_JOINERS,
    CREDIT_SHARE,
    MAPPING_KIND,
    MSID_KIND,
    PLAIN_SHARE,
    RECORDING_KIND,
    RECORDING_TITLE_KIND,
    RELEASE_KIND,
    RELEASE_TITLE_KIND,
    VARIANT_KIND,
    hash_keys,
    titles,
    uuids,
)
from tastemaker.data.synth_world import (
    ALBUM_RUN,
    DAY,
    GENRE_SHARE,
    LIBRARY_SHARE,
    MAX_TRACK_SECONDS,
    MIN_TRACK_SECONDS,
    World,
    exclusive_group_cumsum,
    group_starts,
)

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


def _generate(world: World, lo: int, hi: int, chunk: int) -> _Listens:
    """The listens of sessions ``lo:hi`` (vectorised; random state derived from the chunk)."""
    config = world.config
    rng = np.random.default_rng([config.seed, 1, chunk])
    lengths = world.session_length[lo:hi].astype(np.int64)
    n = int(lengths.sum())
    session = np.repeat(np.arange(hi - lo), lengths)
    index = np.arange(n)
    position = index - np.repeat(group_starts(lengths)[:-1], lengths)
    user = world.session_user[lo:hi][session]
    bot = user >= world.n_humans

    step = (rng.integers(MIN_TRACK_SECONDS, MAX_TRACK_SECONDS + 1, n) * world.pace[user]).astype(
        np.int64
    )
    t = world.session_start[lo:hi][session] + exclusive_group_cumsum(step, lengths)

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
    mapped_recording = hash_keys(recording, config.seed, MAPPING_KIND) < np.uint64(
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


def chunks(world: World) -> Iterator[_Listens]:
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


def _unmapped_spelling(world: World, listens: _Listens) -> pa.Array:
    """The artist name of each listen: MusicBrainz's for mapped ones; for unmapped ones, as
    submitted: sometimes with a guest credit (a popular artist), the ASCII spelling of an
    accented name, "and" for "&" (lower case is applied later)."""
    seed = world.config.seed
    unmapped = ~listens.mapped
    h = hash_keys(listens.recording * 8191 + listens.t, seed, VARIANT_KIND)

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
    joiner = np.array(CREDIT_JOINERS)[((h >> np.uint64(59)) % np.uint64(5)).astype(np.int64)]
    credited = pc.binary_join_element_wise(
        name, world.artist_names.take(pa.array(guest)), pa.array(joiner)
    )
    return pc.if_else(pa.array(credit), credited, name)


def to_arrow(world: World, listens: _Listens) -> pa.Table:
    """ListenBrainz dump columns for a chunk of listens."""
    seed, n_artists = world.config.seed, world.config.artists
    n = len(listens)
    null = pa.scalar(None, pa.string())
    mapped = pa.array(listens.mapped)

    h = hash_keys(listens.recording, seed, COLLAB_KIND)
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
    offsets = group_starts(per_row).astype(np.int32)
    owner = np.repeat(np.arange(n), per_row)
    second = np.arange(len(owner)) - offsets[owner] == 1
    credit_keys = np.where(second, partner[owner], listens.artist[owner])
    credit_mbids = pa.ListArray.from_arrays(
        pa.array(offsets),
        uuids(credit_keys, seed, ARTIST_KIND),
        mask=pa.array(~listens.mapped),
    )
    variant = listens.lowercase.astype(np.int64) + 2 * listens.no_release.astype(np.int64)
    release_name = titles(listens.release, seed, RELEASE_TITLE_KIND)
    return pa.Table.from_arrays(
        [
            pa.array((listens.t * 1000).astype("datetime64[ms]")),
            pa.array((listens.created * 1000).astype("datetime64[ms]")),
            pa.array(listens.user + 1, pa.int64()),
            uuids(listens.recording * 4 + variant, seed, MSID_KIND),
            artist_name,
            pa.array(credit_id, pa.int64(), mask=~listens.mapped),
            pc.if_else(pa.array(listens.no_release), null, release_name),
            pc.if_else(mapped, uuids(listens.release, seed, RELEASE_KIND), null),
            titles(listens.recording, seed, RECORDING_TITLE_KIND),
            pc.if_else(mapped, uuids(listens.recording, seed, RECORDING_KIND), null),
            credit_mbids,
        ],
        schema=LISTENBRAINZ_SCHEMA,
    )

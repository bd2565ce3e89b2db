"""Synthetic tags: what MusicBrainz and Last.fm users say about the synthetic artists.

Two kinds, as real data has them, both seeded and drawn from the generator's taste groups
(genres), so that tags carry the same structure the listening does:

* per artist (``artist_tags``): its genre's name (a genre, as MusicBrainz ``genres``), its
  second genre's where it has one, and 2-5 descriptive tags from the 6 its genre favours,
  now and then one from anywhere (noise); vote counts fall with the tag's place. Only
  artists MusicBrainz knows have them (``world.artist_mapped``);
* per user (``assignments``): about a third of the listeners tag a few artists of their own
  library, mostly with that artist's tags, sometimes with a word of their own (as HetRec's
  ``user_taggedartists.dat`` has them), in a year of the dump's span.

``synth.synthesize`` writes them beside the dump (``metadata/artist.tar.xz`` in MusicBrainz's
JSON dump format, ``metadata/hetrec/`` in HetRec 2K's), for ``ingest --metadata``;
``synth.synthetic_interactions(tags=True)`` attaches them without files.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tastemaker.data.metadata.readers import FACT_SCHEMA, TAG_SCHEMA, MetadataRows, conform

if TYPE_CHECKING:  # typing only
    from tastemaker.data.synth_world import World

GENRE_NAMES = (
    "shoegaze", "dream pop", "post-rock", "techno", "house", "ambient", "jazz", "soul",
    "funk", "hip hop", "trap", "grime", "punk", "post-punk", "hardcore", "metal", "doom metal",
    "black metal", "folk", "indie folk", "country", "bluegrass", "blues", "reggae", "dub",
    "ska", "synthpop", "new wave", "darkwave", "industrial", "electro", "drum and bass",
    "dubstep", "garage rock", "psychedelic rock", "krautrock", "prog rock", "math rock",
    "emo", "britpop", "j-pop", "k-pop", "city pop", "bossa nova", "samba", "afrobeat",
    "highlife", "flamenco", "classical", "minimalism",
)  # fmt: skip
DESCRIPTORS = (
    "melancholic", "energetic", "female vocalists", "male vocalists", "instrumental", "lo-fi",
    "90s", "00s", "80s", "live", "acoustic", "experimental", "catchy", "dark", "chill",
    "beautiful", "underrated", "atmospheric", "noisy", "groovy", "romantic", "political",
    "summer", "night", "dance", "heavy", "mellow", "epic", "weird", "classic",
)  # fmt: skip
FAVOURED = 6  # descriptive tags a genre favours
NOISE_SHARE = 0.1  # of an artist's descriptive tags: from anywhere
TAGGER_SHARE = 0.33  # of listeners who tag anything
OWN_WORD_SHARE = 0.15  # of assignments: a word of the user's own, not the artist's tags
MAX_ASSIGNMENTS = 40  # per tagger
_STREAM = 7  # random stream of tags (the world uses 0, listens their chunks)


def genre_tag_names(n_genres: int) -> list[str]:
    """Each genre's tag name (beyond the list: "genre N")."""
    return [GENRE_NAMES[g] if g < len(GENRE_NAMES) else f"genre {g + 1}" for g in range(n_genres)]


def artist_tags(world: World) -> pl.DataFrame:
    """(artist, tag, count, genre) per tag of each artist MusicBrainz knows."""
    rng = np.random.default_rng([world.config.seed, _STREAM, 0])
    n_artists, n_genres = len(world.artist_genre), world.config.n_genres
    genres = np.asarray(genre_tag_names(n_genres), dtype=object)
    favoured = np.stack([rng.permutation(len(DESCRIPTORS))[:FAVOURED] for _ in range(n_genres)])
    # The genre tag leads; a second genre gets a third of its votes.
    votes = rng.integers(20, 200, n_artists)
    parts = [
        pl.DataFrame(
            {
                "artist": np.arange(n_artists),
                "tag": genres[world.artist_genre],
                "count": votes,
                "genre": True,
            }
        ),
        pl.DataFrame(
            {
                "artist": np.flatnonzero(world.artist_second >= 0),
                "tag": genres[world.artist_second[world.artist_second >= 0]],
                "count": votes[world.artist_second >= 0] // 3 + 1,
                "genre": True,
            }
        ),
    ]
    per_artist = rng.integers(2, 6, n_artists)
    owner = np.repeat(np.arange(n_artists), per_artist)
    place = np.arange(len(owner)) - np.repeat(np.cumsum(per_artist) - per_artist, per_artist)
    word = favoured[world.artist_genre[owner], rng.integers(0, FAVOURED, len(owner))]
    noise = rng.random(len(owner)) < NOISE_SHARE
    word = np.where(noise, rng.integers(0, len(DESCRIPTORS), len(owner)), word)
    counts = np.maximum(1, (votes[owner] * 0.6 / (place + 1)).astype(np.int64))
    descriptors = np.asarray(DESCRIPTORS, dtype=object)
    parts.append(
        pl.DataFrame({"artist": owner, "tag": descriptors[word], "count": counts, "genre": False})
    )
    frame = pl.concat(parts, how="vertical_relaxed")
    known = pl.Series(world.artist_mapped)
    return (
        frame.filter(known.gather(frame["artist"]))
        .group_by("artist", "tag", maintain_order=True)
        .agg(pl.col("count").max(), pl.col("genre").any())
        .sort("artist", "count", "tag", descending=[False, True, False])
    )


def assignments(world: World, tags: pl.DataFrame) -> pl.DataFrame:
    """(user, artist, tag, year) per assignment: listeners tagging artists of their library
    (``user`` is the dump's index, 0-based; bots tag nothing)."""
    rng = np.random.default_rng([world.config.seed, _STREAM, 1])
    n_humans = world.n_humans
    taggers = np.flatnonzero(rng.random(n_humans) < TAGGER_SHARE)
    size = np.add.reduceat(world.segment_length, np.arange(0, len(world.segment_length), 3))
    taggers = taggers[size[taggers] > 0]
    per_user = np.minimum(rng.geometric(0.15, len(taggers)), MAX_ASSIGNMENTS)
    user = np.repeat(taggers, per_user)
    # A library entry of the user's: their three segments are contiguous in ``library``.
    start = world.segment_start[user * 3]
    artist = world.library[start + (rng.random(len(user)) * size[user]).astype(np.int64)]
    # Mostly one of the artist's own tags (heavier ones more often); else any descriptor.
    # ``tags`` is sorted by artist, heaviest first: each artist's tags are one run of it.
    n_tags = np.bincount(tags["artist"].to_numpy(), minlength=len(world.artist_genre))
    offsets = np.concatenate([[0], np.cumsum(n_tags)[:-1]])
    flat = tags["tag"].to_numpy()
    pick = (rng.random(len(user)) ** 2 * n_tags[artist]).astype(np.int64)
    word = np.asarray(DESCRIPTORS, dtype=object)[rng.integers(0, len(DESCRIPTORS), len(user))]
    has_own = (n_tags[artist] > 0) & (rng.random(len(user)) >= OWN_WORD_SHARE)
    index = np.minimum(offsets[artist] + pick, max(len(flat) - 1, 0))
    tag = np.where(has_own, flat[index], word) if len(flat) else word
    first_year = int(np.datetime64(world.t0, "s").astype("datetime64[Y]").astype(int)) + 1970
    years = rng.integers(first_year, first_year + max(1, world.config.days // 365) + 1, len(user))
    return pl.DataFrame(
        {
            "user": user.astype(np.int64),
            "artist": artist.astype(np.int64),
            "tag": tag,
            "year": years,
        }
    ).unique(["user", "artist", "tag"], maintain_order=True)


def write_musicbrainz(path: Path, world: World, tags: pl.DataFrame, mbids: pl.Series) -> None:
    """MusicBrainz's artist JSON dump: one entity a line (id, name, tags and genres as
    {name, count}) in ``path``, a ``.tar.xz``."""
    entry = pl.struct(pl.col("tag").alias("name"), "count")
    entities = (
        tags.group_by("artist", maintain_order=True)
        .agg(
            entry.filter(~pl.col("genre")).alias("tags"),
            entry.filter(pl.col("genre")).alias("genres"),
        )
        .sort("artist")
    )
    names = pl.Series(world.artist_names.to_pylist())
    entities = entities.select(
        mbids.gather(entities["artist"]).alias("id"),
        names.gather(entities["artist"]).alias("name"),
        "tags",
        "genres",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # As MusicBrainz ships its JSON dumps: ``artist.tar.xz`` holding ``mbdump/artist``, one
    # entity a line; mtime 0, so that one seed gives identical bytes.
    data = entities.write_ndjson().encode()
    member = tarfile.TarInfo("mbdump/artist")
    member.size, member.mtime = len(data), 0
    with tarfile.open(path, "w:xz", preset=1) as archive:
        archive.addfile(member, io.BytesIO(data))


def write_hetrec(folder: Path, world: World, assigned: pl.DataFrame) -> None:
    """HetRec 2K's tag files: ``artists.dat`` (id = artist + 1, name), ``tags.dat``
    (Latin-1), ``user_taggedartists.dat`` (userID = the dump's user_id)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = assigned["tag"].unique().sort()
    pl.DataFrame({"tagID": np.arange(1, len(vocabulary) + 1), "tagValue": vocabulary}).write_csv(
        folder / "tags.dat", separator="\t"
    )
    artists = pl.DataFrame(
        {
            "id": np.arange(1, len(world.artist_genre) + 1),
            "name": world.artist_names.to_pylist(),
        }
    )
    artists.write_csv(folder / "artists.dat", separator="\t", quote_style="never")
    tag_id = pl.DataFrame({"tag": vocabulary, "tagID": np.arange(1, len(vocabulary) + 1)})
    assigned.join(tag_id, on="tag", maintain_order="left").select(
        (pl.col("user") + 1).alias("userID"),
        (pl.col("artist") + 1).alias("artistID"),
        "tagID",
        pl.lit(1).alias("day"),
        pl.lit(1).alias("month"),
        pl.col("year"),
    ).write_csv(folder / "user_taggedartists.dat", separator="\t")


def metadata_rows(
    world: World, tags: pl.DataFrame, assigned: pl.DataFrame, mbids: pl.Series
) -> list[MetadataRows]:
    """What the MusicBrainz and HetRec readers would read from ``write_musicbrainz`` and
    ``write_hetrec``'s files, without the files (``synthetic_interactions``)."""
    names = pl.Series(world.artist_names.to_pylist())
    musicbrainz = tags.select(
        mbids.gather(tags["artist"]).alias("id"),
        names.gather(tags["artist"]).alias("artist"),
        "tag",
        pl.col("count").cast(pl.Float32).alias("weight"),
        "genre",
    )
    artists = tags["artist"].unique().sort()
    facts = pl.DataFrame(
        {"id": mbids.gather(artists), "artist": names.gather(artists)}
    ).with_columns(meta_name=pl.col("artist"))
    hetrec = assigned.select(
        (pl.col("artist") + 1).cast(pl.Utf8).alias("id"),
        names.gather(assigned["artist"]).alias("artist"),
        (pl.col("user") + 1).cast(pl.Utf8).alias("user"),
        "tag",
        pl.lit(1.0).alias("weight"),
        pl.lit(False).alias("genre"),
    )
    return [
        MetadataRows(
            conform(musicbrainz, TAG_SCHEMA), conform(facts, FACT_SCHEMA), "musicbrainz", "synth"
        ),
        MetadataRows(
            conform(hetrec, TAG_SCHEMA), pl.DataFrame(schema=FACT_SCHEMA), "hetrec", "synth"
        ),
    ]

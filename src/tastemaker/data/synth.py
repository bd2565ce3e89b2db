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
* tags: MusicBrainz tags and genres per artist and HetRec-style per-user assignments, drawn
  from the taste groups (``metadata/`` beside the dumps, ``synth_tags``);
* an incremental dump that repeats the listens of the last hours of the full dump (a
  ListenBrainz reader must count those once), and some listens submitted days late.

Modules: ``synth_names`` (word lists, seeded hashing, MBIDs, titles, spellings),
``synth_world`` (``SynthConfig`` and the world drawn before the first listen), ``synth_listens``
(listens chunk by chunk, the dump's columns), ``synth_tags`` (tags per artist and per user);
this one writes dumps and builds in-memory data from them.

The same seed gives byte-identical files (the chunking is part of the data: keep
``chunk_rows`` fixed). ``synth.json`` beside the dumps records the parameters and counts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tastemaker.artifacts import atomic_directory
from tastemaker.data import synth_tags
from tastemaker.data.interactions import Interactions
from tastemaker.data.synth_listens import LISTENBRAINZ_SCHEMA, chunks, to_arrow
from tastemaker.data.synth_names import ARTIST_KIND, uuids
from tastemaker.data.synth_world import DAY, SynthConfig, World, build_world

__all__ = [
    "DUMP_KIND",
    "LISTENBRAINZ_SCHEMA",
    "METADATA_FOLDER",
    "SUMMARY_FILE",
    "SynthConfig",
    "synthesize",
    "synthetic_interactions",
    "synthetic_listens",
]

SUMMARY_FILE = "synth.json"
METADATA_FOLDER = "metadata"  # the synthetic tags, beside the dumps
# As ListenBrainz writes its dumps: zstd, dictionary-encoded columns (repeated names and ids).
PARQUET: dict = {"compression": "zstd", "use_dictionary": True}
# What synth.json says the folder is (a dump cannot carry a manifest: see artifacts).
DUMP_KIND = "synth"


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


def _artist_mbids(world: World) -> pl.Series:
    return pl.Series(uuids(np.arange(world.config.artists), world.config.seed, ARTIST_KIND))


def _write_tags(folder: Path, world: World) -> dict[str, int | str]:
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


def _world_summary(world: World) -> dict:
    """What ``synth.json`` says of the world generated (the parameters and its counts)."""
    config = world.config
    return {
        "generator": "tastemaker synth",
        "config": {
            **dataclasses.asdict(config),
            "end": config.end.isoformat(),
            "bots": config.n_bots,
            "genres": config.n_genres,
        },
        "users": config.users + config.n_bots,
        "bot_user_ids": [config.users + 1 + i for i in range(config.n_bots)],
        "artists": config.artists,
        "homonyms": world.homonyms,
        "releases": int(world.n_releases.sum()),
        "recordings": int(world.n_tracks.sum()),
        "start": _dump_time(world.t0),
        "end": _dump_time(world.t1),
    }


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
    world = build_world(config)
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
        for chunk in chunks(world):
            table = to_arrow(world, chunk)
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
            **_world_summary(world),
            "listens": done,
            "rows": {"full": full.rows, "incremental": inc.rows if inc else 0},
            "duplicates": duplicates,
            "artists_listened": int(listened.sum()),
            "tags": tag_counts,
            "mbid_share": round(mapped / max(done, 1), 4),
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
    from tastemaker.data.schema import conform

    world = build_world(
        SynthConfig(users=users, artists=artists, listens=listens, seed=seed, **options)
    )
    tables = [to_arrow(world, chunk) for chunk in chunks(world)]
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

    world = build_world(
        SynthConfig(users=users, artists=artists, listens=listens, seed=seed, **options)
    )
    artist_tags = synth_tags.artist_tags(world)
    assigned = synth_tags.assignments(world, artist_tags)
    sources = synth_tags.metadata_rows(world, artist_tags, assigned, _artist_mbids(world))
    return attach_rows(data, sources)

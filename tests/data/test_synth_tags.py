"""Synthetic tags (``data/synth_tags.py``): drawn from the taste groups, seeded, written as
MusicBrainz's and HetRec's files beside the dump, read back by ``ingest --metadata``."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli
from tastemaker.data import synth_tags
from tastemaker.data.synth import synthesize, synthetic_interactions
from tastemaker.data.synth_world import SynthConfig, build_world


@pytest.fixture(scope="module")
def world():
    return build_world(SynthConfig(users=300, artists=600, listens=40_000, seed=3))


def test_artist_tags_follow_the_taste_groups_and_the_seed(world):
    tags = synth_tags.artist_tags(world)
    assert tags.equals(synth_tags.artist_tags(world))
    other = build_world(SynthConfig(users=300, artists=600, listens=40_000, seed=4))
    assert not tags.equals(synth_tags.artist_tags(other))
    # Only artists MusicBrainz knows; each has its genre's tag, flagged a genre.
    assert set(tags["artist"].to_list()) == set(np.flatnonzero(world.artist_mapped).tolist())
    names = np.asarray(synth_tags.genre_tag_names(world.config.n_genres))
    genres = tags.filter("genre")
    main = genres.sort("count", descending=True).unique("artist", keep="first")
    assert (main["tag"].to_numpy() == names[world.artist_genre[main["artist"].to_numpy()]]).all()
    # Descriptive tags cluster by genre: artists of one genre share far more of them than
    # artists of different genres do.
    words = tags.filter(~tags["genre"])
    by_artist = {a: set(t) for a, t in words.group_by("artist").agg("tag").iter_rows()}
    rng = np.random.default_rng(0)
    artists = np.asarray(sorted(by_artist))
    pairs = rng.choice(artists, (4000, 2))
    same = world.artist_genre[pairs[:, 0]] == world.artist_genre[pairs[:, 1]]
    overlap = np.asarray([len(by_artist[a] & by_artist[b]) > 0 for a, b in pairs])
    assert overlap[same].mean() > 2 * overlap[~same].mean()


def test_users_tag_what_they_listen_to(world):
    data = synthetic_interactions(300, 600, 40_000, seed=3, tags=True)
    assert data.tags is not None and len(data.tags.item) > 100
    assert data.metadata is not None and data.metadata.genre.any()
    known = data.tags.user >= 0
    plays = data.user_items[data.tags.user[known], data.tags.item[known]]
    # Assignments come from the user's library, most of which they played (measured 0.72;
    # light users have not played all of theirs): many times a random pair's chance.
    played = np.asarray(plays > 0).mean()
    density = data.user_items.nnz / (data.n_users * data.n_items)
    assert played > 0.6 and played > 5 * density
    share = np.diff(data.metadata.item_tags.indptr) > 0
    assert share.mean() > 0.8


def test_the_dump_carries_its_tags_for_ingest(tmp_path, capsys):
    dump = synthesize(tmp_path / "dump", users=120, artists=300, listens=12_000, seed=1)
    metadata = dump / "metadata"
    assert (metadata / "artist.tar.xz").is_file()
    assert (metadata / "hetrec" / "user_taggedartists.dat").is_file()
    code, out, err = run_cli(
        capsys,
        "ingest",
        str(dump),
        "--out",
        str(tmp_path / "data"),
        "--metadata",
        str(metadata / "artist.tar.xz"),
        "--metadata",
        str(metadata / "hetrec"),
    )
    assert code == 0, err
    assert "left out" not in out + err  # the metadata archive is not taken for listens
    code, out, _ = run_cli(capsys, "inspect", str(tmp_path / "data"))
    assert code == 0 and "metadata coverage" in out and "musicbrainz" in out and "hetrec" in out

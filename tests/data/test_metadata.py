"""Item metadata: the three readers, matching to items, storage, coverage, the commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO
from tastemaker.data.interactions import Interactions
from tastemaker.data.metadata.attach import attach_metadata
from tastemaker.data.metadata.coverage import coverage
from tastemaker.data.metadata.readers import read_metadata
from tastemaker.data.readers import ReaderOptions
from tastemaker.errors import DataError

FIXTURE = REPO / "tests" / "fixtures" / "musicbrainz_artists.jsonl"
SLOWDIVE = "8e66ea2b-b57b-47d9-8df0-df4630aeb8e5"


@pytest.fixture(scope="module")
def catalogue() -> Interactions:
    """Slowdive by MBID; Bjork and My Bloody Valentine by name (other spellings); two items
    named Radiohead (ambiguous); one item no source knows."""
    items = {
        SLOWDIVE: "Slowdive",
        "bjork": "BJORK",
        "my bloody valentine": "My Bloody Valentine!",
        "radiohead": "Radiohead",
        "radiohead (uk)": "radiohead",
        "unknown": "Nobody Knows",
    }
    ids = list(items)
    users = [u for u in range(6) for _ in range(3)]
    chosen = [ids[(u + k) % len(ids)] for u in range(6) for k in range(3)]
    return Interactions.from_arrays(users, chosen, item_names=items)


def test_musicbrainz_rows_tags_genres_and_facts():
    rows = read_metadata(FIXTURE)
    assert rows.format == "musicbrainz"
    slowdive = rows.tags.filter(id=SLOWDIVE).sort("tag")
    # Lower-cased, the zero-count vote left out, genre flagged where MusicBrainz says so.
    assert slowdive["tag"].to_list() == ["british", "dream pop", "shoegaze"]
    assert slowdive.filter(tag="shoegaze")["genre"].item() is True
    assert slowdive.filter(tag="british")["genre"].item() is False
    fact = rows.facts.filter(id=SLOWDIVE).row(0, named=True)
    assert (fact["year"], fact["country"]) == (1989, "GB")


def test_matching_by_id_then_unique_folded_name(catalogue):
    data = attach_metadata(catalogue, [FIXTURE])
    meta = data.metadata
    index = {item: data.items.index(item) for item in data.items.to_list()}
    assert meta.top_tags(index[SLOWDIVE], 2) == ["shoegaze", "dream pop"]
    assert meta.top_tags(index["bjork"], 1) == ["electronic"]  # Björk == BJORK once folded
    assert "shoegaze" in meta.top_tags(index["my bloody valentine"])
    # Two items fold to "radiohead": neither gets the tags, and the name is reported.
    assert meta.top_tags(index["radiohead"]) == [] and meta.top_tags(index["radiohead (uk)"]) == []
    assert meta.top_tags(index["unknown"]) == []
    report = data.source["metadata"][0]
    assert report["ambiguous_names"] == 1
    assert report["items_matched"] == 3
    assert meta.facts["country"][index["bjork"]] == "IS"
    share = coverage(data)
    assert share["items_with_tags"] == 3 and share["item_share"] == pytest.approx(0.5)
    assert 0 < share["listen_share"] < 1


def test_csv_weights_and_bad_rows(catalogue, tmp_path):
    good = tmp_path / "tags.csv"
    good.write_text("item,tag,weight\nSlowdive,Shoegaze,3\nslowdive,dream pop,\nunknown,x,2\n")
    data = attach_metadata(catalogue, [good])
    slowdive = data.items.index(SLOWDIVE)
    row = data.metadata.item_tags[slowdive].toarray().ravel()
    tags = data.metadata.tags
    assert row[tags.index("shoegaze")] == 3 and row[tags.index("dream pop")] == 1  # default 1
    bad = tmp_path / "bad.csv"
    bad.write_text("item,tag,weight\nSlowdive,shoegaze,3\nSlowdive,noise,-1\n")
    with pytest.raises(DataError) as error:
        attach_metadata(catalogue, [bad])
    assert "bad.csv" in str(error.value) and "row 3" in str(error.value)
    assert "positive" in str(error.value)
    skipped = attach_metadata(catalogue, [bad], options=ReaderOptions(on_bad_rows="skip"))
    assert skipped.source["metadata"][0]["skipped_rows"] == 1


def test_csv_tags_are_stored_folded_and_summed_across_blocks(catalogue, tmp_path, monkeypatch):
    # Tags are codes from the first block on and normalised once per distinct raw tag: the
    # same tag written differently in different blocks is one column, its weights summed.
    from tastemaker.data.readers import delimited

    lines = ["item,tag,weight"] + [
        f"Slowdive,{t},1" for t in ["Shoegaze", " shoegaze", "DREAM  pop"]
    ]
    lines += ["unknown,x,2", "bjork,Shoegaze,5"] * 50
    path = tmp_path / "tags.csv"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(delimited.text_frames, "__defaults__", (64,))  # many small blocks
    data = attach_metadata(catalogue, [path])
    tags = data.metadata.tags
    assert sorted(tags) == ["dream pop", "shoegaze", "x"]
    row = data.metadata.item_tags[data.items.index(SLOWDIVE)].toarray().ravel()
    assert row[tags.index("shoegaze")] == 2 and row[tags.index("dream pop")] == 1
    assert (
        data.metadata.item_tags[data.items.index("bjork")].toarray().ravel()[tags.index("shoegaze")]
        == 250
    )


def test_musicbrainz_bad_line_is_named(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    lines.insert(2, '{"id": "x", "name": "Y", "tags": [{"name": "a", "count": "many"}]}')
    bad = tmp_path / "artist.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        read_metadata(bad)
    assert "artist.jsonl" in str(error.value) and "row 3" in str(error.value)
    assert "count" in str(error.value)
    lines[2] = "{not json"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="not valid JSON"):
        read_metadata(bad)


def test_stored_beside_the_matrix_and_carried_into_models(catalogue, tmp_path):
    from tastemaker.models import create_model, load_model

    data = attach_metadata(catalogue, [FIXTURE])
    data.save(tmp_path / "data")
    again = Interactions.load(tmp_path / "data")
    assert again.metadata.tags == data.metadata.tags
    assert (again.metadata.item_tags != data.metadata.item_tags).nnz == 0
    assert again.metadata.facts.equals(data.metadata.facts)
    model = create_model("popularity").fit(again)
    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert loaded.interactions_.metadata.tags == data.metadata.tags


def test_tampered_metadata_is_refused(catalogue, tmp_path):
    from tastemaker.artifacts import save_arrays
    from tastemaker.errors import ArtifactError

    data = attach_metadata(catalogue, [FIXTURE])
    data.save(tmp_path / "data")
    m = data.metadata.item_tags
    indices = m.indices.copy()
    indices[0] = 10_000  # past the tag vocabulary
    save_arrays(
        tmp_path / "data" / "metadata_tags.npz",
        indptr=m.indptr,
        indices=indices,
        weights=m.data,
        shape=np.asarray(m.shape, np.int64),
    )
    with pytest.raises(ArtifactError):
        Interactions.load(tmp_path / "data", verify=False)


def test_hetrec_tag_assignments_as_metadata(hetrec, hetrec_path):
    data = attach_metadata(hetrec, [hetrec_path])
    report = coverage(data)
    # HetRec's own figures: 12,523 artists tagged, 17,632 listened to; the tagged ones hold
    # most of the listens.
    assert 0.6 < report["item_share"] < 0.75
    assert report["listen_share"] > 0.9
    # Per-user rows stay per user (one row per user, item, tag), not summed anonymously.
    assert data.metadata.item_tags.nnz == 0
    # The reader's assignments and the listening source's are the same rows: merged once
    # (tag names folded to lower case, so a user's "Rock" and "rock" on one artist are one).
    assert 0.999 * len(hetrec.tags.item) < len(data.tags.item) <= len(hetrec.tags.item)
    assert len(attach_metadata(data, [hetrec_path]).tags.item) == len(data.tags.item)
    assert (data.tags.user >= 0).mean() > 0.95


def test_ingest_metadata_and_inspect_through_the_cli(tmp_path, capsys):
    from conftest import run_cli

    listens = tmp_path / "plays.csv"
    listens.write_text(
        "user,artist\n" + "".join(f"u{u},{a}\n" for u in range(4) for a in ("Slowdive", "Björk"))
    )
    extra = tmp_path / "extra.csv"
    extra.write_text("item,tag\nbjork,icelandic\n")
    out = tmp_path / "data"
    code, _, err = run_cli(
        capsys, "ingest", listens, "--out", out, "--metadata", FIXTURE, "--metadata", extra
    )
    assert code == 0, err
    code, stdout, _ = run_cli(capsys, "inspect", out, "--json")
    report = json.loads(stdout)["metadata"]
    assert report["items_with_tags"] == 2 and report["listen_share"] == 1.0
    code, stdout, _ = run_cli(capsys, "inspect", out)
    assert "metadata coverage" in stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("item,tag,weight\nbjork,x,nan\n")
    code, _, err = run_cli(capsys, "metadata", out, bad, "--out", tmp_path / "more")
    assert code == 2 and "bad.csv" in err and "row 2" in err
    code, _, err = run_cli(capsys, "metadata", out, extra, "--out", tmp_path / "more")
    assert code == 0, err
    assert Interactions.load(tmp_path / "more").metadata is not None

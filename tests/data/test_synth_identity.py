"""The identity target on synthetic dumps: synth spells unmapped listens as people submit
them (case, accents, "and", guest credits) and gives a few artists a homonym; after ingest
there is one item per artist listened to, plus one per ambiguous name, and no artist's
`similar` list holds its own twin (docs/identity.md)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tastemaker.data.identity import credit_forms
from tastemaker.data.ingest import ingest
from tastemaker.data.synth import SUMMARY_FILE, synthesize
from tastemaker.models import create_model


@pytest.fixture(scope="module", params=[3, 4])
def ingested(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"synth-identity-{request.param}")
    dump = synthesize(folder / "dump", users=300, artists=800, listens=60_000, seed=request.param)
    summary = json.loads((dump / SUMMARY_FILE).read_text())
    return summary, ingest([dump], folder / "out")


def test_synth_spells_unmapped_listens_as_people_do(ingested):
    summary, inter = ingested
    assert summary["homonyms"] >= 2  # at least one shared name
    identity = inter.source["identity"]
    # Most names of name-only listens belong to mapped artists and join their MBID items.
    assert identity["reconciled_names"] > 3 * identity["unmatched_names"] > 0
    assert identity["reconciled_listens"] > 0.2 * summary["listens"] * (1 - summary["mbid_share"])
    assert identity["ambiguous_names"] >= 1


def test_one_item_per_artist_up_to_the_ambiguous_names(ingested):
    summary, inter = ingested
    identity = inter.source["identity"]
    assert summary["artists_listened"] >= 0.99 * summary["artists"]
    assert inter.n_items - identity["ambiguous_names"] == summary["artists_listened"]


def test_no_similar_list_holds_its_own_twin(ingested):
    _, inter = ingested
    names = inter.item_metadata["name"]
    forms = credit_forms(names)
    form = names.to_frame("name").join(forms, on="name", how="left")["credit"].to_numpy()
    ambiguous = set(inter.source["identity"]["ambiguous_examples"])
    model = create_model("itemknn").fit(inter)
    similar, _ = model.similar_items(np.arange(inter.n_items), n=20)
    twins = [
        (names[q], names[int(j)])
        for q in range(inter.n_items)
        if form[q] not in ambiguous
        for j in similar[q]
        if j >= 0 and j != q and form[int(j)] == form[q]
    ]
    assert twins == []
    # Names shared by several items are exactly the ambiguous ones (before reconciliation,
    # hundreds of name items sat beside their MBID twins here).
    shared = pl.Series(form).value_counts().filter(pl.col("count") > 1)[""].to_list()
    assert set(shared) == ambiguous

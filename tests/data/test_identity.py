"""The identity rule (tastemaker.data.identity): name-only listens join the one id their
normalised name belongs to; names of several ids stay apart and are counted."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tastemaker.data.identity import credit_forms, resolve
from tastemaker.data.ingest import ingest
from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.schema import conform

T0 = 1_700_000_000_000


def listens(rows: list[tuple], level: str = "artist") -> pl.LazyFrame:
    """(user, mbid, artist name[, title]) rows as canonical listens, a minute apart."""
    columns = {
        "user": [r[0] for r in rows],
        "listened_at": pl.Series([T0 + 60_000 * i for i in range(len(rows))]).cast(
            pl.Datetime("ms", "UTC")
        ),
        "artist_name": [r[2] for r in rows],
    }
    if level == "artist":
        columns["artist_mbid"] = [r[1] for r in rows]
    else:
        columns[f"{level}_mbid"] = [r[1] for r in rows]
        columns[f"{level}_name"] = [r[3] for r in rows]
    return conform(pl.DataFrame(columns).lazy())


def items_of(rows: list[tuple], level: str = "artist"):
    inter = interactions_from_listens(listens(rows, level), level=level, keep_events=False)
    return inter, inter.items.to_list()


@pytest.mark.parametrize(
    ("name", "credit"),
    [
        ("Björk", "bjork"),
        ("BJÖRK feat. Thom Yorke", "bjork"),
        ("Björk ft. Thom Yorke", "bjork"),
        ("Björk (feat. Thom Yorke)", "bjork"),
        ("Björk featuring Thom Yorke", "bjork"),
        ("Björk & Thom Yorke", "bjork"),
        ("Björk, Thom Yorke", "bjork"),
        ("Björk x Thom Yorke", "bjork"),
        ("Björk vs. Thom Yorke", "bjork"),
        ("Little Feat", "little feat"),
        # A joined credit splits only where its second part is an artist seen in the data.
        ("Simon & Garfunkel", "simon and garfunkel"),
        ("Tyler, the Creator", "tyler the creator"),
    ],
)
def test_credit_forms(name, credit):
    forms = credit_forms(pl.Series([name, "Thom Yorke"]))
    row = forms.filter(pl.col("name") == name).row(0, named=True)
    assert row["credit"] == credit


def test_accents_case_and_credits_join_the_mbid_item():
    rows = [
        ("u1", "mb-bjork", "Björk"),
        ("u1", None, "bjork"),
        ("u2", None, "BJORK"),
        ("u2", None, "Björk feat. Thom Yorke"),
        ("u3", None, "Bjork & Thom Yorke"),
        ("u3", "mb-thom", "Thom Yorke"),
        ("u4", "mb-sg", "Simon & Garfunkel"),
        ("u4", None, "simon and garfunkel"),
    ]
    inter, items = items_of(rows)
    assert items == ["mb-bjork", "mb-sg", "mb-thom"]
    bjork = items.index("mb-bjork")
    assert inter.user_items[:, bjork].sum() == 5
    # The display name comes from the item's own rows, not from a reconciled spelling.
    assert inter.item_metadata["name"][bjork] == "Björk"
    report = inter.source["identity"]
    assert report["reconciled_listens"] == 5
    assert report["ambiguous_names"] == 0 and report["unmatched_listens"] == 0


def test_ambiguous_names_stay_separate_and_are_counted():
    rows = [
        ("u1", "mb-smith-1", "John Smith"),
        ("u2", "mb-smith-2", "John Smith"),
        ("u3", None, "john smith"),
        ("u3", None, "John Smith feat. Anna"),
        ("u4", None, "Nobody Known"),
        ("u4", None, "nobody known"),
    ]
    inter, items = items_of(rows)
    assert items == ["john smith", "mb-smith-1", "mb-smith-2", "nobody known"]
    report = inter.source["identity"]
    assert report["ambiguous_names"] == 1 and report["ambiguous_listens"] == 2
    assert report["ambiguous_examples"] == ["john smith"]
    assert report["unmatched_names"] == 1 and report["unmatched_listens"] == 2
    assert report["reconciled_listens"] == 0


def test_one_spelling_of_two_ids_is_ambiguous_even_when_they_differ_in_case():
    # "ABBA" and "Abba" fold alike: a name-only "abba" cannot tell them apart.
    groups = pl.DataFrame(
        {
            "artist": ["ABBA", "Abba", "abba"],
            "lo": ["x", "y", None],
            "hi": ["x", "y", None],
            "name_listens": [0, 0, 3],
        }
    )
    out = resolve(groups, "artist").row(0, named=True)
    assert out["status"] == "ambiguous" and out["target"] is None and out["key"] == "abba"


@pytest.mark.parametrize("level", ["release", "recording"])
def test_release_and_recording_levels_use_artist_and_title(level):
    rows = [
        ("u1", "rel-a", "Björk", "Homogenic"),
        ("u1", None, "bjork feat. X", "HOMOGENIC"),
        ("u2", None, "Björk", "Post"),  # another title: its own name key
        ("u2", "rel-b", "Someone Else", "Homogenic"),  # the title alone is not enough
        ("u3", None, "Someone Else", "homogenic"),
    ]
    inter, items = items_of(rows, level)
    assert items == ["bjork | post", "rel-a", "rel-b"]
    assert inter.user_items[:, items.index("rel-a")].sum() == 2
    assert inter.user_items[:, items.index("rel-b")].sum() == 2
    assert inter.source["identity"]["reconciled_listens"] == 2


def test_ingest_of_a_file_with_mbid_and_name_rows(tmp_path):
    csv = tmp_path / "listens.csv"
    csv.write_text(
        "user,artist,item,timestamp\n"
        "u1,Björk,11111111-1111-4111-8111-111111111111,2024-01-01T10:00:00Z\n"
        "u1,bjork,,2024-01-01T10:05:00Z\n"
        "u2,Björk feat. Thom Yorke,,2024-01-01T11:00:00Z\n"
        "u2,Nobody Known,,2024-01-01T11:05:00Z\n"
        "u3,nobody known,,2024-01-02T11:05:00Z\n"
    )
    inter = ingest([csv], tmp_path / "out")
    assert inter.items.to_list() == ["11111111-1111-4111-8111-111111111111", "nobody known"]
    assert inter.user_items.sum() == 5
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    identity = manifest["source"]["identity"]
    assert identity["reconciled_listens"] == 2 and identity["reconciled_names"] == 1
    assert identity["unmatched_listens"] == 2 and identity["ambiguous_names"] == 0


@pytest.mark.parametrize(
    ("name", "credit"),
    [
        ("Anna Adams & the Wolfs", "anna adams and the wolfs"),
        ("Anna Adams & the Wolfs & Kira Berg", "anna adams and the wolfs"),
        ("Anna Adams & the Wolfs x Kira Berg", "anna adams and the wolfs"),
        ("Anna Adams & the Wolfs & Kira Berg & the Foxs", "anna adams and the wolfs"),
        ("Kira Berg & Anna Adams & the Wolfs", "kira berg"),
        ("Kira Berg, Anna Adams & the Wolfs feat. Zoe", "kira berg"),
    ],
)
def test_joined_credits_split_where_an_artist_follows(name, credit):
    seen = pl.Series([name, "Kira Berg", "Kira Berg & the Foxs", "Anna Adams & the Wolfs"])
    row = credit_forms(seen).filter(pl.col("name") == name).row(0, named=True)
    assert row["credit"] == credit


def test_a_guest_credit_names_an_item_only_when_nothing_else_does():
    rows = [
        ("u1", None, "Nobody Known"),
        ("u2", None, "Nobody Known feat. Somebody"),  # later, but with a guest
        ("u3", None, "Lonely Guest ft. Somebody"),
    ]
    inter, items = items_of(rows)
    assert items == ["lonely guest", "nobody known"]
    assert inter.item_metadata["name"].to_list() == ["Lonely Guest ft. Somebody", "Nobody Known"]


@pytest.fixture
def near_spellings(monkeypatch):
    import tastemaker.data.identity as identity

    monkeypatch.setattr(identity, "NEAR_SPELLINGS", True)


def test_near_spellings_are_off_by_default():
    _, items = items_of([("u1", "mb-radiohead", "Radiohead"), ("u2", None, "Radiohed")])
    assert items == ["mb-radiohead", "radiohed"]


def test_a_near_spelling_joins_the_one_id_one_edit_away(near_spellings):
    # One edit from one id's name joins it (a letter dropped, added, changed, or two
    # swapped); one edit from two ids' names stays apart and is reported; short names never
    # join by spelling; two edits are not near.
    rows = [
        ("u1", "mb-radiohead", "Radiohead"),
        ("u2", None, "Radiohed"),  # dropped
        ("u2", None, "Raidohead"),  # swapped
        ("u3", None, "radioheads"),  # added
        ("u3", "mb-sato-a", "Julia Sata"),
        ("u3", "mb-sato-b", "Julia Sate"),
        ("u4", None, "Julia Sato"),  # one edit from both
        ("u4", "mb-beck", "Beck"),
        ("u4", None, "Bekc"),  # too short to tell a typo from another artist
        ("u5", "mb-portishead", "Portishead"),
        ("u5", None, "Portisheaddd"),  # two edits
        ("u6", "mb-blink", "Blink-182"),
        ("u6", None, "Blink-183"),  # a digit: another name
    ]
    inter, items = items_of(rows)
    assert "mb-radiohead" in items and "radiohed" not in items and "radioheads" not in items
    assert inter.user_items[:, items.index("mb-radiohead")].sum() == 4
    assert "julia sato" in items and "bekc" in items and "portisheaddd" in items
    report = inter.source["identity"]
    assert report["near_names"] == 3 and report["near_listens"] == 3
    assert report["near_ambiguous_names"] == 1
    assert report["near_ambiguous_examples"] == ["julia sato"]
    assert "blink 183" in items
    assert report["unmatched_names"] == 3  # "bekc", "portisheaddd", "blink 183"


def test_near_spellings_are_found_among_many_names_fast(near_spellings):
    # Candidates come from shared deletion variants: thousands of names, no all-pairs scan.
    import time

    ids = [(f"u{k}", f"mb-{k}", f"Artist Number {k:05d}") for k in range(20_000)]
    typos = [(f"v{k}", None, f"Artist Numbr {k:05d}") for k in range(0, 20_000, 7)]
    started = time.perf_counter()
    inter, items = items_of(ids + typos)
    assert time.perf_counter() - started < 30
    assert len(items) == 20_000  # every typo joined its artist
    assert inter.source["identity"]["near_names"] == len(typos)

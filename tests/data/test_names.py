"""Names as people type them (tastemaker.data.names): the folding rule, and the matcher's
ranking rules on a small hand-made catalogue where each rule decides one answer."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tastemaker.data.names import NameMatcher, fold, fold_many, fold_series, without_article


@pytest.mark.parametrize(
    "text, folded",
    [
        ("Björk", "bjork"),
        ("Mötley Crüe", "motley crue"),
        ("Beyoncé", "beyonce"),
        ("Sigur Rós", "sigur ros"),
        ("Trentemøller", "trentemoller"),
        ("Guns N' Roses", "guns n roses"),
        ("Guns N’ Roses", "guns n roses"),  # a typographic apostrophe
        ("Simon & Garfunkel", "simon and garfunkel"),
        ("Florence + the Machine", "florence and the machine"),
        ("AC/DC", "ac dc"),
        ("R.E.M.", "rem"),
        ("Dr. Dre", "dr dre"),
        ("blink-182", "blink 182"),
        ("Ke$ha", "kesha"),
        ("P!nk", "pink"),
        ("Panic! At the Disco", "panic at the disco"),
        ("3OH!3", "3oh3"),
        ("  The   Beatles ", "the beatles"),
        ("ＡＢＢＡ", "abba"),  # full-width letters (NFKD)
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # casefold, not lower
        ("Ленинград", "ленинград"),
        ("Άννα Βισση", "αννα βισση"),  # Greek accents go, Greek letters stay
        ("宇多田ヒカル", "宇多田ヒカル"),
        ("ガガ", "ガガ"),  # kana voicing marks are part of the letter, not accents
        ("소녀시대", "소녀시대"),  # Hangul recomposes after NFKD
        ("!!!", ""),
        ("", ""),
    ],
)
def test_fold(text, folded):
    assert fold(text) == folded


def test_fold_is_idempotent_and_article_is_optional():
    for name in ["Björk", "The The", "Guns N' Roses", "AC/DC", "Ke$ha", "The Beatles"]:
        assert fold(fold(name)) == fold(name)
    assert without_article("the beatles") == "beatles"
    assert without_article("the the") == "the"
    assert without_article("theatre of tragedy") == "theatre of tragedy"
    assert without_article("the") == "the"


# Listeners chosen so that each rule, and only that rule, decides an answer below.
CATALOGUE = {
    "Björk": 172,
    "Brant Bjork": 2,
    "K": 1,
    "Katy Perry": 473,
    "Ke$ha": 362,
    "Kings of Leon": 235,
    "The Beatles": 480,
    "The Beat": 1,
    "Beat Happening": 3,
    "Radiohead": 393,
    "Dio": 40,
    "Head": 2,
    "Brad": 5,
    "Radu": 1,
    "Guns N' Roses": 161,
    "Simon & Garfunkel": 40,
    "AC/DC": 180,
    "Ramones": 104,
    "Queen": 208,
    "Queens of the Stone Age": 115,
    "Muse": 400,
    "Museum": 5,
    "Swift Guad": 1,
    "Taylor Swift": 247,
    "Eminence Symphony Orchestra": 1,
    "Eminem": 204,
    "!!!": 6,
    "Nirvana": 258,
    "Nirvana (UK)": 3,
    "Britney Spears": 522,
    "Britney Spears vs Avril Lavigne": 1,
}


@pytest.fixture(scope="module")
def matcher():
    names = list(CATALOGUE)
    ids = [f"id{i}" for i in range(len(names))]
    return NameMatcher(ids, names, np.array(list(CATALOGUE.values())))


def first(matcher, text, limit=8):
    return [matcher.names[h.index] for h in matcher.search(text, limit)]


def test_folded_exact_beats_a_word_prefix(matcher):
    # The issue: "bjork" + Enter added Brant Bjork (2 listeners) instead of Björk (172).
    assert first(matcher, "bjork")[:2] == ["Björk", "Brant Bjork"]
    assert first(matcher, "BJÖRK")[0] == "Björk"


def test_obscure_exact_gives_way_to_popular_prefixes_at_most_two_places(matcher):
    # "K" (1 listener) is exact, but someone typing "k" is more likely starting Katy Perry.
    assert first(matcher, "k")[:4] == ["Katy Perry", "Ke$ha", "K", "Kings of Leon"]
    # ... whereas a popular exact match stays first.
    assert first(matcher, "queen")[0] == "Queen"
    assert first(matcher, "muse")[:2] == ["Muse", "Museum"]
    # The whole name, as the CLI gives it: the exact item, however obscure.
    assert matcher.resolve("K").index == matcher.names.index("K")


def test_leading_article_is_optional_both_ways(matcher):
    assert first(matcher, "beat")[:2] == ["The Beatles", "The Beat"]
    assert first(matcher, "beatles")[0] == "The Beatles"
    assert first(matcher, "the beatles")[0] == "The Beatles"
    assert first(matcher, "the ramones")[0] == "Ramones"
    assert first(matcher, "the b")[0] == "The Beatles"


def test_punctuation_and_ampersand(matcher):
    assert first(matcher, "guns n roses")[0] == "Guns N' Roses"
    assert first(matcher, "guns and roses")[0] == "Guns N' Roses"  # close spelling
    assert first(matcher, "simon and garfunkel")[0] == "Simon & Garfunkel"
    assert first(matcher, "acdc")[0] == "AC/DC"
    assert first(matcher, "ac dc")[0] == "AC/DC"
    assert first(matcher, "kesha")[0] == "Ke$ha"
    assert first(matcher, "!!!")[0] == "!!!"  # a name that is all punctuation


def test_no_short_names_padding_a_close_spelling(matcher):
    # The issue: "radiohead" listed Dio, Head, Brad and Radu after Radiohead.
    assert first(matcher, "radiohead") == ["Radiohead"]
    assert first(matcher, "radiohed") == ["Radiohead"]


def test_tiers_then_popularity_and_near_exact_promotion(matcher):
    # Word prefix of a popular name ahead of an obscure whole-name prefix.
    assert first(matcher, "swift")[:2] == ["Taylor Swift", "Swift Guad"]
    # A one-letter slip of a popular name ahead of an obscure prefix.
    assert first(matcher, "eminen")[:2] == ["Eminem", "Eminence Symphony Orchestra"]
    # Same tier: more listeners first.
    assert first(matcher, "nirvana")[:2] == ["Nirvana", "Nirvana (UK)"]


def test_hits_say_how_they_matched(matcher):
    hits = matcher.search("id6", 3)
    assert hits[0].how == "id" and matcher.names[hits[0].index] == "The Beatles"
    how = {matcher.names[h.index]: h.how for h in matcher.search("beat", 8)}
    assert how["The Beatles"] == "prefix" and how["The Beat"] == "name"
    fuzzy = matcher.search("radiohed", 1)[0]
    assert fuzzy.how == "fuzzy" and 85 <= fuzzy.score < 100
    assert [h.how for h in matcher.search("", 3)] == ["popular"] * 3
    assert first(matcher, "", 2) == ["Britney Spears", "The Beatles"]


def test_a_shorter_list_is_the_start_of_a_longer_one(matcher):
    for text in ["k", "beat", "swift", "eminen", "b", "the", "radiohed", "qu", "nirv"]:
        longest = first(matcher, text, 12)
        for limit in range(1, 12):
            assert first(matcher, text, limit) == longest[:limit], (text, limit)


def test_resolve_is_sure_or_lists_candidates(matcher):
    name = matcher.names
    for text, expected, how in [
        ("Bjork", "Björk", "name"),
        ("beatles", "The Beatles", "name"),
        ("Guns N Roses", "Guns N' Roses", "name"),
        ("id9", "Radiohead", "id"),
        ("Radiohed", "Radiohead", "fuzzy"),
        # Two close spellings, but the other is an obscure copy.
        ("Britny Spears", "Britney Spears", "fuzzy"),
        ("Radioh", "Radiohead", "prefix"),  # the only name it starts, and most of it
    ]:
        resolution = matcher.resolve(text)
        assert resolution.index is not None, text
        assert (name[resolution.index], resolution.how) == (expected, how)
    unsure = matcher.resolve("Kings")  # a prefix, not most of the name
    assert unsure.index is None and name[unsure.candidates[0]] == "Kings of Leon"
    unsure = matcher.resolve("Swift")
    assert unsure.index is None
    assert [name[i] for i in unsure.candidates[:2]] == ["Taylor Swift", "Swift Guad"]
    nothing = matcher.resolve("zzzzqqq")
    assert nothing.index is None and nothing.candidates == []


def test_items_without_names_are_found_by_id_and_input_is_bounded():
    m = NameMatcher(["a1", "a2"], [None, "Air"], np.array([3, 7]))
    assert m.names == ["a1", "Air"]
    assert m.exact("a1") == 0 and m.exact("AIR") == 1
    assert first(m, "x" * 10_000) == []  # a huge query is cut, not scanned
    with pytest.raises(ValueError, match="one entry per item"):
        NameMatcher(["a"], ["A", "B"], np.array([1]))


def test_fold_many_is_fold_on_each(hetrec):
    names = hetrec.item_names.fill_null("").to_list()
    names += ["a +\n+ b", "x\ny", " + ", "ab+", "+ab", "P!\nnk", "!\n!", "", " lead", "trail "]
    assert fold_many(names) == [fold(name) for name in names]


def test_fold_series_is_fold_on_each(hetrec):
    # Plain names (as given or once unaccented) take the polars path, the rest fold_many:
    # both must agree with fold everywhere, nulls kept.
    rng = np.random.default_rng(0)
    alphabet = list("aZ9 '.!&$+-_\n\tÉéøßİﬁＡ") + ["\u0301"]
    names = ["".join(rng.choice(alphabet, rng.integers(0, 9))) for _ in range(20_000)]
    names += hetrec.item_names.fill_null("").to_list()
    names += ["R.E.M.", "Guns N' Roses", "  The  Cure ", "Björk", "Sigur Rós", "x . y", "P!nk"]
    folded = fold_series(pl.Series([*names, None])).to_list()
    assert folded == [fold(name) for name in names] + [None]


def test_prefix_keys_are_in_bisect_order(hetrec):
    # Sorted by polars (UTF-8 bytes), searched by bisect (code points): the same order.
    keys = hetrec.name_matcher._keys.to_list()
    assert len(keys) > hetrec.n_items and keys == sorted(keys)


def test_an_empty_or_tiny_catalogue():
    empty = NameMatcher([], [], np.array([], dtype=np.int64))
    assert empty.search("bjork", 5) == [] and empty.search("", 5) == []
    assert empty.resolve("bjork").index is None and empty.exact("x") is None
    one = NameMatcher(["x"], ["Björk"], np.array([3]))
    assert [h.how for h in one.search("bjrk", 5)] == ["fuzzy"]
    assert one.resolve("Bjork").index == 0

"""Search quality on real names: HetRec 2011's 17,632 Last.fm artists, queried as people type
them (accents left out, "the" added or dropped, '&' for 'and', typos, prefixes, later words),
each with the artist a person means as the expected first hit; and the CLI and the service
answering with that same matcher.

Measured (``pytest -s tests/data/test_name_search.py``): {share} of {n} queries right at rank 1, MRR
{mrr} (docs/serving.md, "Name search"). How the set came about, since the ranking was tuned
on part of it: the first 74 queries were written before tuning; their two misses ("gaga",
"swift": an obscure exact or prefix match above a popular word match) led to the near-exact
promotion rule, and "eminen" from the next 47 to counting one-typo spellings as near-exact. The
last 30 were written after the rules were fixed and, unchanged, score 29 / 30 (the miss: the
acronym "mcr", which the matcher does not expand).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli

WRITTEN_FIRST = [
    ("bjork", "Björk"),
    ("beyonce", "Beyoncé"),
    ("motley crue", "Mötley Crüe"),
    ("sigur ros", "Sigur Rós"),
    ("celine dion", "Céline Dion"),
    ("royksopp", "Röyksopp"),
    ("motorhead", "Motörhead"),
    ("michael buble", "Michael Bublé"),
    ("tiesto", "Tiësto"),
    ("jonsi", "Jónsi"),
    ("die arzte", "Die Ärzte"),
    ("blue oyster cult", "Blue Öyster Cult"),
    ("trentemoller", "Trentemøller"),
    ("edith piaf", "Édith Piaf"),
    ("beatles", "The Beatles"),
    ("killers", "The Killers"),
    ("the ramones", "Ramones"),
    ("smiths", "The Smiths"),
    ("the white stripes", "The White Stripes"),
    ("rolling stones", "The Rolling Stones"),
    ("simon and garfunkel", "Simon & Garfunkel"),
    ("selena gomez and the scene", "Selena Gomez & the Scene"),
    ("marina and the diamonds", "Marina & the Diamonds"),
    ("belle & sebastian", "Belle and Sebastian"),
    ("tegan & sara", "Tegan and Sara"),
    ("florence and the machine", "Florence + the Machine"),
    ("echo and the bunnymen", "Echo & The Bunnymen"),
    ("hall and oates", "Hall & Oates"),
    ("guns n roses", "Guns N' Roses"),
    ("guns and roses", "Guns N' Roses"),
    ("acdc", "AC/DC"),
    ("ac dc", "AC/DC"),
    ("rem", "R.E.M."),
    ("tatu", "t.A.T.u."),
    ("blink 182", "blink-182"),
    ("kesha", "Ke$ha"),
    ("pink", "P!nk"),
    ("panic at the disco", "Panic! At the Disco"),
    ("destinys child", "Destiny's Child"),
    ("3oh3", "3OH!3"),
    ("radiohed", "Radiohead"),
    ("britny spears", "Britney Spears"),
    ("metalica", "Metallica"),
    ("nirvanna", "Nirvana"),
    ("coldplai", "Coldplay"),
    ("rihana", "Rihanna"),
    ("avril lavine", "Avril Lavigne"),
    ("lady gagga", "Lady Gaga"),
    ("micheal jackson", "Michael Jackson"),
    ("red hot chilli peppers", "Red Hot Chili Peppers"),
    ("linkin prak", "Linkin Park"),
    ("evanesence", "Evanescence"),
    ("franz ferdinad", "Franz Ferdinand"),
    ("artic monkeys", "Arctic Monkeys"),
    ("beat", "The Beatles"),
    ("radioh", "Radiohead"),
    ("lady g", "Lady Gaga"),
    ("brit", "Britney Spears"),
    ("depeche", "Depeche Mode"),
    ("pink f", "Pink Floyd"),
    ("kings of", "Kings of Leon"),
    ("30 sec", "30 Seconds to Mars"),
    ("k", "Katy Perry"),
    ("floyd", "Pink Floyd"),
    ("gaga", "Lady Gaga"),
    ("monkeys", "Arctic Monkeys"),
    ("chili peppers", "Red Hot Chili Peppers"),
    ("stone age", "Queens of the Stone Age"),
    ("swift", "Taylor Swift"),
    ("zeppelin", "Led Zeppelin"),
    ("maiden", "Iron Maiden"),
    ("the kil", "The Killers"),
    ("mettalica", "Metallica"),
    ("shakira", "Shakira"),
]
WRITTEN_SECOND = [
    ("daft pnk", "Daft Punk"),
    ("doors", "The Doors"),
    ("led zep", "Led Zeppelin"),
    ("nine inch", "Nine Inch Nails"),
    ("system of a down", "System of a Down"),
    ("snowpatrol", "Snow Patrol"),
    ("kanye", "Kanye West"),
    ("eminen", "Eminem"),
    ("amy winhouse", "Amy Winehouse"),
    ("david bowe", "David Bowie"),
    ("bowie", "David Bowie"),
    ("u2", "U2"),
    ("mylene farmer", "Mylène Farmer"),
    ("cafe del mar", "Café Del Mar"),
    ("anahi", "Anahí"),
    ("legiao urbana", "Legião Urbana"),
    ("roisin murphy", "Róisín Murphy"),
    ("maximo park", "Maxïmo Park"),
    ("janelle monae", "Janelle Monáe"),
    ("frederic chopin", "Frédéric Chopin"),
    ("xx", "The xx"),
    ("pet shop", "Pet Shop Boys"),
    ("depech mode", "Depeche Mode"),
    ("nightwsh", "Nightwish"),
    ("within temptaton", "Within Temptation"),
    ("the black eyed peas", "Black Eyed Peas"),
    ("marilyn mansion", "Marilyn Manson"),
    ("foo figthers", "Foo Fighters"),
    ("cristina aguilera", "Christina Aguilera"),
    ("offspring", "The Offspring"),
    ("ting tings", "The Ting Tings"),
    ("lil wayne", "Lil' Wayne"),
    ("bob marley and the wailers", "Bob Marley & The Wailers"),
    ("nick cave & the bad seeds", "Nick Cave and the Bad Seeds"),
    ("iron & wine", "Iron & Wine"),
    ("angels and airwaves", "Angels & Airwaves"),
    ("mary j blige", "Mary J. Blige"),
    ("bb king", "B.B. King"),
    ("dr dre", "Dr. Dre"),
    ("t rex", "T. Rex"),
    ("mr big", "Mr. Big"),
    ("jason derulo", "Jason Derülo"),
    ("queensryche", "Queensrÿche"),
    ("tokio hotel", "Tokio Hotel"),
    ("kylie", "Kylie Minogue"),
    ("black sab", "Black Sabbath"),
    ("alanis", "Alanis Morissette"),
]
WRITTEN_AFTER = [
    ("red hot chil", "Red Hot Chili Peppers"),
    ("arcade fir", "Arcade Fire"),
    ("deth cab", "Death Cab for Cutie"),
    ("kings of lion", "Kings of Leon"),
    ("joy divison", "Joy Division"),
    ("yeah yeah yeahs", "Yeah Yeah Yeahs"),
    ("the smashing pumkins", "The Smashing Pumpkins"),
    ("avenged sevenfol", "Avenged Sevenfold"),
    ("arctic monkey", "Arctic Monkeys"),
    ("pussycat dolls", "The Pussycat Dolls"),
    ("black eyed pees", "Black Eyed Peas"),
    ("madona", "Madonna"),
    ("brittney", "Britney Spears"),
    ("gorilaz", "Gorillaz"),
    ("massive atack", "Massive Attack"),
    ("portishead", "Portishead"),
    ("beyonse", "Beyoncé"),
    ("ramstein", "Rammstein"),
    ("sigur", "Sigur Rós"),
    ("christina", "Christina Aguilera"),
    ("kelly clarks", "Kelly Clarkson"),
    ("paramour", "Paramore"),
    ("placeb", "Placebo"),
    ("evanescense", "Evanescence"),
    ("30 seconds to mars", "30 Seconds to Mars"),
    ("thirty seconds to mars", "30 Seconds to Mars"),
    ("justin timberlak", "Justin Timberlake"),
    ("my chemical", "My Chemical Romance"),
    ("mcr", "My Chemical Romance"),
    ("the veronica", "The Veronicas"),
]
QUERIES = WRITTEN_FIRST + WRITTEN_SECOND + WRITTEN_AFTER


@pytest.fixture(scope="module")
def matcher(hetrec):
    return hetrec.name_matcher


def ranked(matcher, text: str, n: int = 10) -> list[str]:
    return [matcher.names[h.index] for h in matcher.search(text, n)]


def quality(matcher, queries) -> tuple[float, float, list]:
    """Share of queries whose expected artist comes first, MRR over the top 10, the misses."""
    ranks = []
    for text, expected in queries:
        names = ranked(matcher, text)
        ranks.append(names.index(expected) + 1 if expected in names else None)
    share = float(np.mean([r == 1 for r in ranks]))
    mrr = float(np.mean([1.0 / r if r else 0.0 for r in ranks]))
    misses = [(q, e, r) for (q, e), r in zip(queries, ranks, strict=True) if r != 1]
    return share, mrr, misses


def test_every_expected_artist_is_in_the_catalogue(matcher):
    names = set(matcher.names)
    assert len(QUERIES) >= 40
    assert [e for _, e in QUERIES if e not in names] == []


def test_first_hit_share_and_mrr(matcher):
    share, mrr, misses = quality(matcher, QUERIES)
    held_out, _, _ = quality(matcher, WRITTEN_AFTER)
    print(f"\n{len(QUERIES)} queries: {share:.3f} right at rank 1, MRR {mrr:.3f}; misses {misses}")
    print(f"written after the rules were fixed ({len(WRITTEN_AFTER)}): {held_out:.3f} at rank 1")
    # Measured 0.993 and 0.993 (150 / 151); held out 0.967 (29 / 30). The issue's target: 0.9.
    assert share >= 0.95, misses
    assert mrr >= 0.95, misses
    assert held_out >= 0.9


@pytest.fixture(scope="module")
def model_dir(hetrec, tmp_path_factory):
    from tastemaker.models import create_model

    return create_model("popularity").fit(hetrec).save(tmp_path_factory.mktemp("m") / "model")


def test_the_issues_names_resolve_as_the_cli_needs(matcher):
    for typed, name in [
        ("Bjork", "Björk"),
        ("beatles", "The Beatles"),
        ("Radiohed", "Radiohead"),
        ("Guns N Roses", "Guns N' Roses"),
    ]:
        assert matcher.names[matcher.resolve(typed).index] == name


@pytest.mark.parametrize("typed, name", [("Bjork", "Björk"), ("Radiohed", "Radiohead")])
def test_cli_similar_takes_names_as_typed(capsys, model_dir, typed, name):
    code, out, err = run_cli(capsys, "similar", model_dir, "--item", typed, "--n", "3")
    assert code == 0, err
    assert f"most similar to {name}" in " ".join(out.split())  # the title, however wrapped
    if typed == "Radiohed":  # a guess is said, on stderr
        assert "taking 'Radiohed' as Radiohead" in err


def test_cli_lists_candidates_when_unsure(capsys, model_dir):
    code, _, err = run_cli(capsys, "similar", model_dir, "--item", "Kings of")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "did you mean Kings of Leon, Kings of Convenience" in err


def test_the_service_ranks_with_the_same_matcher(model_dir, matcher):
    from fastapi.testclient import TestClient

    from tastemaker.serving import ServeSettings, create_app, load_bundle

    settings = ServeSettings(model_dir=model_dir)
    with TestClient(create_app(settings, load_bundle(model_dir, settings))) as client:
        for text, first in [("bjork", "Björk"), ("k", "Katy Perry"), ("beat", "The Beatles")]:
            items = client.get("/v1/items", params={"search": text, "n": 8}).json()["items"]
            assert items[0]["name"] == first
            assert [it["name"] for it in items] == ranked(matcher, text, 8)
        # No short names padding the list (the issue: Dio, Head, Brad, Radu after Radiohead).
        items = client.get("/v1/items", params={"search": "radiohead"}).json()["items"]
        assert [it["name"] for it in items][:1] == ["Radiohead"]
        assert not {"Dio", "Head", "Brad", "Radu"} & {it["name"] for it in items}
        # A posted history takes names as folded, never as guesses.
        body = {"history": [{"item": "bjork", "count": 3}, {"item": "Radiohed", "count": 1}]}
        answer = client.post("/v1/recommendations", json=body).json()
        assert answer["unmatched"] == ["Radiohed"]
        missing = client.get("/v1/items/Radiohed/similar")
        assert missing.status_code == 404 and "did you mean: Radiohead" in missing.json()["detail"]

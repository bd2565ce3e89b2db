"""The page's tags in headless Chromium: tag chips on artist cards, and starting from a tag
(typed, picked from the suggestions, or clicked on a card)."""

from __future__ import annotations

import httpx
import pytest
from test_browser import browser, interactions, server, serving  # noqa: F401  (shared fixtures)

from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.testing import with_item_tags

pytestmark = pytest.mark.browser


def item_tags(n_items: int) -> list[list[str]]:
    """Items 0-39 shoegaze, every third of 0-59 also dream pop, the rest disco."""
    return [
        (["shoegaze"] if i < 40 else ["disco"]) + (["dream pop"] if i % 3 == 0 and i < 60 else [])
        for i in range(n_items)
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = synthetic_interactions(users=150, artists=300, listens=20_000, seed=4)
    data = with_item_tags(data, item_tags(data.n_items))
    model = create_model("als", factors=16, iterations=6, seed=0).fit(data)
    with serving(model.save(tmp_path_factory.mktemp("tag-page") / "model")) as url:
        yield url


def card_names(page) -> list[str]:
    return page.locator("#similar li .artist").all_inner_texts()


def test_start_from_a_tag_and_from_a_cards_tag_chip(served, browser):  # noqa: F811
    url = served
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/")
    page.wait_for_selector("#tag-box:not([hidden])")
    # Popular artists (shown at start) already carry their tags as chips.
    page.wait_for_selector("#similar li .tag")

    page.type("#tag-search", "drea", delay=30)
    option = page.locator("#tag-suggestions li", has_text="dream pop").first
    option.wait_for(state="visible", timeout=10_000)
    assert "20 artists" in option.inner_text()
    option.click()
    page.wait_for_selector("#explore-title:has-text('Artists tagged dream pop')")
    page.wait_for_function("document.querySelectorAll('#similar li').length === 12")
    expected = httpx.get(f"{url}/v1/tags/dream pop/items", params={"n": 12}).json()["items"]
    assert card_names(page) == [entry["name"] for entry in expected]
    for card in page.locator("#similar li").all():
        assert "dream pop" in card.locator(".tag").all_inner_texts()
    assert page.input_value("#playlist-seed") == "dream pop"  # "From this tag" is ready

    # A card's "shoegaze" chip starts from that tag.
    page.locator("#similar li .tag", has_text="shoegaze").first.click()
    page.wait_for_selector("#explore-title:has-text('Artists tagged shoegaze')")
    expected = httpx.get(f"{url}/v1/tags/shoegaze/items", params={"n": 12}).json()["items"]
    page.wait_for_function(
        "names => [...document.querySelectorAll('#similar li .artist')]"
        ".map(b => b.textContent).join('|') === names",
        arg="|".join(entry["name"] for entry in expected),
    )
    for card in page.locator("#similar li").all():
        assert "shoegaze" in card.locator(".tag").all_inner_texts()
    assert page.input_value("#tag-search") == "shoegaze"

    # Recommend from the tag's top 5: they become the list; the recommendations' cards
    # carry chips too.
    page.click("#tag-to-list")
    page.wait_for_function("document.querySelectorAll('#my-artists li').length === 5")
    liked = page.locator("#my-artists li .chip-name").all_inner_texts()
    assert liked == [entry["name"] for entry in expected[:5]]
    page.wait_for_selector("#recommendations li .tag")
    recommended = page.locator("#recommendations li .artist").all_inner_texts()
    assert recommended and not set(recommended) & set(liked)
    # Enter on typed text takes the first suggestion; an unknown tag says so.
    page.fill("#tag-search", "")
    page.type("#tag-search", "disc", delay=30)
    page.locator("#tag-suggestions li", has_text="disco").wait_for(timeout=10_000)
    page.press("#tag-search", "Enter")
    page.wait_for_selector("#explore-title:has-text('Artists tagged disco')")
    page.fill("#tag-search", "zydeco")
    page.press("#tag-search", "Enter")
    page.wait_for_selector("#explore-hint:has-text('no item is tagged')")
    assert errors == []
    page.close()


def test_without_tags_the_tag_box_stays_hidden(server, browser):  # noqa: F811
    page = browser.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#similar li').length === 12")
    assert page.locator("#tag-box").is_hidden()
    assert page.locator("#similar li .tag").count() == 0
    assert failed == []  # no probe of the tag routes (they answer 404 without tags)
    page.close()

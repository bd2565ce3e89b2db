"""The page's "Make a playlist" in headless Chromium: from the liked artists, from an artist
and from a tag, with reasons and a JSPF download."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import polars as pl
import pytest
from test_browser import browser, serving  # noqa: F401  (the shared Chromium fixture)

from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.synth import synthetic_listens
from tastemaker.data.top_tracks import attach_tracks
from tastemaker.data.tracks import ITEM_TAG_COLUMNS
from tastemaker.models import create_model

pytestmark = pytest.mark.browser
TAG = "dreampop"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    listens = synthetic_listens(users=150, artists=300, listens=30_000, seed=3, bots=0).lazy()
    data = attach_tracks(listens, interactions_from_listens(listens))
    tags = pl.DataFrame(
        {"item": list(range(0, 60, 2)), "tag": [TAG] * 30, "weight": list(range(30, 0, -1))}
    ).cast(ITEM_TAG_COLUMNS)
    data = dataclasses.replace(data, tracks=dataclasses.replace(data.tracks, item_tags=tags))
    model = create_model("als", factors=16, iterations=6, seed=0).fit(data)
    with serving(model.save(tmp_path_factory.mktemp("page") / "model")) as url:
        yield url, data


def test_make_a_playlist_from_the_list_an_artist_and_a_tag(served, browser):  # noqa: F811
    url, data = served
    listeners = data.user_items.getnnz(axis=0)
    names = data.item_metadata["name"].to_list()
    popular = [names[int(i)] for i in (-listeners).argsort()[:2]]
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/")
    page.wait_for_selector("#model-info:has-text('als model')")
    for name in popular:
        page.fill("#search", "")
        page.type("#search", name[:6].lower(), delay=20)
        option = page.locator("#suggestions li", has_text=name).first
        option.wait_for(state="visible", timeout=10_000)
        option.click()
        page.locator("#my-artists li", has_text=name).wait_for(timeout=10_000)

    page.select_option("#playlist-mode", "exploration")
    page.click("#playlist-from-list")
    page.wait_for_function("document.querySelectorAll('#playlist li').length === 30")
    reasons = page.locator("#playlist li .reason").all_inner_texts()
    assert all(reasons) and any(r.startswith("similar to ") for r in reasons)
    tracks = page.locator("#playlist li .track").all_inner_texts()
    assert not any(t.split(" – ")[0] in popular for t in tracks)  # exploration: new artists

    with page.expect_download() as download:
        page.click("#playlist-download")
    document = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert len(document["playlist"]["track"]) == 30

    page.fill("#playlist-seed", popular[0])
    page.click("#playlist-from-artist")
    page.wait_for_selector(f"#playlist-status:has-text('Radio: artist:({popular[0]})')")
    reasons = page.locator("#playlist li .reason").all_inner_texts()
    assert f"you asked for {popular[0]}" in reasons or f"similar to {popular[0]}" in reasons

    page.fill("#playlist-seed", TAG)
    page.click("#playlist-from-tag")
    page.wait_for_selector(f"#playlist-status:has-text('tag:({TAG})')")
    assert all(TAG in r for r in page.locator("#playlist li .reason").all_inner_texts())
    page.close()
    assert not errors, errors

"""The web page in real headless Chromium (Debian's chromium, driven by Playwright): search as
you type, add artists, see recommendations with reasons, explore similar artists."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.serving import ServeSettings, create_app, load_bundle

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def interactions():
    return synthetic_interactions(users=400, artists=800, listens=40_000, seed=2)


@pytest.fixture(scope="module")
def server(interactions, tmp_path_factory):
    """uvicorn on a free loopback port, in a thread of this process."""
    model = create_model("als", factors=16, iterations=6, seed=0).fit(interactions)
    with serving(model.save(tmp_path_factory.mktemp("browser") / "model")) as url:
        yield url


@contextlib.contextmanager
def serving(directory, **settings_fields):
    """The service of the model folder ``directory``: uvicorn on a free loopback port, in a
    thread of this process; yields its base URL (the page tests share it). Keyword arguments
    are ServeSettings fields (``bench_floor=True``)."""
    settings = ServeSettings(model_dir=directory, **settings_fields)
    app = create_app(settings, load_bundle(directory, settings))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium"
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860},
        )
        yield context
        context.close()


def test_search_add_recommend_explore(server, browser, interactions, tmp_path):
    listeners = interactions.user_items.getnnz(axis=0)
    # Three well-known artists of one listener's history, typed as a person would.
    user = int(interactions.user_items.getnnz(axis=1).argmax())
    heard = interactions.user_items[user].indices
    picks = heard[(-listeners[heard]).argsort()[:3]]
    names = [interactions.item_metadata["name"][int(i)] for i in picks]

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/")
    page.wait_for_selector("#model-info:has-text('als model')")

    for name in names:
        page.fill("#search", "")
        page.type("#search", name[:5].lower(), delay=20)  # as-you-type search
        option = page.locator("#suggestions li", has_text=name).first
        option.wait_for(state="visible", timeout=10_000)
        option.click()
        page.locator("#my-artists li", has_text=name).wait_for(timeout=10_000)

    assert page.locator("#my-artists li").count() == 3
    results = page.locator("#recommendations li")
    results.first.wait_for(timeout=10_000)
    page.wait_for_function("document.querySelectorAll('#recommendations li').length >= 10")
    texts = results.all_inner_texts()
    shown = [page.locator("#recommendations li .artist").nth(i).inner_text() for i in range(3)]
    assert not set(shown) & set(names)  # the artists you gave are not recommended back
    reasons = page.locator("#recommendations li .reason").all_inner_texts()
    assert reasons and all(r.startswith("because you listened to ") for r in reasons)
    assert all(r.removeprefix("because you listened to ") in names for r in reasons)
    assert len(texts) >= 10

    # One click on a recommended artist explores it: its similar artists.
    first = shown[0]
    page.locator("#recommendations li .artist").first.click()
    page.wait_for_selector(f"#explore-title:has-text('Artists similar to {first}')")
    page.locator("#similar li").first.wait_for(timeout=10_000)
    similar = page.locator("#similar li .artist").all_inner_texts()
    assert len(similar) >= 5 and first not in similar
    # ... and a similar artist can be explored in turn.
    page.locator("#similar li .artist").first.click()
    page.wait_for_selector(f"#explore-title:has-text('Artists similar to {similar[0]}')")

    screenshot = tmp_path / "page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    # Kept for a person to look at (the path is printed with -s).
    print(f"screenshot: {screenshot}")
    assert not errors, errors
    # The page's own API calls are the service's: the recommendations match a direct request.
    direct = httpx.post(
        server + "/v1/recommendations?n=12",
        json={"history": [{"item": interactions.items.id(int(i)), "count": 1} for i in picks]},
    ).json()
    assert shown == [it["name"] for it in direct["items"][:3]]


def test_enter_adds_the_first_hit_of_the_services_ranking(server, browser, interactions):
    """Typing a name (folded: lower case, '&' as 'and') and pressing Enter at once, before
    the suggestions for it arrive, adds the service's first hit for that text; the page's
    icon is served and nothing it asks for answers an error."""
    listeners = interactions.user_items.getnnz(axis=0)
    names = interactions.item_metadata["name"].to_list()
    target = next(int(i) for i in (-listeners).argsort() if " & " in names[i] or len(names[i]) > 12)
    typed = names[target].replace("&", "and").lower()
    expected = httpx.get(server + "/v1/items", params={"search": typed, "n": 8}).json()
    assert expected["items"][0]["name"] == names[target]

    page = browser.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else 0)
    page.goto(server + "/")
    page.wait_for_selector("#model-info:has-text('als model')")
    page.fill("#search", typed)  # the whole text at once: no suggestions yet
    page.press("#search", "Enter")
    page.locator("#my-artists li", has_text=names[target]).wait_for(timeout=10_000)
    assert page.locator("#my-artists li").count() == 1
    assert page.locator("#my-artists li").get_attribute("data-item") == expected["items"][0]["item"]

    icon = httpx.get(server + "/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    page.close()
    assert not failed, failed


def test_evaluation_report_fits_a_1200px_page(browser, tmp_path):
    """The report of several models at three cut-offs with a spread over folds (the widest
    metrics table the CLI writes) does not scroll sideways in a 1200 px window."""
    from tastemaker.evaluation.metrics import metric_names
    from tastemaker.evaluation.report import write_report

    keys = metric_names([5, 10, 20])
    rng = np.random.default_rng(0)
    models = ["popularity", "als", "bpr", "itemknn", "ease", "neumf"]
    result = {
        "split": {"name": "user-kfold", "label": "user 5-fold", "full_ranking": True},
        "k": [5, 10, 20],
        "data": {"name": "hetrec2011-lastfm-2k (hetrec)", "users": 1892, "items": 17632},
        "warnings": ["only 12 test users: ..."],
        "results": [
            {
                "model": m,
                "params": {},
                "metrics": {k: float(rng.random()) for k in keys},
                "std": {k: float(rng.random() / 10) for k in keys},
                "fit_seconds": 12.3,
                "evaluate_seconds": 4.5,
            }
            for m in models
        ],
    }
    page_path = write_report(result, tmp_path / "report")
    page = browser.new_page()
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(page_path.as_uri())
    title = "Evaluation: hetrec2011-lastfm-2k (hetrec), user-kfold split, full ranking"
    assert page.title() == title
    assert page.locator("p.warn", has_text="only 12 test users").count() == 1
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " ...[...document.querySelectorAll('.table')].map(t => t.scrollWidth - t.clientWidth)]"
    )
    page.close()
    assert widths[0] <= widths[1], widths  # the page itself never scrolls sideways
    assert widths[2] <= 0, widths  # and the metrics table needs no scrolling of its own

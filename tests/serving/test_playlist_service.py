"""The playlist routes of the service (``serving/playlist_routes.py``)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.synth import synthetic_listens
from tastemaker.data.top_tracks import attach_tracks
from tastemaker.models import create_model
from tastemaker.serving import ServeSettings, create_app
from tastemaker.serving.playlist_routes import PlaylistBody


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    listens = synthetic_listens(users=50, artists=100, listens=15_000, seed=5, bots=0).lazy()
    data = attach_tracks(listens, interactions_from_listens(listens))
    model = create_model("als", factors=8, iterations=5, seed=0).fit(data)
    directory = model.save(tmp_path_factory.mktemp("m") / "als")
    with TestClient(create_app(ServeSettings(model_dir=directory))) as client:
        yield client, model


def test_a_users_playlist_as_json_with_reasons(served):
    client, model = served
    user = model.interactions_.users.id(2)
    answer = client.get(
        f"/v1/users/{user}/playlist", params={"mode": "mix", "n": 20, "day": "2025-02-01"}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["requested"] == 20 and len(body["tracks"]) + body["short_by"] == 20
    assert all(t["reason"] for t in body["tracks"])
    again = client.get(
        f"/v1/users/{user}/playlist", params={"mode": "mix", "n": 20, "day": "2025-02-01"}
    )
    assert again.json() == body  # the same all day
    PlaylistBody.model_validate(body)  # the schema the docs show


def test_concurrent_requests_get_the_playlists_of_sequential_ones(served):
    client, model = served
    asked = [
        (f"/v1/users/{model.interactions_.users.id(u)}/playlist", {"mode": m, "n": 15, "day": d})
        for u in range(6)
        for m in ("jams", "mix")
        for d in ("2025-02-01", "2025-02-02")
    ]
    alone = [client.get(path, params=params).json() for path, params in asked]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda a: client.get(a[0], params=a[1]).json(), asked))
    assert together == alone
    assert len({json.dumps(a["tracks"]) for a in alone}) > len(alone) // 2  # they differ


def test_formats_by_query_and_by_accept(served):
    client, model = served
    user = model.interactions_.users.id(1)
    jspf = client.get(f"/v1/users/{user}/playlist", params={"format": "jspf", "n": 10})
    assert jspf.headers["content-type"].startswith("application/jspf+json")
    assert len(json.loads(jspf.text)["playlist"]["track"]) == 10
    xspf = client.get(f"/v1/users/{user}/playlist", headers={"Accept": "application/xspf+xml"})
    assert ET.fromstring(xspf.content).tag.endswith("playlist")
    m3u = client.get(f"/v1/users/{user}/playlist", headers={"Accept": "audio/mpegurl, */*"})
    assert m3u.text.startswith("#EXTM3U")


def test_posted_history_and_radio_prompt(served):
    client, model = served
    names = model.interactions_.item_names.to_list()
    history = [{"item": names[0], "count": 5}, {"item": names[3]}]
    answer = client.post("/v1/playlists", json={"history": history, "mode": "exploration", "n": 15})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["tracks"]) == 15
    radio = client.post(
        "/v1/playlists",
        json={"prompt": f"artist:({names[0]})", "mode": "hard", "n": 12, "format": "m3u8"},
    )
    assert radio.status_code == 200 and radio.text.count("#EXTINF") <= 12


@pytest.mark.parametrize(
    "request_args, status",
    [
        (("get", "/v1/users/nobody/playlist", {}), 404),
        (("get", "/v1/users/{u}/playlist", {"params": {"mode": "daily"}}), 422),
        (("get", "/v1/users/{u}/playlist", {"params": {"n": 0}}), 422),
        (("post", "/v1/playlists", {"json": {}}), 400),
        (("post", "/v1/playlists", {"json": {"prompt": "genre:(x)"}}), 400),
        (("post", "/v1/playlists", {"json": {"history": [{"item": "zzz-none"}]}}), 404),
        (("post", "/v1/playlists", {"json": {"history": [{"item": "x"}], "mode": "easy"}}), 404),
    ],
)
def test_bad_requests_answer_json_errors(served, request_args, status):
    client, model = served
    method, path, kwargs = request_args
    answer = getattr(client, method)(path.format(u=model.interactions_.users.id(0)), **kwargs)
    assert answer.status_code == status
    assert "detail" in answer.json()

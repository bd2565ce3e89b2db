"""The HTTP service in-process: endpoints, bad input, metrics, reloads and ``tastemaker serve``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from conftest import run_cli
from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.models.base import Recommender
from tastemaker.serving import ServeSettings, create_app, load_bundle

TOKEN = "s3cret-token-for-the-tests-0123456789"


@pytest.fixture(scope="module")
def interactions():
    return synthetic_interactions(users=300, artists=600, listens=30_000, seed=0)


@pytest.fixture(scope="module")
def model_dirs(interactions, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    als = create_model("als", factors=16, iterations=6, seed=0).fit(interactions)
    popularity = create_model("popularity").fit(interactions)
    return {
        "als": als.save(root / "als"),
        "popularity": popularity.save(root / "popularity"),
        "data": interactions.save(root / "data"),
        "root": root,
    }


@pytest.fixture(scope="module")
def als(model_dirs):
    from tastemaker.models import load_model

    return load_model(model_dirs["als"])


@pytest.fixture(scope="module")
def client(model_dirs):
    settings = ServeSettings(model_dir=model_dirs["als"], admin_token=TOKEN)
    with TestClient(create_app(settings)) as c:
        yield c


def names_of(interactions, indices):
    return [interactions.item_metadata["name"][int(i)] for i in indices]


# -- recommendations ---------------------------------------------------------------------------
def test_user_recommendations_match_the_model(client, als, interactions):
    user_id = interactions.users.id(7)
    body = client.get(f"/v1/users/{user_id}/recommendations", params={"n": 8}).json()
    assert body["user"] == user_id and body["model"] == "als"
    expected, scores = als.recommend(np.asarray([7]), 8, exclude_heard=True)
    assert [it["item"] for it in body["items"]] == [interactions.items.id(i) for i in expected[0]]
    np.testing.assert_allclose([it["score"] for it in body["items"]], scores[0], rtol=1e-5)
    assert [it["name"] for it in body["items"]] == names_of(interactions, expected[0])
    heard = set(interactions.user_items[7].indices.tolist())
    heard_names = set(names_of(interactions, heard))
    for item in body["items"]:
        assert interactions.items.index(item["item"]) not in heard
        assert item["reason"].startswith("because you listened to ")
        assert item["reason"].removeprefix("because you listened to ") in heard_names
        assert item["listeners"] >= 1


def test_reasons_are_the_base_explanation(client, als, interactions):
    # Lists carry the base explanation (item similarity x log plays) for every item at once;
    # /explain serves ALS's exact decomposition (see test_explain_names_history_items).
    user_id = interactions.users.id(21)
    body = client.get(f"/v1/users/{user_id}/recommendations", params={"n": 5}).json()
    history = interactions.user_items[21]
    for item in body["items"]:
        index = interactions.items.index(item["item"])
        top, _ = Recommender.explain(als, history, index, n=1)
        assert item["reason"] == f"because you listened to {names_of(interactions, top)[0]}"
    plain = client.get(f"/v1/users/{user_id}/recommendations?n=5&reasons=false").json()
    assert all(it["reason"] is None for it in plain["items"])


def test_heard_items_can_be_included(client, als, interactions):
    user_id = interactions.users.id(3)
    body = client.get(f"/v1/users/{user_id}/recommendations?n=20&exclude_heard=false").json()
    expected, _ = als.recommend(np.asarray([3]), 20, exclude_heard=False)
    assert [it["item"] for it in body["items"]] == [interactions.items.id(i) for i in expected[0]]


def test_history_recommendations_by_name_and_id(client, als, interactions):
    picks = [5, 40, 77]
    names = names_of(interactions, picks)
    history = [
        {"item": names[0].upper(), "count": 3},
        {"item": interactions.items.id(picks[1]), "count": 1},
        {"item": f"  {names[2].lower()}  "},
        {"item": "No Such Artist 123"},
    ]
    body = client.post("/v1/recommendations?n=10", json={"history": history}).json()
    assert body["user"] is None and body["unmatched"] == ["No Such Artist 123"]
    row = np.zeros((1, interactions.n_items), np.float32)
    row[0, picks] = [3, 1, 1]
    import scipy.sparse as sp

    expected, _ = als.recommend_for_history(sp.csr_matrix(row), 10)
    got = [interactions.items.index(it["item"]) for it in body["items"]]
    assert got == expected[0].tolist()
    assert not set(got) & set(picks)
    assert all(
        it["reason"].removeprefix("because you listened to ") in names for it in body["items"]
    )


def test_similar_items_by_id_and_by_name(client, als, interactions):
    item_id = interactions.items.id(12)
    by_id = client.get(f"/v1/items/{item_id}/similar?n=6").json()
    expected, _ = als.similar_items(np.asarray([12]), 6)
    assert [it["item"] for it in by_id["items"]] == [interactions.items.id(i) for i in expected[0]]
    assert by_id["item"]["item"] == item_id
    name = names_of(interactions, [12])[0]
    by_name = client.get(f"/v1/items/{name.swapcase()}/similar", params={"n": 6}).json()
    # The name resolves to the most listened-to item of that name (maybe item 12 itself).
    assert by_name["item"]["name"] == name and len(by_name["items"]) == 6


def test_search_prefix_word_fuzzy_and_popular(client, interactions):
    listeners = np.bincount(interactions.user_items.indices, minlength=interactions.n_items)
    target = int(np.argmax(listeners))
    name = names_of(interactions, [target])[0]
    hits = client.get("/v1/items", params={"search": name[:4].lower(), "n": 10}).json()["items"]
    assert name in [h["name"] for h in hits]
    assert all(h["name"].casefold().startswith(name[:4].casefold()) for h in hits[:1])
    typo = name[:3] + name[4:] if len(name) > 5 else name + "x"
    hits = client.get("/v1/items", params={"search": typo}).json()["items"]
    assert name in [h["name"] for h in hits]
    multi = next(n for n in interactions.item_metadata["name"] if len(n.split()) >= 2)
    second_word = multi.split()[1]
    hits = client.get("/v1/items", params={"search": second_word, "n": 50}).json()["items"]
    assert any(h["name"] == multi for h in hits)
    popular = client.get("/v1/items?n=5").json()["items"]
    assert [h["listeners"] for h in popular] == sorted(listeners.tolist(), reverse=True)[:5]


def test_explain_names_history_items(client, als, interactions):
    user_id = interactions.users.id(9)
    rec = client.get(f"/v1/users/{user_id}/recommendations?n=1").json()["items"][0]
    body = client.get(f"/v1/users/{user_id}/explain", params={"item": rec["name"]}).json()
    heard_ids = {interactions.items.id(i) for i in interactions.user_items[9].indices}
    assert body["because"] and all(c["item"] in heard_ids for c in body["because"])
    weights = [c["weight"] for c in body["because"]]
    assert weights == sorted(weights, reverse=True)
    assert body["reason"].startswith("because you listened to " + body["because"][0]["name"])
    assert body["item"]["item"] == rec["item"]


# -- bad input ---------------------------------------------------------------------------------
def test_unknown_ids_answer_404_with_a_json_body(client, interactions):
    for path in (
        "/v1/users/nobody/recommendations",
        "/v1/items/nothing-like-this/similar",
        f"/v1/users/{interactions.users.id(0)}/explain?item=nothing-like-this",
        "/v1/users/nobody/explain?item=x",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "unknown" in response.json()["detail"]
    response = client.post("/v1/recommendations", json={"history": [{"item": "zzz"}]})
    assert response.status_code == 404 and "none of the 1" in response.json()["detail"]


def test_out_of_range_and_malformed_input_answers_422(client, interactions):
    user_id = interactions.users.id(0)
    for n in (0, -3, 1001, "ten"):
        assert (
            client.get(f"/v1/users/{user_id}/recommendations", params={"n": n}).status_code == 422
        )
        assert client.get("/v1/items", params={"n": n}).status_code == 422
    assert client.get(f"/v1/users/{user_id}/recommendations?n=1000").status_code == 200
    for body in (
        b"{not json",
        b"[]",
        b'{"history": []}',
        b'{"history": [{"item": ""}]}',
        b'{"history": [{"item": "a", "count": -1}]}',
        b'{"history": "a"}',
    ):
        response = client.post(
            "/v1/recommendations", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, body
        assert "detail" in response.json()


def test_large_histories_and_bodies_answer_413(client):
    history = [{"item": f"a{i}", "count": 1} for i in range(10_001)]
    response = client.post("/v1/recommendations", json={"history": history})
    assert response.status_code == 413 and "10001" in response.json()["detail"]
    big = b'{"history": [' + b'{"item": "x"},' * 80_000 + b'{"item": "x"}]}'
    assert len(big) > 1_000_000
    response = client.post(
        "/v1/recommendations", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413

    def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(40):
            yield b" " * 50_000

    response = client.post(
        "/v1/recommendations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


# -- operations --------------------------------------------------------------------------------
def test_healthz_and_metrics(client, interactions):
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["model"]["model"] == "als" and health["model"]["items"] == interactions.n_items
    assert health["model"]["retrieval"]["kind"] == "exact"  # 600 items: below the threshold
    client.get(f"/v1/users/{interactions.users.id(1)}/recommendations")
    client.get("/v1/users/nobody/recommendations")
    text = client.get("/metrics").text
    assert 'route="/v1/users/{user_id:path}/recommendations",status="200"' in text
    assert 'route="/v1/users/{user_id:path}/recommendations",status="404"' in text
    assert "tastemaker_request_duration_seconds_bucket" in text
    assert f'version="{health["model"]["version"]}"' in text
    assert "nobody" not in text  # labels are route templates, not raw paths


def test_bench_floor_route_is_off_by_default_and_sized_like_an_answer(
    client, model_dirs, interactions
):
    assert client.get("/v1/floor/u/recommendations").status_code == 404
    settings = ServeSettings(model_dir=model_dirs["als"], bench_floor=True)
    with TestClient(create_app(settings)) as floor_client:
        real = floor_client.get(f"/v1/users/{interactions.users.id(1)}/recommendations?n=10")
        floor = floor_client.get("/v1/floor/anyone/recommendations?n=10")
        assert floor.status_code == 200 and len(floor.json()["items"]) == 10
        # A real answer computed once: the same fields and (ids, names alike) the same size.
        assert floor.json()["items"][0].keys() == real.json()["items"][0].keys()
        assert abs(len(floor.content) - len(real.content)) < 0.05 * len(real.content)
        assert floor_client.get("/v1/floor/x/recommendations?n=0").status_code == 422
        assert "/v1/floor" not in str(floor_client.get("/openapi.json").json()["paths"])


def test_page_and_openapi_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="search"' in page.text
    assert client.get("/static/app.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/users/{user_id}/recommendations" in spec["paths"]
    assert "/v1/admin/reload" in spec["paths"]


# -- reload and artifacts ----------------------------------------------------------------------
def corrupted_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    blob = bytearray((target / "model.npz").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (target / "model.npz").write_bytes(bytes(blob))
    return target


def test_reload_refuses_bad_directories_and_swaps_good_ones(model_dirs, interactions, tmp_path):
    settings = ServeSettings(model_dir=model_dirs["als"], admin_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad = corrupted_copy(model_dirs["als"], tmp_path / "corrupted")
    with TestClient(create_app(settings)) as c:
        before = c.get("/healthz").json()["model"]["version"]
        assert c.post("/v1/admin/reload", json={"model_dir": str(bad)}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert c.post("/v1/admin/reload", json={"model_dir": "x"}, headers=wrong).status_code == 401
        for directory, why in (
            (bad, "checksum mismatch"),
            (model_dirs["data"], "holds a 'interactions'"),
            (tmp_path, "no manifest.json"),
            (tmp_path / "missing", "not a directory"),
        ):
            r = c.post("/v1/admin/reload", json={"model_dir": str(directory)}, headers=auth)
            assert r.status_code == 400, directory
            assert (
                why in r.json()["detail"] and "previous model keeps serving" in r.json()["detail"]
            )
            assert c.get("/healthz").json()["model"]["version"] == before
        user = interactions.users.id(4)
        assert c.get(f"/v1/users/{user}/recommendations").json()["model"] == "als"
        r = c.post(
            "/v1/admin/reload", json={"model_dir": str(model_dirs["popularity"])}, headers=auth
        )
        assert r.status_code == 200 and r.json()["previous_version"] == before
        assert c.get("/healthz").json()["model"]["model"] == "popularity"
        body = c.get(f"/v1/users/{user}/recommendations?n=3").json()
        assert body["model"] == "popularity"
        assert all(it["reason"] == "popular with listeners" for it in body["items"])
        metrics = c.get("/metrics").text
        assert 'tastemaker_model_reloads_total{outcome="refused"} 4.0' in metrics
        assert 'tastemaker_model_reloads_total{outcome="swapped"} 1.0' in metrics


def test_admin_routes_are_off_without_a_token(model_dirs):
    bundle = load_bundle(model_dirs["popularity"], ServeSettings())
    with TestClient(create_app(ServeSettings(), bundle)) as c:
        r = c.post("/v1/admin/reload", json={"model_dir": str(model_dirs["als"])})
        assert r.status_code == 404
        assert "/v1/admin/reload" not in c.get("/openapi.json").json()["paths"]


def test_serve_refuses_corrupted_and_foreign_directories(model_dirs, tmp_path, capsys):
    bad = corrupted_copy(model_dirs["als"], tmp_path / "corrupted")
    for directory, why in (
        (bad, "checksum mismatch"),
        (model_dirs["data"], "holds a 'interactions'"),
        (tmp_path / "nothing", "not a directory"),
    ):
        for workers in ("1", "2"):  # with several, the check runs in a spawned process
            code, _, err = run_cli(capsys, "serve", directory, "--port", "1", "--workers", workers)
            lines = [line for line in err.splitlines() if line.strip()]
            assert code == 2 and len(lines) == 1, err
            assert why in lines[0] and "Traceback" not in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_with_two_workers(model_dirs, tmp_path):
    """A reload reaches every worker (it used to swap one: 10 of 30 requests afterwards came
    from the old model), and a malformed model is refused by all of them."""
    port = free_port()
    env = {**os.environ, "TASTEMAKER_ADMIN_TOKEN": TOKEN}
    cmd = [
        sys.executable,
        "-c",
        "from tastemaker.cli import main; main()",
        "serve",
        str(model_dirs["popularity"]),
        "--port",
        str(port),
        "--workers",
        "2",
        "--no-access-log",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def workers_answer(expected: str) -> set[str]:
        """Fresh connections until both workers answered (each loaded its model at its own
        time); every answer must come from ``expected``."""
        loaded = set()
        for _ in range(80):
            health = httpx.get(f"{url}/healthz", timeout=10).json()["model"]
            assert health["model"] == expected
            r = httpx.get(f"{url}/v1/items?n=2", timeout=10)
            assert r.status_code == 200 and r.json()["model"] == expected
            loaded.add(health["loaded_at"])
            if len(loaded) == 2:
                break
        return loaded

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{url}/healthz", timeout=2)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)
        assert len(workers_answer("popularity")) == 2
        r = httpx.post(
            f"{url}/v1/admin/reload",
            json={"model_dir": str(model_dirs["als"])},
            headers=auth,
            timeout=60,
        )
        assert r.status_code == 200
        assert len(workers_answer("als")) == 2  # straight after the answer, in both workers
        bad = nan_model_copy(model_dirs["popularity"], tmp_path / "nan")
        r = httpx.post(
            f"{url}/v1/admin/reload", json={"model_dir": str(bad)}, headers=auth, timeout=60
        )
        assert r.status_code == 400 and "NaN" in r.json()["detail"]
        assert len(workers_answer("als")) == 2
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert b"access log off (--access-log to log every request)" in proc.stdout.read()


def nan_model_copy(source: Path, target: Path) -> Path:
    """A well-formed directory (valid checksums) whose learned arrays are all NaN."""
    from tastemaker.artifacts import load_arrays, read_manifest, save_arrays, write_manifest

    shutil.copytree(source, target)
    arrays = load_arrays(target / "model.npz")
    poisoned = {
        k: np.full_like(v, np.nan) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in arrays.items()
    }
    save_arrays(target / "model.npz", **poisoned)
    manifest = read_manifest(target, verify=False)
    extra = {k: v for k, v in manifest.items() if k not in ("kind", "format_version", "files")}
    write_manifest(target, manifest["kind"], manifest["format_version"], **extra)
    return target


def test_reload_validates_before_swapping(model_dirs, interactions, tmp_path):
    settings = ServeSettings(model_dir=model_dirs["popularity"], admin_token=TOKEN)
    poisoned = nan_model_copy(model_dirs["als"], tmp_path / "nan")
    with TestClient(create_app(settings)) as c:
        r = c.post(
            "/v1/admin/reload",
            json={"model_dir": str(poisoned)},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 400 and "NaN" in r.json()["detail"]
        assert c.get("/healthz").json()["model"]["model"] == "popularity"


def test_requests_during_reloads_see_one_model_or_the_other(model_dirs, interactions):
    from concurrent.futures import ThreadPoolExecutor

    settings = ServeSettings(model_dir=model_dirs["als"], admin_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    users = [interactions.users.id(i) for i in range(40)]
    with TestClient(create_app(settings)) as c:

        def ask(user):
            r = c.get(f"/v1/users/{user}/recommendations?n=5")
            return r.status_code, r.json()["model"], len(r.json()["items"])

        def reload(i):
            target = model_dirs["popularity" if i % 2 == 0 else "als"]
            return c.post("/v1/admin/reload", json={"model_dir": str(target)}, headers=auth)

        with ThreadPoolExecutor(6) as pool:
            asked = [pool.submit(ask, u) for u in users * 3]
            reloads = [pool.submit(reload, i) for i in range(4)]
            answers = [f.result() for f in asked]
            statuses = [f.result().status_code for f in reloads]
    assert all(code == 200 and n == 5 for code, _, n in answers)
    assert {model for _, model, _ in answers} <= {"als", "popularity"}
    assert set(statuses) <= {200, 409} and 200 in statuses


def test_ann_retrieval_in_the_service(model_dirs, als, interactions):
    settings = ServeSettings(
        model_dir=model_dirs["als"], ann_threshold=100, ann_head_items=60, ann_recall_users=300
    )
    with TestClient(create_app(settings)) as c:
        retrieval = c.get("/healthz").json()["model"]["retrieval"]
        assert retrieval["kind"] == "hnsw" and retrieval["head_items"] == 60
        assert retrieval["recall_at_10"] >= 0.95 and retrieval["recall_users"] == 300
        assert f"tastemaker_ann_recall_at_10 {retrieval['recall_at_10']}" in c.get("/metrics").text
        hits = 0
        for u in range(0, 300, 10):
            body = c.get(f"/v1/users/{interactions.users.id(u)}/recommendations?n=10").json()
            got = {interactions.items.index(it["item"]) for it in body["items"]}
            assert not got & set(interactions.user_items[u].indices.tolist())
            expected, _ = als.recommend(np.asarray([u]), 10)
            hits += len(got & set(expected[0].tolist()))
        assert hits / 300 >= 0.95
        history = [{"item": interactions.items.id(i)} for i in (1, 2, 3)]
        body = c.post("/v1/recommendations", json={"history": history}).json()
        assert len(body["items"]) == 10


@hyp_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_known_history_is_answered(client, interactions, data):
    names = interactions.item_metadata["name"].to_list()
    ids = interactions.items.to_list()
    by_name = st.tuples(st.sampled_from(names), st.sampled_from([str.lower, str.upper, str]))
    entries = data.draw(
        st.lists(
            st.one_of(by_name.map(lambda t: t[1](t[0])), st.sampled_from(ids)),
            min_size=1,
            max_size=25,
        )
    )
    counts = data.draw(st.lists(st.floats(1e-3, 1e6), min_size=len(entries), max_size=len(entries)))
    n = data.draw(st.integers(1, 1000))
    history = [{"item": e, "count": c} for e, c in zip(entries, counts, strict=True)]
    r = client.post(f"/v1/recommendations?n={n}", json={"history": history})
    assert r.status_code == 200
    body = r.json()
    assert body["unmatched"] == []
    got = [it["item"] for it in body["items"]]
    assert 0 < len(got) <= n and len(set(got)) == len(got)
    assert not set(got) & set(entries)  # items given by id are never recommended back
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_serving_imports_no_readers_evaluation_or_tuning(model_dirs):
    code = (
        "import sys\n"
        "from tastemaker.serving import ServeSettings, create_app, load_bundle\n"
        f"create_app(ServeSettings(), load_bundle({str(model_dirs['als'])!r}, ServeSettings()))\n"
        "banned = ('tastemaker.data.readers', 'tastemaker.evaluation', 'tastemaker.tuning')\n"
        "print(sorted(m for m in sys.modules if m.startswith(banned)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

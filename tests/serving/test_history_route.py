"""The posted-history route's fast path (``routes.HistoryRoute``): plain requests skip
FastAPI's body and query handling; every answer, error or not, must be the one FastAPI's own
handling gives, and the answers the same bytes as building them from their parts."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.serving import ServeSettings, create_app, routes
from tastemaker.serving.answers import recommendation_list, recommendations_body
from tastemaker.serving.schemas import HistoryRequest

JSON = {"content-type": "application/json"}
# FastAPI reads this as JSON too, but the fast path leaves it to FastAPI: the reference.
SLOW = {"content-type": "application/json; charset=utf-8"}


@pytest.fixture(scope="module")
def interactions():
    return synthetic_interactions(users=200, artists=600, listens=20_000, seed=3)


@pytest.fixture(scope="module")
def client(interactions, tmp_path_factory):
    model = create_model("als", factors=16, iterations=5, seed=0).fit(interactions)
    directory = model.save(tmp_path_factory.mktemp("history") / "als")
    # ANN retrieval whose head has rows enough for top_candidates' groups (600 // 128 = 4).
    settings = ServeSettings(
        model_dir=directory, ann_threshold=100, ann_head_items=520, ann_recall_users=100
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def fast_calls(monkeypatch):
    """What ``plain_history`` returned on each request: None where FastAPI handled it."""
    calls = []
    parse = routes.plain_history

    def spy(body):
        calls.append(parse(body))
        return calls[-1]

    monkeypatch.setattr(routes, "plain_history", spy)
    return calls


def _both(client, body: bytes, query: str = "n=10"):
    """The answer through the fast path's content type and through FastAPI's alone."""
    fast = client.post(f"/v1/recommendations?{query}", content=body, headers=JSON)
    slow = client.post(f"/v1/recommendations?{query}", content=body, headers=SLOW)
    return fast, slow


# -- the parser against the schema ------------------------------------------------------------
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2 * 10**9),
    st.integers(10**18, 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(0, 2e9),
    st.text(max_size=3),
    st.text(min_size=499, max_size=502),
)
_entries = st.one_of(
    st.fixed_dictionaries({"item": st.text(min_size=1, max_size=20)}),
    st.fixed_dictionaries(
        {"item": st.text(min_size=1, max_size=20), "count": st.floats(1e-6, 1e9)}
    ),
    st.dictionaries(st.sampled_from(["item", "count", "other"]), _scalars, max_size=3),
    _scalars,
)
_bodies = st.one_of(
    st.fixed_dictionaries({"history": st.lists(_entries, max_size=6)}),
    st.dictionaries(
        st.sampled_from(["history", "exclude_heard", "x"]),
        st.one_of(st.lists(_entries, max_size=4), _scalars),
        max_size=3,
    ),
    _scalars,
)


@hyp_settings(max_examples=400, deadline=None)
@given(value=_bodies)
def test_plain_history_accepts_only_what_the_schema_accepts_with_its_values(value):
    body = json.dumps(value).encode()
    plain = routes.plain_history(body)
    try:
        model = HistoryRequest.model_validate(json.loads(body))
    except ValidationError:
        assert plain is None
        return
    if plain is not None:
        items, counts, exclude_heard = plain
        assert items == [e.item for e in model.history]
        assert counts == [e.count for e in model.history]
        assert all(type(c) is float for c in counts)
        assert exclude_heard == model.exclude_heard


@given(
    history=st.lists(
        st.fixed_dictionaries(
            {"item": st.text(min_size=1, max_size=500)},
            optional={"count": st.one_of(st.integers(1, 10**9), st.floats(1e-300, 1e9))},
        ),
        min_size=1,
        max_size=20,
    ),
    exclude=st.one_of(st.none(), st.booleans()),
)
def test_plain_history_takes_every_plain_valid_body(history, exclude):
    value: dict = {"history": history}
    if exclude is not None:
        value["exclude_heard"] = exclude
    body = orjson.dumps(value)
    assert routes.plain_history(body) is not None
    items, counts, exclude_heard = routes.plain_history(body)
    model = HistoryRequest.model_validate_json(body)
    assert (items, counts, exclude_heard) == (
        [e.item for e in model.history],
        [e.count for e in model.history],
        model.exclude_heard,
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b'{"history": [{"item": "a", "count": NaN}]}',
        b'{"history": [{"item": "a", "count": Infinity}]}',
        b'{"history": [{"item": "a", "count": 1e400}]}',
        b'{"history": [{"item": "\\ud800"}]}',
        b'\xef\xbb\xbf{"history": [{"item": "a"}]}',
        b'{"history": [{"item": "a", "count": true}]}',
        b'{"history": [{"item": "a", "count": "2"}]}',
        b'{"history": [{"item": "a"}], "exclude_heard": 0}',
        b'{"history": [{"item": "a"}], "exclude_heard": "false"}',
        b'{"history": [{"item": "a", "count": 100000000000000000000000}]}',
    ],
)
def test_unusual_bodies_are_left_to_fastapi(body):
    assert routes.plain_history(body) is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", (10, True)),
        (b"n=10", (10, True)),
        (b"n=1000&reasons=false", (1000, False)),
        (b"reasons=true&n=7", (7, True)),
        (b"n=1001", None),
        (b"n=0", None),
        (b"n=010", None),
        (b"n=+5", None),
        (b"n=5&n=6", None),
        (b"n=", None),
        (b"n", None),
        (b"reasons=False", None),
        (b"reasons=0", None),
        (b"n=%31", None),
        (b"other=1", None),
        (b"n=10&", None),
        (b"n=99999", None),
    ],
)
def test_plain_query(query, expected):
    assert routes.plain_query(query) == expected


# -- the route: both paths give one answer ----------------------------------------------------
def test_plain_requests_take_the_fast_path_and_answer_as_fastapi_does(
    client, interactions, fast_calls
):
    ids = interactions.items.to_list()
    names = interactions.item_metadata["name"].to_list()
    rng = np.random.default_rng(0)
    cases = []
    for trial in range(30):
        picks = rng.choice(len(ids), int(rng.integers(1, 60)), replace=True)  # duplicates too
        history = [
            {"item": ids[i] if trial % 3 else names[i].upper(), "count": int(rng.integers(1, 9))}
            for i in picks
        ]
        history.append({"item": "no such artist"})
        body: dict = {"history": history}
        if trial % 4 == 1:
            body["exclude_heard"] = False
        query = ["n=10", "n=1", "n=200&reasons=false", "", "reasons=true&n=33"][trial % 5]
        cases.append((orjson.dumps(body), query))
    for body, query in cases:
        fast, slow = _both(client, body, query)
        assert fast.status_code == slow.status_code == 200
        assert fast.content == slow.content
        assert fast.json()["unmatched"] == ["no such artist"]
    # Each case: one fast parse (JSON), then none for FastAPI's content type.
    assert len(fast_calls) == len(cases) and all(call is not None for call in fast_calls)


@pytest.mark.parametrize(
    ("body", "query"),
    [
        (b"{not json", "n=10"),
        (b"[]", "n=10"),
        (b'{"history": []}', "n=10"),
        (b'{"history": [{"item": ""}]}', "n=10"),
        (b'{"history": [{"item": "a", "count": -1}]}', "n=10"),
        (b'{"history": [{"item": "a", "count": 0}]}', "n=10"),
        (b'{"history": [{"item": "a", "count": 1e10}]}', "n=10"),
        (b'{"history": [{"item": "a", "count": NaN}]}', "n=10"),
        (b'{"history": [{"item": "a", "extra": 1}]}', "n=10"),
        (b'{"history": [{"item": "a"}], "extra": 1}', "n=10"),
        (b'{"history": "a"}', "n=10"),
        (b'{"history": [{"item": "zzz"}]}', "n=10"),  # 404: none known
        (b'{"history": [{"item": "zzz"}]}', "n=0"),
        (b'{"history": [{"item": "zzz"}]}', "n=ten"),
        (b'{"history": [{"item": "zzz"}]}', "n=5&n=2000"),
        (b'{"history": [{"item": "zzz"}]}', "reasons=maybe"),
        (b"", "n=10"),
    ],
)
def test_errors_are_fastapis_whichever_path(client, body, query):
    fast, slow = _both(client, body, query)
    assert fast.status_code == slow.status_code >= 400
    assert fast.content == slow.content
    assert fast.headers["content-type"] == "application/json"


def test_limits_hold_on_the_fast_path(client):
    history = [{"item": f"a{i}"} for i in range(10_001)]
    fast, slow = _both(client, orjson.dumps({"history": history}))
    assert fast.status_code == slow.status_code == 413 and fast.content == slow.content
    assert "10001" in fast.json()["detail"]
    big = b'{"history": [' + b'{"item": "x"},' * 80_000 + b'{"item": "x"}]}'
    fast, slow = _both(client, big)
    assert fast.status_code == slow.status_code == 413 and fast.content == slow.content

    def chunks():  # no Content-Length: FastAPI's handler reads it, and the limit holds
        for _ in range(40):
            yield b" " * 50_000

    response = client.post("/v1/recommendations", content=chunks(), headers=JSON)
    assert response.status_code == 413
    missing = client.post("/v1/recommendations", content=b'{"history": [{"item": "x"}]}')
    assert missing.status_code == 422  # no content type: FastAPI's answer, as before


def test_the_answer_is_built_from_its_parts(client, interactions):
    """The route's bytes against the answer assembled here the way the route did before the
    fast path (a COO matrix summing duplicates, the retriever, the reasons, the list)."""
    app = client.app
    bundle = app.state.holder.current
    rng = np.random.default_rng(1)
    for _ in range(20):
        picks = rng.choice(interactions.n_items, 40, replace=True)
        counts = rng.integers(1, 20, len(picks)).astype(np.float64)
        body = {
            "history": [
                {"item": interactions.items.id(int(i)), "count": float(c)}
                for i, c in zip(picks, counts, strict=True)
            ]
        }
        got = client.post("/v1/recommendations?n=12", json=body).content
        row = sp.coo_matrix(
            (counts, (np.zeros(len(picks), int), picks)), shape=(1, interactions.n_items)
        ).tocsr()
        row.sum_duplicates()
        history = sp.csr_matrix(row, dtype=np.float32)
        assert np.array_equal(bundle.history_matrix(picks, counts).toarray(), history.toarray())
        ids, scores = bundle.retriever.for_history(history, 12, True)
        keep = (ids >= 0) & np.isfinite(scores)
        ids, scores = ids[keep], scores[keep]
        because = bundle.reasons(history.indices, history.data, ids)
        items = recommendation_list(bundle.catalogue.fragments, ids, scores, because, False)
        assert got == recommendations_body(bundle.name, items, None, [])
        assert all(math.isfinite(it["score"]) for it in orjson.loads(got)["items"])


@hyp_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_history_answers_alike_on_both_paths(client, interactions, data):
    ids = interactions.items.to_list()
    entries = data.draw(
        st.lists(
            st.fixed_dictionaries(
                {"item": st.one_of(st.sampled_from(ids), st.text(min_size=1, max_size=8))},
                optional={"count": st.one_of(st.integers(-1, 10**10), st.floats())},
            ),
            max_size=12,
        )
    )
    body = {"history": entries, "exclude_heard": data.draw(st.booleans())}
    query = data.draw(st.sampled_from(["n=10", "n=3&reasons=false", "n=0", "", "n=1000"]))
    fast, slow = _both(client, json.dumps(body).encode(), query)
    assert fast.status_code == slow.status_code
    assert fast.content == slow.content


def test_history_rows_are_what_scipy_would_build(client, interactions):
    bundle = client.app.state.holder.current
    rng = np.random.default_rng(2)
    for size in (1, 2, 50, 300):
        picks = rng.integers(0, interactions.n_items, size)  # duplicates from 300 on
        counts = rng.random(size) * 10
        row = bundle.history_matrix(picks.tolist(), counts.tolist())
        columns, inverse = np.unique(picks, return_inverse=True)
        expected = sp.csr_matrix(
            (
                np.bincount(inverse, weights=counts).astype(np.float32),
                columns.astype(np.int32),
                np.asarray([0, len(columns)], np.int32),
            ),
            shape=(1, interactions.n_items),
        )
        row.check_format(full_check=True)
        assert type(row) is sp.csr_matrix and row.shape == expected.shape
        for name in ("data", "indices", "indptr"):
            got, want = getattr(row, name), getattr(expected, name)
            assert got.dtype == want.dtype and np.array_equal(got, want), name
        assert row.has_canonical_format
    assert bundle._empty_row().nnz == 0  # the template is never written to

"""The user route's fast path (``routes.UserRoute``): requests with a plain query string skip
FastAPI's parameter handling; every answer, error or not, must be the one FastAPI's own
handling gives (the same status, headers that matter and bytes)."""

from __future__ import annotations

import urllib.parse

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.serving import ServeSettings, create_app, routes
from tastemaker.serving.schemas import MAX_N


@pytest.fixture(scope="module")
def interactions():
    return synthetic_interactions(users=200, artists=600, listens=20_000, seed=5)


@pytest.fixture(scope="module")
def client(interactions, tmp_path_factory):
    model = create_model("als", factors=16, iterations=5, seed=0).fit(interactions)
    directory = model.save(tmp_path_factory.mktemp("user") / "als")
    settings = ServeSettings(
        model_dir=directory, ann_threshold=100, ann_head_items=520, ann_recall_users=100
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def paths(monkeypatch):
    """``get(url)`` -> (fast-path answer, FastAPI's answer, whether the fast path took it)."""
    parse = routes.plain_user_query

    def get(client, url: str):
        taken = []

        def spy(query):
            taken.append(parse(query))
            return taken[-1]

        monkeypatch.setattr(routes, "plain_user_query", spy)
        fast = client.get(url)
        monkeypatch.setattr(routes, "plain_user_query", lambda query: None)
        slow = client.get(url)
        monkeypatch.setattr(routes, "plain_user_query", parse)
        return fast, slow, bool(taken) and taken[-1] is not None

    return get


def _same(fast, slow) -> None:
    assert fast.status_code == slow.status_code
    assert fast.content == slow.content
    assert fast.headers.get("content-type") == slow.headers.get("content-type")
    assert fast.headers.get("content-length") == slow.headers.get("content-length")


def _user_url(user: str, query: str = "") -> str:
    path = urllib.parse.quote(user, safe="")
    return f"/v1/users/{path}/recommendations" + (f"?{query}" if query else "")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", (10, True, True)),
        (b"n=10", (10, True, True)),
        (b"n=1", (1, True, True)),
        (b"n=%d" % MAX_N, (MAX_N, True, True)),
        (b"n=5&reasons=false", (5, True, False)),
        (b"exclude_heard=false&n=7", (7, False, True)),
        (b"reasons=true&exclude_heard=true", (10, True, True)),
        (b"n=%d" % (MAX_N + 1), None),
        (b"n=0", None),
        (b"n=010", None),
        (b"n=-1", None),
        (b"n=", None),
        (b"n", None),
        (b"n=1&n=2", None),
        (b"n=1e2", None),
        (b"n=%31", None),
        (b"reasons=1", None),
        (b"reasons=True", None),
        (b"exclude_heard=no", None),
        (b"other=1", None),
        (b"n=10&", None),
        (b"&n=10", None),
        (b"n=99999", None),
        (b"n=\xd9\xa3", None),  # a non-ASCII digit: FastAPI's to judge
    ],
)
def test_plain_user_query(query, expected):
    assert routes.plain_user_query(query) == expected


def test_plain_requests_take_the_fast_path_and_answer_as_fastapi_does(client, interactions, paths):
    users = interactions.users
    for i in range(0, len(users), 7):
        user = users.id(i)
        for query in ("", "n=1", "n=10&reasons=false", "n=50&exclude_heard=false", "n=600"):
            fast, slow, taken = paths(client, _user_url(user, query))
            assert taken, query
            assert fast.status_code == 200, fast.text
            _same(fast, slow)


@pytest.mark.parametrize(
    "query",
    [
        "n=0",
        "n=-3",
        "n=abc",
        "n=1001",
        f"n={MAX_N + 1}",
        "n=1.5",
        "reasons=maybe",
        "exclude_heard=2",
        "n=",
        "n=10&n=20",
        "n=010",
        "reasons=1&exclude_heard=off",
        "n=%2B5",
        "extra=1&n=3",
    ],
)
def test_other_queries_are_fastapis_whichever_path(client, interactions, paths, query):
    fast, slow, taken = paths(client, _user_url(interactions.users.id(3), query))
    assert not taken
    _same(fast, slow)


@pytest.mark.parametrize(
    "user", ["no such user", "", "a/b", "caf\u00e9", "%41", "x" * 300, "0 ", "u?v"]
)
@pytest.mark.parametrize("query", ["", "n=10", "n=0", "reasons=false"])
def test_unknown_users_answer_alike(client, paths, user, query):
    fast, slow, _ = paths(client, _user_url(user, query))
    _same(fast, slow)
    assert fast.status_code in (404, 422), fast.text


def test_no_model_answers_503_alike(paths, interactions):
    # Without the lifespan (no ``with``) nothing is loaded: the holder stays empty.
    client = TestClient(create_app(ServeSettings(), bundle=None))
    fast, slow, taken = paths(client, _user_url(interactions.users.id(0), "n=5"))
    assert taken
    assert fast.status_code == 503
    _same(fast, slow)


_tokens = st.sampled_from(
    [
        "n=1",
        "n=10",
        "n=999",
        "n=1000",
        "n=1001",
        "n=0",
        "n=07",
        "n=x",
        "reasons=true",
        "reasons=false",
        "reasons=1",
        "exclude_heard=true",
        "exclude_heard=false",
        "exclude_heard=off",
        "z=1",
        "n",
        "",
    ]
)


@hyp_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_request_answers_alike_on_both_paths(client, interactions, paths, data):
    user = data.draw(
        st.one_of(
            st.integers(0, len(interactions.users) - 1).map(interactions.users.id),
            st.text(min_size=1, max_size=8),
        )
    )
    query = "&".join(data.draw(st.lists(_tokens, max_size=4)))
    fast, slow, _ = paths(client, _user_url(user, query))
    _same(fast, slow)

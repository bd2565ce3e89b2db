"""In-process CPU of the serving hot path's parts, ours against the reference in the same run.

- fold-in of a posted 50-item history: ``ALS.history_vectors`` (our cached-Gram Cholesky
  solve) against weighting + implicit's ``recalculate_user`` (what it replaced);
- the HNSW tail at several efSearch: CPU per tail search and recall@10 against exact scoring;
- a whole ANN user query (``FactorIndex.for_user``) with the exact head as served (a numpy
  product, heard rows set to -inf, ``argpartition``) against faiss's flat search for n + the
  heard items, filtered (what it replaced), same answers checked;
- the user route's answer whole and by part (search, reasons, the list), each part alone and
  after the search (what the search's memory traffic costs the parts after it);
- the posted-history route by part (``--parts history``: body parsing three ways, the name
  lookups, the history row, the fold-in, the search, the reasons);
- whole requests through the app's ASGI interface (``--parts asgi``: the floor, the user
  route, a posted 50-item history; routing, middleware, FastAPI's parameter and body handling,
  the handler, all but uvicorn's HTTP parsing and the socket); where the tree has the user
  route's fast path, also "floor-fast": the floor's answer behind that fast path, routed where
  the user route is (what the floor would cost without FastAPI's parameter handling).

CPU is this thread's (``time.thread_time``): on a shared machine wall time mostly measures the
wait for a core. Uses the model ``bench/serve.py --out DIR`` trains (DIR/model).

    .venv/bin/python bench/serve_parts.py --model /tmp/serve-model/model [--graph /tmp/graph.faiss]
    .venv/bin/python bench/serve_parts.py --model /tmp/serve-model/model --parts head
    PYTHONPATH=/tmp/base/src:bench .venv/bin/python bench/serve_parts.py --model ... --parts asgi
    (another tree's code, measured by this script)
"""

from __future__ import annotations

import argparse
import gc
import time
import types
from pathlib import Path

import numpy as np
import orjson
import scipy.sparse as sp

import tastemaker.threads as thread_policy
from busy import load_average
from tastemaker.models import load_model
from tastemaker.serving.retrieval import AnnSettings, FactorIndex


def cpu_us(calls, repeats: int = 5) -> float:
    """Best of ``repeats`` passes over ``calls``: CPU microseconds per call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        for call in calls:
            call()
        best = min(best, time.thread_time() - start)
    return 1e6 * best / len(calls)


def fold_in(model, rounds: int, rng) -> None:
    n_items = model.item_factors_.shape[0]
    histories = [
        sp.csr_matrix(
            (rng.integers(1, 30, 50).astype(np.float32), (np.zeros(50, int), items)),
            shape=(1, n_items),
        )
        for items in (rng.choice(n_items, 50, replace=False) for _ in range(200))
    ]
    solver = model._fitted_solver()
    ours = [lambda h=h: model.history_vectors(h) for h in histories]
    reference = [
        lambda h=h: solver.recalculate_user(np.arange(1), model._weigh(h)) for h in histories
    ]
    diff = max(
        float(np.abs(model.history_vectors(h) - r()).max())
        for h, r in zip(histories, reference, strict=True)
    )
    print(f"fold-in, 50 items: max |ours - implicit| {diff:.1e}")
    for round_ in range(rounds):
        a, b = cpu_us(reference), cpu_us(ours)
        print(
            f"  round {round_ + 1}: implicit {a:.1f} us, ours {b:.1f} us ({b / a:.2f}x); "
            f"{load_average()}"
        )


def tail(model, index: FactorIndex, users, queries, heard, ef_values) -> None:
    exact, _ = model.recommend(users, 10, exclude_heard=True)
    for ef in ef_values:
        index.settings = AnnSettings(ef_search=ef)
        index.tail.hnsw.efSearch = ef
        hits = 0
        for user, row in zip(users, exact, strict=True):
            ids, _ = index.for_user(int(user), 10, True)
            hits += len(np.intersect1d(ids, row[row >= 0]))
        calls = [
            lambda q=q, h=h: index._tail(q, h[~index.in_head[h]], 10)
            for q, h in zip(queries, heard, strict=True)
        ]
        print(
            f"efSearch {ef}: recall@10 {hits / (10 * len(users)):.4f}, "
            f"tail search {cpu_us(calls, 2):.1f} us; {load_average()}"
        )


def faiss_head(self, query, heard, n):
    """``FactorIndex._head`` as it was (``heard``: the heard items' rows in the head): faiss's
    flat search for n + the heard items, the heard ones filtered out by the item mask."""
    heard_items = self.head_items[heard]
    k = min(n + len(heard), len(self.head_items))
    scores, positions = self.head.search(query.reshape(1, self.dim), k)
    found = positions[0] >= 0
    ids = self.head_items[positions[0][found]]
    scores = scores[0][found]
    if len(heard):
        mask = self._heard_mask()
        mask[heard_items] = True
        keep = ~mask[ids]
        mask[heard_items] = False
        ids, scores = ids[keep], scores[keep]
    return ids[:n], scores[:n]


def head_scoring(index: FactorIndex, users, rounds: int) -> None:
    """A whole user query, the head as served (numpy product into a buffer, heard rows set to
    -inf, argpartition) against faiss's flat search with over-fetching (what it replaced)."""
    sizes = [int(index.in_head[index.model.user_items_[int(u)].indices].sum()) for u in users]
    calls = [lambda u=int(u): index.for_user(u, 10, True) for u in users]
    served = [c() for c in calls]
    reference = types.MethodType(faiss_head, index)
    index._head = reference
    before = [c() for c in calls]
    del index._head
    same = all(np.array_equal(a[0], b[0]) for a, b in zip(served, before, strict=True))
    worst = max(float(np.abs(a[1] - b[1]).max()) for a, b in zip(served, before, strict=True))
    print(
        f"user query, n = 10, heard items in the head: median {int(np.median(sizes))}, "
        f"max {max(sizes)}; same answers: {same} (scores within {worst:.1e})"
    )
    for round_ in range(rounds):
        index._head = reference
        a = cpu_us(calls, 3)
        del index._head
        b = cpu_us(calls, 3)
        print(
            f"  round {round_ + 1}: faiss head {a:.1f} us, numpy head {b:.1f} us ({b / a:.2f}x; "
            f"{a - b:.1f} us saved); {load_average()}"
        )


def route_parts(model, index: FactorIndex, users, rounds: int) -> None:
    """The user route's answer (``routes.user_answer``) whole and by part, each part alone
    over all users and after the search: parts that read model memory cost more once the
    search has filled the caches with the head's vectors."""
    from tastemaker.serving.answers import recommendation_list
    from tastemaker.serving.catalogue import Catalogue
    from tastemaker.serving.routes import user_answer
    from tastemaker.serving.state import LoadedModel, _item_vectors

    bundle = LoadedModel(
        model, Path("."), {}, "bench", index, Catalogue(model.interactions_, model)
    )
    bundle._item_vectors, bundle._item_norms = _item_vectors(model)
    users = [int(u) for u in users]
    ids = [model.interactions_.users.id(u) for u in users]
    found = {u: index.for_user(u, 10, True) for u in users}
    rows = {u: bundle.user_row(u) for u in users}
    because = {u: bundle.reasons(*rows[u], found[u][0]) for u in users}
    fragments = bundle.catalogue.fragments

    def after_search(part):
        def call(u):
            index.for_user(u, 10, True)
            part(u)

        return call

    reasons = lambda u: bundle.reasons(*rows[u], found[u][0])  # noqa: E731
    items = lambda u: recommendation_list(fragments, *found[u], because[u], False)  # noqa: E731
    parts = {
        "whole answer": lambda u, i: user_answer(bundle, i, u, 10, True, True),
        "search (for_user)": lambda u, i: index.for_user(u, 10, True),
        "reasons alone": lambda u, i: reasons(u),
        "list alone": lambda u, i: items(u),
        "search + reasons": lambda u, i: after_search(reasons)(u),
        "search + list": lambda u, i: after_search(items)(u),
    }
    pairs = list(zip(users, ids, strict=True))
    for round_ in range(rounds):
        figures = []
        for name, part in parts.items():
            calls = [lambda u=u, i=i, part=part: part(u, i) for u, i in pairs]
            figures.append(f"{name} {cpu_us(calls, 3):.1f} us")
        print(f"  round {round_ + 1}: " + ", ".join(figures) + f"; {load_average()}")


def _bundle(model, index):
    from tastemaker.serving.catalogue import Catalogue
    from tastemaker.serving.state import LoadedModel, _item_vectors

    bundle = LoadedModel(
        model, Path("."), {}, "bench", index, Catalogue(model.interactions_, model)
    )
    bundle._item_vectors, bundle._item_norms = _item_vectors(model)
    return bundle


def _histories(model, count: int, rng, length: int = 50) -> list[bytes]:
    """Posted bodies as bench/serve.py sends them: ``length`` of a real user's items, by id."""
    matrix, items = model.user_items_, model.interactions_.items
    bodies = []
    for user in rng.integers(0, matrix.shape[0], count):
        heard = matrix.indices[matrix.indptr[user] : matrix.indptr[user + 1]]
        pick = rng.choice(heard, min(length, len(heard)), replace=False)
        bodies.append(orjson.dumps({"history": [{"item": items.id(i), "count": 1} for i in pick]}))
    return bodies


class _Asgi:
    """Requests through the app's ASGI interface (routing, middleware, FastAPI's parameter and
    body handling, the handler): the server's work per request less uvicorn's HTTP parsing and
    the socket."""

    def __init__(self, app) -> None:
        self.app = app
        self.status = 0
        self.body = b""

    async def request(self, method: str, path: str, query: bytes, body: bytes = b"") -> bytes:
        headers = [(b"host", b"bench")]
        if method == "POST":
            headers += [(b"content-type", b"application/json"),
                        (b"content-length", b"%d" % len(body))]  # fmt: skip
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query, "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
        }  # fmt: skip
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        chunks = []

        async def send(message):
            if message["type"] == "http.response.start":
                self.status = message["status"]
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return b"".join(chunks)


def _fast_floor(app, ids) -> dict:
    """The floor's answer behind the user route's fast path (``routes.UserRoute``), first
    among the included routers as the user route is first in the first; {} on a tree
    without that fast path."""
    from fastapi import APIRouter
    from fastapi.responses import Response

    from tastemaker.serving import routes
    from tastemaker.serving.floor import floor, floor_body

    if not hasattr(routes, "UserRoute"):
        return {}

    class FastFloor(routes.APIRoute):
        def get_route_handler(self):
            standard = super().get_route_handler()

            async def handle(request):
                scope = request.scope
                if routes.plain_user_query(scope["query_string"]) is None:
                    return await standard(request)
                scope["path_params"]["user_id"]
                bundle, cached = request.app.state.holder.current, request.app.state.floor_cache
                if cached.get("bundle") is not bundle:
                    cached.update(bundle=bundle, body=floor_body(bundle))
                return Response(cached["body"], media_type="application/json")

            return handle

    router = APIRouter()
    path = "/v1/floor-fast/{user_id:path}/recommendations"
    router.add_api_route(path, floor, methods=["GET"], route_class_override=FastFloor)
    app.include_router(router)
    table = app.router.routes
    first = next((i for i, r in enumerate(table) if type(r).__name__ == "_IncludedRouter"), 0)
    table.insert(first, table.pop())
    return {
        "floor-fast": [("GET", f"/v1/floor-fast/{i}/recommendations", b"n=10", b"") for i in ids]
    }


def asgi(model, index: FactorIndex, users, rounds: int, rng) -> None:
    """Whole requests through the app (``--parts asgi``): the floor, the user route and a posted
    50-item history, CPU per request; the answers checked against the route's own code."""
    import asyncio

    from tastemaker.serving import ServeSettings, create_app

    bundle = _bundle(model, index)
    app = create_app(ServeSettings(bench_floor=True), bundle)
    client = _Asgi(app)
    ids = [model.interactions_.users.id(int(u)) for u in users]
    bodies = _histories(model, len(users), rng)
    kinds = {
        "floor": [("GET", f"/v1/floor/{i}/recommendations", b"n=10", b"") for i in ids],
        **_fast_floor(app, ids),
        "user": [("GET", f"/v1/users/{i}/recommendations", b"n=10", b"") for i in ids],
        "history": [("POST", "/v1/recommendations", b"n=10", b) for b in bodies],
    }
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()

    async def run(requests) -> float:
        start = time.thread_time()
        for request in requests:
            await client.request(*request)
            if client.status != 200:
                raise SystemExit(f"{request[1]}: status {client.status}")
        return time.thread_time() - start

    for requests in kinds.values():  # warm up: every item's fragments written once
        loop.run_until_complete(run(requests))
    gc.collect()
    gc.freeze()  # as the server does after a load
    sizes = {k: len(loop.run_until_complete(client.request(*v[0]))) for k, v in kinds.items()}
    print("answer bytes: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    for round_ in range(rounds):
        figures = {}
        for kind, requests in kinds.items():
            best = min(loop.run_until_complete(run(requests)) for _ in range(3))
            figures[kind] = 1e6 * best / len(requests)
        print(
            f"  round {round_ + 1}: "
            + ", ".join(f"{k} {v:.1f} us ({v / figures['floor']:.2f}x)" for k, v in figures.items())
            + f"; {load_average()}",
            flush=True,
        )
    loop.close()


def history_parts(model, index: FactorIndex, users, rounds: int, rng) -> None:
    """The history route by part (``--parts history``), each over the same 50-item bodies."""
    import json

    from tastemaker.serving.routes import _for_history
    from tastemaker.serving.schemas import HistoryRequest

    bundle = _bundle(model, index)
    bodies = _histories(model, len(users), rng)
    cat = bundle.catalogue
    parsed = [HistoryRequest.model_validate(json.loads(b)) for b in bodies]
    resolved = [[cat.resolve(e.item) for e in p.history] for p in parsed]
    rows = [
        (np.asarray(r, np.int64), np.asarray([e.count for e in p.history], np.float64))
        for r, p in zip(resolved, parsed, strict=True)
    ]
    histories = [bundle.history_matrix(*r) for r in rows]
    found = [index.for_history(h, 10, True) for h in histories]

    def resolve(p):
        return [cat.resolve(e.item) for e in p.history]

    parts = {
        "json.loads + validate": [
            lambda b=b: HistoryRequest.model_validate(json.loads(b)) for b in bodies
        ],
        "model_validate_json": [lambda b=b: HistoryRequest.model_validate_json(b) for b in bodies],
        "orjson.loads": [lambda b=b: orjson.loads(b) for b in bodies],
        "resolve x50": [lambda p=p: resolve(p) for p in parsed],
        "history_matrix": [lambda r=r: bundle.history_matrix(*r) for r in rows],
        "history_vectors": [lambda h=h: model.history_vectors(h) for h in histories],
        "for_history": [lambda h=h: index.for_history(h, 10, True) for h in histories],
        "reasons": [
            lambda h=h, f=f: bundle.reasons(h.indices, h.data, f[0])
            for h, f in zip(histories, found, strict=True)
        ],
        "_for_history": [
            lambda h=h: _for_history(bundle, h, 10, True, True, []) for h in histories
        ],
    }
    from tastemaker.serving import routes

    if hasattr(routes, "plain_history"):  # the fast path (absent from older trees)
        parts["plain_history"] = [lambda b=b: routes.plain_history(b) for b in bodies]
    for round_ in range(rounds):
        figures = [f"{name} {cpu_us(calls, 3):.1f} us" for name, calls in parts.items()]
        print(f"  round {round_ + 1}: " + ", ".join(figures) + f"; {load_average()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--graph", type=Path, default=None, help="HNSW graph file to reuse")
    parser.add_argument("--parts", default="fold-in,tail,head,route", help="comma-separated")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    model = load_model(args.model)
    thread_policy.pin(1)  # as the server does
    rng = np.random.default_rng(0)
    print(f"start: {load_average()}")
    if "fold-in" in parts:
        fold_in(model, args.rounds, rng)
    index = FactorIndex(model, AnnSettings(), tail_file=args.graph)
    matrix = model.user_items_
    users = np.sort(rng.choice(matrix.shape[0], min(args.users, matrix.shape[0]), replace=False))
    queries = np.ascontiguousarray(model.user_vectors(users), np.float32)
    heard = [
        matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]].astype(np.int64) for u in users
    ]
    if "head" in parts:
        head_scoring(index, users, args.rounds)
    if "route" in parts:
        route_parts(model, index, users, args.rounds)
    if "history" in parts:
        history_parts(model, index, users, args.rounds, rng)
    if "asgi" in parts:
        asgi(model, index, users, args.rounds, rng)
    if "tail" in parts:
        tail(model, index, users, queries, heard, (128, 96, 64, 48, 32))


if __name__ == "__main__":
    main()

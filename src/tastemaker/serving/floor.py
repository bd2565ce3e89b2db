"""The floor: a route of the same stack that answers a precomputed list, for ``bench/serve.py``.

What the web stack alone costs (HTTP parsing, middleware, routing, a path parameter, sending a
body of the same size as a real answer: one real answer, computed once), with no model,
index or serialisation work per request; the benchmark reports the real routes' server CPU
per request as a ratio to it. Off unless ``TASTEMAKER_BENCH_FLOOR`` is set.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tastemaker.serving.routes import N, user_answer
from tastemaker.serving.state import LoadedModel

floor_router = APIRouter(include_in_schema=False)


def floor_body(bundle: LoadedModel, n: int = 10) -> bytes:
    """A real answer of the user route (the first training user's top n, reasons included),
    computed once: the same fields, item records and size as what the route sends."""
    user_id = bundle.model.interactions_.users.id(0)
    return user_answer(bundle, user_id, 0, n, True, True)


@floor_router.get("/v1/floor/{user_id:path}/recommendations")
async def floor(
    user_id: str, request: Request, n: N = 10, exclude_heard: bool = True, reasons: bool = True
) -> Response:
    # The same parameters as the user route, parsed and validated by FastAPI. The user route
    # skips that handling for plain query strings (routes.UserRoute), so the difference
    # between the two is the model's work and building the answer, less FastAPI's parameter
    # handling (about 70 us in-process: docs/serving.md, eighth session).
    bundle = request.app.state.holder.current
    cached = request.app.state.floor_cache
    if cached.get("bundle") is not bundle:
        cached.update(bundle=bundle, body=floor_body(bundle))
    return Response(cached["body"], media_type="application/json")

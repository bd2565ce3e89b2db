"""HTTP routes: thin handlers that look ids up, ask the retriever or model, and shape answers.

Recommendation handlers are ``async``: where the answer is cheap (the ANN index, a small
catalogue, a short history) they compute it on the event loop, since a hop through the thread
pool costs more than the work; otherwise they run it in the pool. Other handlers are plain
``def`` (FastAPI runs them in its pool). Lists are written with orjson from plain dicts: the
response models (schemas) describe them in the OpenAPI spec, and validating each answer again
on the way out would double the cost of the route. Each handler reads the current model
bundle once, so a concurrent reload never mixes models. User requests and posted histories
take a fast path in front of FastAPI's parameter and body handling where the request is
plainly valid (``UserRoute``, ``HistoryRoute``; the parsers are in ``serving.plain``);
everything else gets FastAPI's own validation and answers.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tastemaker.errors import TastemakerError
from tastemaker.serving.answers import recommendation_list, recommendations_body
from tastemaker.serving.plain import plain_history, plain_query, plain_user_query
from tastemaker.serving.schemas import (
    MAX_N,
    Contribution,
    ErrorBody,
    Explanation,
    Health,
    HistoryRequest,
    Item,
    ModelInfo,
    Recommendations,
    ReloadRequest,
    ReloadResult,
    SearchResults,
    SimilarItems,
)
from tastemaker.serving.state import LoadedModel, load_bundle
from tastemaker.serving.workers import Busy, SharedModel

log = logging.getLogger("tastemaker.serving")

# FastAPI's type for the extra answers a route documents
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "Unknown user or item."}}
TOO_LARGE: Responses = {413: {"model": ErrorBody, "description": "History or body too large."}}
N = Annotated[int, Query(ge=1, le=MAX_N, description="How many items to return.")]

# Answers computed on the event loop at most this long (larger ones go to the thread pool).
INLINE_N = 100
INLINE_HISTORY = 1000

router = APIRouter()
admin_router = APIRouter(prefix="/v1/admin", tags=["admin"])


async def current_model(request: Request) -> LoadedModel:
    # async: a lookup, not worth a trip through the thread pool.
    bundle = request.app.state.holder.current
    if bundle is None:
        raise HTTPException(503, "no model loaded yet")
    return bundle


Bundle = Annotated[LoadedModel, Depends(current_model)]


# -- shaping answers ---------------------------------------------------------------------------
def _json(body: BaseModel) -> Response:
    """Serialize a response model directly. The models validate on construction; returning a
    Response spares FastAPI a second validation, done in the thread pool for ``def`` handlers."""
    return Response(body.model_dump_json(), media_type="application/json")


def _answer(payload: dict) -> Response:
    """A list answer written by orjson (scores are finite: ``_valid`` dropped the rest)."""
    return Response(orjson.dumps(payload), media_type="application/json")


def _raw(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _item(bundle: LoadedModel, index: int, score: float, reason: str | None = None) -> dict:
    """One ``schemas.Item``, as the dict orjson writes."""
    cat = bundle.catalogue
    return {
        "item": cat.ids[index],
        "name": cat.names[index],
        "score": float(score),
        "reason": reason,
        "listeners": int(cat.listeners[index]),
        "tags": cat.top_tags(index),
    }


def _valid(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Padding (-1 / -inf) and any non-finite score never reach JSON (which has no NaN).
    keep = (ids >= 0) & np.isfinite(scores)
    return (ids, scores) if keep.all() else (ids[keep], scores[keep])


def _recommended_items(
    bundle: LoadedModel,
    ids: np.ndarray,
    scores: np.ndarray,
    heard: tuple[np.ndarray, np.ndarray],
    with_reasons: bool,
) -> bytes:
    """The JSON array of a recommendation list, assembled from per-item fragments (answers)."""
    ids, scores = _valid(ids, scores)
    because = bundle.reasons(*heard, ids) if with_reasons else [None] * len(ids)
    popular = with_reasons and not bundle.personalised
    return recommendation_list(bundle.catalogue.fragments, ids, scores, because, popular)


async def _compute(inline: bool, function, *args):
    """``function(*args)`` on the event loop when cheap, else in the thread pool."""
    return function(*args) if inline else await run_in_threadpool(function, *args)


def _find_user(bundle: LoadedModel, user_id: str) -> int:
    index = bundle.user_index(user_id)
    if index is None:
        raise HTTPException(404, f"unknown user {user_id!r}")
    return index


def _find_item(bundle: LoadedModel, item: str) -> int:
    index = bundle.catalogue.resolve(item)
    if index is None:
        close = bundle.catalogue.suggest(item)
        hint = f"; did you mean: {', '.join(close)}?" if close else " (give an item id or a name)"
        raise HTTPException(404, f"unknown item {item!r}{hint}")
    return index


# -- recommendations ---------------------------------------------------------------------------
class UserRoute(APIRoute):
    """The user route with a fast path in front of FastAPI's request handling: a plain query
    string (``plain_user_query``) goes straight to the handler's work, with the path's
    ``user_id`` as Starlette's router matched it (FastAPI takes it from there too, as a
    ``str``: any value is valid); any other query goes through FastAPI's handler, which
    validates and answers it as for any route (every 422 is FastAPI's). The route's
    declaration (parameters, OpenAPI schema) is FastAPI's, unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()

        async def handle(request: Request) -> Response:
            scope = request.scope
            plain = plain_user_query(scope["query_string"])
            if plain is None:
                return await standard(request)
            return await user_recommendations(request, scope["path_params"]["user_id"], *plain)

        return handle


async def recommend_for_user(
    user_id: str,
    request: Request,
    n: N = 10,
    exclude_heard: bool = True,
    reasons: Annotated[bool, Query(description="Add 'because you listened to ...'.")] = True,
) -> Response:
    """Top-n items for a user of the training data (ids are the source's own)."""
    return await user_recommendations(request, user_id, n, exclude_heard, reasons)


router.add_api_route(
    "/v1/users/{user_id:path}/recommendations",
    recommend_for_user,
    methods=["GET"],
    response_model=Recommendations,
    responses=NOT_FOUND,
    tags=["recommendations"],
    route_class_override=UserRoute,
)


async def user_recommendations(
    request: Request, user_id: str, n: int, exclude_heard: bool, reasons: bool
) -> Response:
    """The answer to a validated user request (either path of ``UserRoute``)."""
    bundle = await current_model(request)  # called, not a dependency: cheaper per request
    user = _find_user(bundle, user_id)
    inline = bundle.inline and n <= INLINE_N
    return await _compute(inline, _for_user, bundle, user_id, user, n, exclude_heard, reasons)


def _for_user(bundle: LoadedModel, user_id: str, user: int, n, exclude_heard, reasons):
    return _raw(user_answer(bundle, user_id, user, n, exclude_heard, reasons))


def user_answer(
    bundle: LoadedModel, user_id: str, user: int, n: int, exclude_heard: bool, reasons: bool
) -> bytes:
    """The body of ``GET /v1/users/{user_id}/recommendations`` (the floor precomputes one)."""
    ids, scores = bundle.retriever.for_user(user, n, exclude_heard)
    items = _recommended_items(bundle, ids, scores, bundle.user_row(user), reasons)
    return recommendations_body(bundle.name, items, user_id, [])


# -- posted histories --------------------------------------------------------------------------
async def _plain_request(request: Request) -> tuple[list[str], list[float], bool, int, bool] | None:
    """The history route's inputs, read without FastAPI's machinery where the request is
    plain: a JSON body (content-type exactly application/json) of a declared length within
    the body limit, a plain query string, a plainly valid body. Else None."""
    content_type = length = None
    for name, value in request.scope["headers"]:
        if name == b"content-type" and content_type is None:
            content_type = value
        elif name == b"content-length" and length is None:
            length = value
    if content_type != b"application/json" or length is None or not length.isdigit():
        return None
    if int(length) > request.app.state.settings.max_body_bytes:
        return None  # the body limit answers, through FastAPI's handler
    query = plain_query(request.scope["query_string"])
    if query is None:
        return None
    try:
        body = await request.body()
    except StarletteHTTPException:  # the body limit's 413, as FastAPI's handler lets it pass
        raise
    except Exception as exc:  # a broken upload: FastAPI's handler answers so too
        raise HTTPException(400, "There was an error parsing the body") from exc
    history = plain_history(body)
    return None if history is None else (*history, *query)


class HistoryRoute(APIRoute):
    """The history route with a fast path in front of FastAPI's request handling: a plain
    request (``_plain_request``) goes straight to the handler's work; any other (a malformed
    or invalid body, an unusual query string or content type, a body of unknown length) goes
    through FastAPI's handler, which validates and answers it as for any route. The route's
    declaration (body model, parameters, OpenAPI schema) is FastAPI's, unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()

        async def handle(request: Request) -> Response:
            plain = await _plain_request(request)
            if plain is None:
                return await standard(request)
            return await history_answer(request, *plain)

        return handle


async def recommend_for_history(
    request: Request,
    body: HistoryRequest,
    n: N = 10,
    reasons: bool = True,
) -> Response:
    """Top-n for a listening history not in the training data (fold-in): items by id or name
    (names match case-insensitively); unknown entries are listed in ``unmatched``."""
    items = [entry.item for entry in body.history]
    counts = [entry.count for entry in body.history]
    return await history_answer(request, items, counts, body.exclude_heard, n, reasons)


router.add_api_route(
    "/v1/recommendations",
    recommend_for_history,
    methods=["POST"],
    response_model=Recommendations,
    responses={**NOT_FOUND, **TOO_LARGE},
    tags=["recommendations"],
    route_class_override=HistoryRoute,
)


async def history_answer(
    request: Request,
    items: list[str],
    counts: list[float],
    exclude_heard: bool,
    n: int,
    reasons: bool,
) -> Response:
    """The answer to a validated history (either path of ``HistoryRoute``)."""
    bundle = await current_model(request)
    limit = request.app.state.settings.max_history
    if len(items) > limit:
        raise HTTPException(413, f"history has {len(items)} entries; at most {limit}")
    indices, known, unmatched = [], [], []
    resolve = bundle.catalogue.resolve
    for item, count in zip(items, counts, strict=True):
        index = resolve(item)
        if index is None:
            unmatched.append(item)
        else:
            indices.append(index)
            known.append(count)
    if not indices:
        raise HTTPException(404, f"none of the {len(items)} history items is known")
    history = bundle.history_matrix(indices, known)
    inline = bundle.inline and n <= INLINE_N and len(indices) <= INLINE_HISTORY
    args = (bundle, history, n, exclude_heard, reasons, unmatched)
    return await _compute(inline, _for_history, *args)


def _for_history(bundle: LoadedModel, history, n, exclude_heard, reasons, unmatched):
    ids, scores = bundle.retriever.for_history(history, n, exclude_heard)
    heard = (history.indices, history.data)
    items = _recommended_items(bundle, ids, scores, heard, reasons)
    return _raw(recommendations_body(bundle.name, items, None, unmatched))


@router.get(
    "/v1/users/{user_id:path}/explain",
    response_model=Explanation,
    responses=NOT_FOUND,
    tags=["recommendations"],
)
def explain(
    user_id: str,
    bundle: Bundle,
    item: Annotated[str, Query(min_length=1, max_length=500, description="Item id or name.")],
    n: Annotated[int, Query(ge=1, le=100)] = 5,
) -> Response:
    """Why ``item`` scores as it does for the user: the history items that contribute most."""
    user = _find_user(bundle, user_id)
    index = _find_item(bundle, item)
    history = bundle.user_history(user)
    score = float(bundle.model.score(np.asarray([user]))[0, index])
    because: list[Contribution] = []
    if bundle.personalised:
        top, weights = bundle.model.explain(history, index, n=n)
        for source, weight in zip(top.tolist(), weights.tolist(), strict=True):
            if np.isfinite(weight):
                because.append(
                    Contribution(
                        item=bundle.catalogue.ids[source],
                        name=bundle.catalogue.names[source],
                        weight=float(weight),
                    )
                )
    positive = [c.name for c in because if c.weight > 0][:3]
    if not bundle.personalised:
        reason = "popular with listeners"
    elif positive:
        reason = "because you listened to " + _join(positive)
    else:
        reason = None
    return _json(
        Explanation(
            user=user_id,
            model=bundle.name,
            item=Item(**_item(bundle, index, score if np.isfinite(score) else 0.0, reason)),
            because=because,
            reason=reason,
        )
    )


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# -- items -------------------------------------------------------------------------------------
@router.get(
    "/v1/items/{item:path}/similar",
    response_model=SimilarItems,
    responses=NOT_FOUND,
    tags=["items"],
)
def similar(
    item: str,
    bundle: Bundle,
    n: N = 10,
    by: Annotated[
        Literal["model", "tags"],
        Query(description="model: the loaded model's similarity; tags: shared tags (cosine)."),
    ] = "model",
) -> Response:
    """The n items most similar to an item (given by id or name), by the model or by tags."""
    index = _find_item(bundle, item)
    if by == "tags":
        if not bundle.catalogue.has_tags():
            raise HTTPException(404, "this model's data has no item tags (see docs/metadata.md)")
        ids, scores = bundle.catalogue.similar_by_tags(index, n)
    else:
        found, values = bundle.model.similar_items(np.asarray([index]), n)
        ids, scores = found[0], values[0]
    ids, scores = _valid(ids, scores)
    items = [_item(bundle, i, s) for i, s in zip(ids.tolist(), scores.tolist(), strict=True)]
    return _answer({"model": bundle.name, "items": items, "item": _item(bundle, index, 1.0)})


SEARCH_REASONS = {
    "id": "id",
    "name": "exact name",
    "prefix": "name starts with it",
    "word": "a word starts with it",
    "fuzzy": "similar spelling",
    "popular": "popular",
}


@router.get("/v1/items", response_model=SearchResults, tags=["items"])
def search_items(
    bundle: Bundle,
    search: Annotated[str, Query(max_length=200, description="Name or id; empty: popular.")] = "",
    n: N = 10,
) -> Response:
    """Find items by name as you type: exact, prefix (of the name or a word), then fuzzy."""
    hits = bundle.catalogue.search(search, n)
    items = [_item(bundle, h.index, h.score, SEARCH_REASONS[h.how]) for h in hits]
    return _answer({"model": bundle.name, "items": items, "query": search})


# -- operations --------------------------------------------------------------------------------
@router.get("/healthz", response_model=Health, tags=["operations"])
def healthz(bundle: Bundle) -> Response:
    """Liveness and what is being served (model, version, retrieval and its recall@10)."""
    return _json(Health(status="ok", model=ModelInfo(**bundle.describe())))


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


@router.get("/", include_in_schema=False)
def index_page(request: Request) -> FileResponse:
    return FileResponse(request.app.state.static_dir / "index.html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon(request: Request) -> FileResponse:
    # Browsers ask for it whatever the page links; a 404 would fill every access log.
    return FileResponse(request.app.state.static_dir / "favicon.ico", media_type="image/x-icon")


# -- admin -------------------------------------------------------------------------------------
bearer = HTTPBearer(auto_error=False)


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    token = request.app.state.settings.admin_token
    given = credentials.credentials if credentials else ""
    if token is None or not secrets.compare_digest(
        given.encode(), token.get_secret_value().encode()
    ):
        raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})


@admin_router.post(
    "/reload",
    response_model=ReloadResult,
    dependencies=[Depends(require_admin)],
    responses={
        400: {"model": ErrorBody, "description": "The new model was refused; the old serves on."},
        401: {"model": ErrorBody, "description": "Missing or wrong admin token."},
        409: {"model": ErrorBody, "description": "Another reload is in progress."},
        **TOO_LARGE,
    },
)
def reload(request: Request, body: ReloadRequest) -> Response:
    """Load, validate and swap in a new model directory; on failure the old one keeps serving.

    With several workers the new model is published to all of them (serving.workers): every
    request answered after this one comes from it, whichever worker answers.
    """
    state = request.app.state
    if not state.holder.reload_lock.acquire(blocking=False):
        raise HTTPException(409, "another reload is in progress")
    try:
        with _across_workers(state.shared):
            return _reload(state, body)
    except Busy:
        raise HTTPException(409, "another reload is in progress (in another worker)") from None
    finally:
        state.holder.reload_lock.release()


def _across_workers(shared: SharedModel | None):
    return shared.exclusive() if shared is not None else contextlib.nullcontext()


def _reload(state, body: ReloadRequest) -> Response:
    try:
        bundle = load_bundle(body.model_dir, state.settings)
    except TastemakerError as exc:
        state.metrics.reloads.labels(outcome="refused").inc()
        log.warning("reload refused: %s", exc)
        raise HTTPException(
            400, f"reload refused, the previous model keeps serving: {exc}"
        ) from None
    if state.shared is not None:
        state.holder.generation = state.shared.publish(bundle.directory, bundle.version)
    old = state.holder.swap(bundle)
    state.metrics.model_loaded(bundle)
    state.metrics.reloads.labels(outcome="swapped").inc()
    return _json(
        ReloadResult(
            reloaded=True,
            previous_version=old.version if old else None,
            model=ModelInfo(**bundle.describe()),
        )
    )

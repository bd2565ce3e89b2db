"""The FastAPI app factory: ``create_app(settings)``; the lifespan loads the model once.

For several uvicorn workers, each imports ``tastemaker.serving.app:create_app`` as a factory
and reads its settings from ``TASTEMAKER_*`` environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from tastemaker import __version__
from tastemaker.errors import ArtifactError, UsageError
from tastemaker.serving.floor import floor_router
from tastemaker.serving.middleware import JSONErrors, ServiceMetrics, ServiceMiddleware, safe_errors
from tastemaker.serving.playlist_routes import playlist_router
from tastemaker.serving.routes import admin_router, router
from tastemaker.serving.settings import ServeSettings
from tastemaker.serving.state import LoadedModel, ModelHolder, load_bundle
from tastemaker.serving.tag_routes import tag_router
from tastemaker.serving.workers import POLL_SECONDS, FollowMiddleware, SharedModel, follow

log = logging.getLogger("tastemaker.serving")
STATIC_DIR = Path(__file__).parent / "static"

DESCRIPTION = """Music recommendations from listening histories.

User and item ids are the training source's own; items can also be named (any case).
Every list answers `{"items": [{"item", "name", "score", "reason", "listeners"}, ...]}`.
"""


def create_app(settings: ServeSettings | None = None, bundle: LoadedModel | None = None) -> FastAPI:
    """Build the service. ``bundle`` (already loaded) skips loading ``settings.model_dir``."""
    settings = settings or ServeSettings()
    holder = ModelHolder(bundle)
    metrics = ServiceMetrics()
    shared = SharedModel(settings.workers_file) if settings.workers_file else None
    follower = _Follower(shared, holder, settings, metrics) if shared is not None else None
    # FastAPIOffline: /docs and /redoc with Swagger UI and ReDoc served from the installed
    # package, not from a CDN (they work offline, and no third party can change them).
    app = FastAPIOffline(
        title="tastemaker",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(holder, settings, metrics, shared, follower),
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.shared = shared
    app.state.static_dir = STATIC_DIR
    _include_routes(app, settings)
    _add_middleware(app, settings, metrics, follower)
    _add_error_handlers(app)
    return app


class _Follower:
    """Keeps this worker on the model the workers share: before each request (through
    ``FollowMiddleware``) and once a second in the background (for idle workers)."""

    def __init__(
        self,
        shared: SharedModel,
        holder: ModelHolder,
        settings: ServeSettings,
        metrics: ServiceMetrics,
    ) -> None:
        self.shared, self.holder, self.settings, self.metrics = shared, holder, settings, metrics
        self.lock = asyncio.Lock()

    async def follow_now(self) -> None:
        await follow(self.shared, self.holder, self.settings, self.metrics, self.lock)

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            await self.follow_now()


def _lifespan(
    holder: ModelHolder,
    settings: ServeSettings,
    metrics: ServiceMetrics,
    shared: SharedModel | None,
    follower: _Follower | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Load the model once at start-up (off the event loop), then follow the shared one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if holder.current is None:
            await anyio.to_thread.run_sync(_load_first, holder, settings, shared)
        assert holder.current is not None  # _load_first loads one or raises
        metrics.model_loaded(holder.current)
        task = asyncio.create_task(follower.poll()) if follower is not None else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan


def _include_routes(app: FastAPI, settings: ServeSettings) -> None:
    """The route groups (each an ``APIRouter`` in its own module), the web page's files."""
    app.include_router(router)
    app.include_router(playlist_router)
    app.include_router(tag_router)
    if settings.admin_token is not None:  # admin routes exist only when a token is configured
        app.include_router(admin_router)
    if settings.bench_floor:
        app.state.floor_cache = {}
        app.include_router(floor_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _add_middleware(
    app: FastAPI, settings: ServeSettings, metrics: ServiceMetrics, follower: _Follower | None
) -> None:
    """Middleware, innermost first: the last added sees a request first."""
    if follower is not None:
        app.add_middleware(FollowMiddleware, follow_now=follower.follow_now)
    # Bodies over the limit answer 413, whether declared (Content-Length) or chunked. Starlette's
    # limit rather than FastAPI's max_body_size, which sits outside every user middleware and
    # answers in plain text: in here, JSONErrors gives its answer a JSON body.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings.max_body_bytes)
    app.add_middleware(JSONErrors)
    app.add_middleware(ServiceMiddleware, metrics=metrics)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answers JSON (FastAPI's decorator, as its handlers' types are narrower)."""
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(Exception)(_unexpected)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own handler echoes each bad input, and a NaN or Infinity in the body (which
    # Python's JSON parser accepts) then cannot be written as JSON: a 500 and a dropped
    # connection. Echo only what JSON can carry.
    return JSONResponse({"detail": safe_errors(exc.errors())}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    # FastAPI answers 400 for a body that is not UTF-8 (json.loads raises before parsing)
    # or nested too deeply for the parser (RecursionError); that is malformed JSON like
    # any other, so it gets the same 422 as a JSON syntax error.
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError | RecursionError):
        why = "body is not UTF-8" if isinstance(cause, UnicodeDecodeError) else "nested too deeply"
        detail = [{"type": "json_invalid", "loc": ["body"], "msg": why}]
        return JSONResponse({"detail": detail}, status_code=422)
    return await http_exception_handler(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A last resort that keeps the answer JSON; inputs are validated so as never to get here.
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def _load_first(holder: ModelHolder, settings: ServeSettings, shared: SharedModel | None) -> None:
    """The model a worker starts with: the latest published generation, else the settings'."""
    record = shared.read() if shared is not None else None
    if record is not None:
        bundle = load_bundle(record["model_dir"], settings)
        if bundle.version != record["version"]:
            raise ArtifactError(f"{record['model_dir']}: changed since it was published")
        holder.generation = record["generation"]
    elif settings.model_dir is None:
        raise UsageError("no model to serve: set TASTEMAKER_MODEL_DIR")
    else:
        bundle = load_bundle(settings.model_dir, settings)
    holder.swap(bundle)

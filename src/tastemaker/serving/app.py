"""The FastAPI app factory: ``create_app(settings)``; the lifespan loads the model once.

For several uvicorn workers, each imports ``tastemaker.serving.app:create_app`` as a factory
and reads its settings from ``TASTEMAKER_*`` environment variables.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from tastemaker import __version__
from tastemaker.errors import UsageError
from tastemaker.serving.middleware import ServiceMetrics, ServiceMiddleware
from tastemaker.serving.routes import admin_router, router
from tastemaker.serving.settings import ServeSettings
from tastemaker.serving.state import LoadedModel, ModelHolder, load_bundle

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

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if holder.current is None:
            if settings.model_dir is None:
                raise UsageError("no model to serve: set TASTEMAKER_MODEL_DIR")
            loaded = await anyio.to_thread.run_sync(load_bundle, settings.model_dir, settings)
            holder.swap(loaded)
        metrics.model_loaded(holder.current)
        yield

    app = FastAPI(
        title="tastemaker",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Bodies over the limit answer 413, whether declared (Content-Length) or chunked.
        max_body_size=settings.max_body_bytes,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.static_dir = STATIC_DIR
    app.include_router(router)
    if settings.admin_token is not None:  # admin routes exist only when a token is configured
        app.include_router(admin_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(ServiceMiddleware, metrics=metrics)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers 400 for a body that is not UTF-8 (json.loads raises before parsing);
        # that is malformed JSON like any other, so it gets the same 422 as a JSON syntax error.
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            detail = [{"type": "json_invalid", "loc": ["body"], "msg": "body is not UTF-8"}]
            return JSONResponse({"detail": detail}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A last resort that keeps the answer JSON; inputs are validated so as never to get here.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    return app

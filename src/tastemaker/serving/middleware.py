"""Prometheus metrics and the ASGI middleware that records them; JSON bodies for every error."""

from __future__ import annotations

import json
import math
import reprlib
import time
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

if TYPE_CHECKING:
    from tastemaker.serving.state import LoadedModel

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServiceMetrics:
    """One app's metrics in its own registry (tests build many apps in one process).

    With several uvicorn workers each process counts its own requests.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tastemaker_requests",
            "HTTP requests answered, by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tastemaker_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model = Info("tastemaker_model", "The model being served.", registry=self.registry)
        self.items = Gauge(
            "tastemaker_model_items", "Items in the catalogue.", registry=self.registry
        )
        self.ann_recall = Gauge(
            "tastemaker_ann_recall_at_10",
            "Recall@10 of the ANN index against exact scoring, measured at load (NaN: exact).",
            registry=self.registry,
        )
        self.reloads = Counter(
            "tastemaker_model_reloads",
            "Admin reloads, by outcome (swapped or refused).",
            ["outcome"],
            registry=self.registry,
        )

    def model_loaded(self, bundle: LoadedModel) -> None:
        info = bundle.describe()
        self.model.info(
            {
                "model": info["model"],
                "version": info["version"],
                "data_fingerprint": str(info["data_fingerprint"]),
                "retrieval": info["retrieval"]["kind"],
            }
        )
        self.items.set(info["items"])
        recall = info["retrieval"].get("recall_at_10")
        self.ann_recall.set(float("nan") if recall is None else recall)


class ServiceMiddleware:
    """Pure ASGI: counts and times every request by its route template (bounded label
    cardinality), including the ones other layers reject."""

    def __init__(self, app, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # (method, route, status) -> the counter's and the histogram's children: prometheus'
        # labels() takes a lock and checks the labels on every call (bounded: route templates).
        self._children: dict[tuple[str, str, int], tuple] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            key = (scope["method"], template, status["code"])
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    self.metrics.requests.labels(key[0], template, str(key[2])),
                    self.metrics.latency.labels(key[0], template),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


class JSONErrors:
    """Pure ASGI: every error answer carries a JSON body ``{"detail": ...}``.

    Starlette's body limit answers 413 in plain text, before FastAPI's handlers could; this
    rewrites such answers (small by nature) so that clients parse every error one way.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        held: dict = {}

        async def send_json_errors(message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                content_type = headers.get(b"content-type", b"")
                if message["status"] >= 400 and not content_type.startswith(b"application/json"):
                    held["start"], held["body"] = message, b""
                    return
            elif message["type"] == "http.response.body" and "start" in held:
                held["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return
                await _send_json(send, held.pop("start"), held.pop("body"))
                return
            await send(message)

        await self.app(scope, receive, send_json_errors)


async def _send_json(send, start: dict, body: bytes) -> None:
    text = body.decode("utf-8", "replace").strip() or HTTPStatus(start["status"]).phrase
    payload = json.dumps({"detail": text}).encode()
    headers = [
        (k, v) for k, v in start.get("headers", []) if k not in (b"content-type", b"content-length")
    ]
    headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


# Inputs echoed in a 422 are cut to this many characters of their repr when they are not small.
ECHO_LIMIT = 200
_echo = reprlib.Repr()  # keyword arguments only from Python 3.12
_echo.maxlevel, _echo.maxstring, _echo.maxother = 3, ECHO_LIMIT, ECHO_LIMIT


def safe_errors(errors: Sequence[Any]) -> list[dict]:
    """Pydantic's validation errors with every value writable as JSON (no NaN, no Infinity,
    no deep or large structures): ``type``, ``loc``, ``msg`` and, where safe, ``input``."""
    safe = []
    for error in errors:
        out = {
            "type": str(error.get("type", "")),
            "loc": [x if isinstance(x, int) else str(x) for x in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
        }
        if "input" in error:
            out["input"] = _echoed(error["input"])
        safe.append(out)
    return safe


def _echoed(value):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # 'nan', 'inf'
    if isinstance(value, int) and abs(value) < 2**53:
        return value
    if isinstance(value, str) and len(value) <= ECHO_LIMIT:
        return value
    try:
        text = json.dumps(value, allow_nan=False)
        if len(text) <= ECHO_LIMIT:
            return value
    except (TypeError, ValueError, RecursionError):
        pass
    return _echo.repr(value)[: ECHO_LIMIT + 3]

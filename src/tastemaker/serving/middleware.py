"""Prometheus metrics, and the ASGI middleware that records them."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

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
                "model_dir": info["model_dir"],
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
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)

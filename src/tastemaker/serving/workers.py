"""One model across several uvicorn workers: a reload in one worker reaches every other.

Each worker process holds its own model, and a reload request reaches only one of them. So
``tastemaker serve --workers N`` gives every worker one small JSON file (``workers_file``):
``{"generation": g, "model_dir": ..., "version": ...}``. The worker that accepts a reload
validates the new model, then publishes it as the next generation (written atomically, under
a file lock that also keeps two workers from reloading at once). Before every request, each
worker compares the file with what it serves (one ``stat``, a few microseconds); when the
generation is newer it loads that model first, so once a reload has answered, no worker
answers from the old model. A background check every second does the same for idle workers,
so the first request after a reload seldom waits for the load.

A worker that cannot load the published model (the directory changed or vanished after the
reload was accepted; its version no longer matches) keeps its model and logs why.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from tastemaker.artifacts import strict_json
from tastemaker.errors import TastemakerError

if TYPE_CHECKING:
    from tastemaker.serving.middleware import ServiceMetrics
    from tastemaker.serving.settings import ServeSettings
    from tastemaker.serving.state import LoadedModel, ModelHolder

log = logging.getLogger("tastemaker.serving")
POLL_SECONDS = 1.0


class Busy(Exception):
    """Another worker is reloading."""


class SharedModel:
    """The generation file of one ``serve`` run, read and written by every worker."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._seen: tuple[int, int, int] | None = None

    def read(self) -> dict[str, Any] | None:
        """The published record, or None when there is none (or it is unreadable)."""
        try:
            record = strict_json(self.path.read_bytes())
        except (OSError, ValueError):
            return None
        if (
            not isinstance(record, dict)
            or type(record.get("generation")) is not int
            or not isinstance(record.get("model_dir"), str)
            or not isinstance(record.get("version"), str)
        ):
            return None
        return record

    def changed(self) -> bool:
        """Whether the file changed since the last call (a ``stat``, no read)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return False
        self._seen = key
        return True

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held while a reload runs, across all workers; ``Busy`` if another holds it."""
        with open(self.lock_path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Busy from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def publish(self, model_dir: Path, version: str) -> int:
        """Write the next generation (call inside ``exclusive``); returns its number."""
        current = self.read()
        generation = (current["generation"] if current else 0) + 1
        record = {"generation": generation, "model_dir": str(model_dir), "version": version}
        fd, tmp = tempfile.mkstemp(prefix=".generation-", dir=self.path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        os.replace(tmp, self.path)
        return generation


async def follow(
    shared: SharedModel,
    holder: ModelHolder,
    settings: ServeSettings,
    metrics: ServiceMetrics,
    lock: asyncio.Lock,
) -> None:
    """Load the published model if it is newer than the one this worker serves."""
    # Requests that arrive while a load runs wait for it: none is answered by the old model.
    if not shared.changed() and not lock.locked():
        return
    async with lock:
        record = shared.read()
        if record is None or record["generation"] <= holder.generation:
            return
        bundle = await _load(record, settings)
        holder.generation = record["generation"]  # tried once, whatever the outcome
        if bundle is not None:
            holder.swap(bundle)
            metrics.model_loaded(bundle)
            log.info("worker %d follows generation %d", os.getpid(), record["generation"])


async def _load(record: dict[str, Any], settings: ServeSettings) -> LoadedModel | None:
    from tastemaker.serving.state import load_bundle

    try:
        bundle = await anyio.to_thread.run_sync(load_bundle, record["model_dir"], settings)
    except TastemakerError as exc:
        log.error("worker %d cannot follow the reload, keeps its model: %s", os.getpid(), exc)
        return None
    if bundle.version != record["version"]:
        log.error(
            "worker %d: %s changed since the reload (version %s, published %s); keeps its model",
            os.getpid(),
            record["model_dir"],
            bundle.version,
            record["version"],
        )
        return None
    return bundle


class FollowMiddleware:
    """Pure ASGI: before each HTTP request, catch up with the published generation."""

    def __init__(self, app, follow_now) -> None:
        self.app = app
        self.follow_now = follow_now

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self.follow_now()
        await self.app(scope, receive, send)

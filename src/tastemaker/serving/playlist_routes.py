"""Playlist routes: ``GET /v1/users/{id}/playlist`` and ``POST /v1/playlists``.

Answers are JSON tracklists with a reason per track, or a playlist file: JSPF (ListenBrainz
imports it), XSPF or M3U8, asked for by ``?format=`` or by the ``Accept`` header. Each loaded
model gets one ``Library`` (its tracks, artists and popularity), built on first use and
dropped with the model.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Annotated, Literal

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from tastemaker.errors import UsageError
from tastemaker.models.base import Recommender
from tastemaker.playlists import MEDIA_TYPES, Library, Playlist, personal_playlist, radio, render
from tastemaker.serving.retrieval import FactorIndex
from tastemaker.serving.routes import NOT_FOUND, TOO_LARGE, Bundle, Responses
from tastemaker.serving.schemas import ErrorBody, HistoryEntry
from tastemaker.serving.state import LoadedModel

playlist_router = APIRouter(tags=["playlists"])
BAD_PROMPT: Responses = {
    400: {"model": ErrorBody, "description": "A prompt or mode that cannot be used."}
}
MAX_TRACKS = 500
Format = Literal["json", "jspf", "xspf", "m3u8"]
# Accept header values that name a playlist format (the JSON tracklist otherwise).
ACCEPTED = {media: name for name, media in MEDIA_TYPES.items()} | {
    "audio/mpegurl": "m3u8",
    "application/vnd.apple.mpegurl": "m3u8",
}

# Playlists are built on one thread of their own, in the order asked. They are Python work
# (the GIL lets one thread run it at a time), so the thread pool's many threads would only
# take turns in 5 ms slices: every playlist in flight finished late, none sooner (under load
# p99 is queueing). In turn, each is answered in its own few milliseconds of CPU.
_builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tastemaker-playlists")
_libraries: weakref.WeakKeyDictionary[Recommender, Library] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def library_for(bundle: LoadedModel) -> Library:
    """The model's ``Library``, built once (under a lock: requests arrive on many threads).
    Where the service searches an ANN index, playlists take their new artists from it too."""
    model = bundle.model
    with _lock:
        library = _libraries.get(model)
        if library is None:
            index = bundle.retriever if isinstance(bundle.retriever, FactorIndex) else None
            library = _libraries[model] = Library(model, search=index)
        return library


class PlaylistTrack(BaseModel):
    artist: str
    title: str | None = Field(description="None where the data names no recordings.")
    album: str | None
    recording_mbid: str | None
    identifier: str | None = Field(description="MusicBrainz recording URL, where known.")
    reason: str


class PlaylistBody(BaseModel):
    title: str
    mode: str
    date: str
    requested: int
    short_by: int
    shortfall: str | None = Field(description="How short the playlist fell, and why.")
    artists_only: bool
    notes: list[str]
    tracks: list[PlaylistTrack]


class PlaylistRequest(BaseModel):
    """A posted history (a personal playlist) and/or a radio prompt."""

    model_config = ConfigDict(extra="forbid")

    history: list[HistoryEntry] = Field(default_factory=list, description="Items by id or name.")
    prompt: str | None = Field(
        None, max_length=2000, description='Radio terms: "artist:(X) tag:(Y):2 user:(17)".'
    )
    mode: str = Field(
        "jams", description="jams, exploration or mix; for a prompt: easy, medium or hard."
    )
    n: int = Field(50, ge=1, le=MAX_TRACKS)
    seed: int = Field(0, ge=0, le=2**31)
    format: Format | None = None


def _respond(playlist: Playlist, format: str | None, request: Request) -> Response:
    if format is None:
        accept = request.headers.get("accept", "")
        format = next(
            (
                ACCEPTED[m.split(";")[0].strip()]
                for m in accept.split(",")
                if m.split(";")[0].strip() in ACCEPTED
            ),
            "json",
        )
    if format != "json":
        return Response(render(playlist, format), media_type=MEDIA_TYPES[format])
    # The body of ``PlaylistBody`` (the schema the docs show), as plain dicts: one orjson
    # call instead of 51 pydantic models and their validation.
    body = {
        "title": playlist.title,
        "mode": playlist.mode,
        "date": playlist.date.isoformat(),
        "requested": playlist.requested,
        "short_by": playlist.short_by,
        "shortfall": playlist.describe_shortfall(),
        "artists_only": playlist.artists_only,
        "notes": playlist.notes,
        "tracks": [
            {
                "artist": t.creator,
                "title": t.title,
                "album": t.release,
                "recording_mbid": t.recording_mbid,
                "identifier": t.identifier,
                "reason": t.reason,
            }
            for t in playlist.tracks
        ],
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def _built(make: Callable[[], Playlist]) -> Playlist:
    """``make()`` on the playlist thread (``_builder``), awaited."""
    return await asyncio.get_running_loop().run_in_executor(_builder, make)


def _now(day: date | None) -> datetime:
    if day is None:
        return datetime.now(UTC)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@playlist_router.get(
    "/v1/users/{user_id:path}/playlist", response_model=PlaylistBody, responses=NOT_FOUND
)
async def user_playlist(
    user_id: str,
    request: Request,
    bundle: Bundle,
    mode: Literal["jams", "exploration", "mix"] = "jams",
    n: Annotated[int, Query(ge=1, le=MAX_TRACKS)] = 50,
    seed: Annotated[int, Query(ge=0, le=2**31)] = 0,
    day: date | None = None,
    shuffle: bool = False,
    format: Format | None = None,
) -> Response:
    """A personal playlist for a user of the training data, a reason per track; the same all
    day for a (user, day, seed)."""
    user = bundle.user_index(user_id)
    if user is None:
        raise HTTPException(404, f"unknown user {user_id!r}")
    now = _now(day)

    def make() -> Playlist:
        library = library_for(bundle)
        listener = library.listener(user=user, now=now)
        return personal_playlist(library, listener, mode, n=n, seed=seed, shuffle=shuffle)

    return _respond(await _built(make), format, request)


@playlist_router.post(
    "/v1/playlists", response_model=PlaylistBody, responses={**NOT_FOUND, **TOO_LARGE, **BAD_PROMPT}
)
async def make_playlist(request: Request, body: PlaylistRequest, bundle: Bundle) -> Response:
    """A playlist from a posted history (jams, exploration, mix) or a radio prompt (easy,
    medium, hard; the history, if any, joins it as one more stream)."""
    limit = request.app.state.settings.max_history
    if len(body.history) > limit:
        raise HTTPException(413, f"history has {len(body.history)} entries; at most {limit}")
    history = None
    if body.history:
        indices, counts = [], []
        for entry in body.history:
            index = bundle.catalogue.resolve(entry.item)
            if index is not None:
                indices.append(index)
                counts.append(entry.count)
        if not indices:
            raise HTTPException(404, f"none of the {len(body.history)} history items is known")
        history = bundle.history_matrix(
            np.asarray(indices, np.int64), np.asarray(counts, np.float64)
        )

    def make() -> Playlist:
        library = library_for(bundle)
        if body.prompt:
            return radio(library, body.prompt, body.mode, n=body.n, seed=body.seed, history=history)
        if history is not None:
            listener = library.listener(history=history)
            return personal_playlist(library, listener, body.mode, n=body.n, seed=body.seed)
        raise UsageError("give a history, a prompt or both")

    try:
        made = await _built(make)
    except UsageError as exc:
        raise HTTPException(400, str(exc)) from None
    return _respond(made, body.format, request)

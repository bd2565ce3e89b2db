"""Radio: a prompt of weighted terms becomes a stream of tracks.

Prompt: ``artist:(Radiohead) tag:(shoegaze):2 user:(17)``: terms ``kind:(value)``, each with
an optional ``:weight`` (default 1). Each term is a stream of items:

- ``artist:(X)``: X, then the artists most similar to it in the model (``ARTIST_NEIGHBOURS``);
- ``tag:(T)``: the artists tagged T, most tagged first, then those tagged with the tags most
  often given together with T on them (needs tags: HetRec's, or metadata);
- ``user:(U)``: the model's ranking for training user U, their own artists included;
- a posted history (the service): the model's ranking for it.

Streams are blended by weighted random picks; each pick takes the next track of that stream
(one track per artist per round, so artists spread out). Modes draw from popularity bands
(``BANDS``; 0 is the most listened-to item, 1 the least): easy stays with well-known artists
and their most played tracks, medium goes deeper, hard keeps to the rarer part of the
catalogue and its artists' less played tracks; the artists a term names are always allowed.
At most 3 tracks per artist (``RADIO_MAX_PER_ARTIST``), 100 tracks by default, ordered for
smooth transitions with no artist twice in a row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import scipy.sparse as sp

from tastemaker.errors import UsageError
from tastemaker.playlists.constraints import RADIO_MAX_PER_ARTIST, Rules, Selection
from tastemaker.playlists.library import Library
from tastemaker.playlists.ordering import smooth_order
from tastemaker.playlists.playlist import Playlist, Track

RADIO_LENGTH = 100
ARTIST_NEIGHBOURS = 40
STREAM_ITEMS = 60
CO_TAGS = 3
BANDS = {"easy": (0.0, 0.3), "medium": (0.0, 0.7), "hard": (0.3, 1.0)}
KINDS = ("artist", "tag", "user")
_TERM = re.compile(r"\s*(\w+):\(([^()]*)\)(?::(\d+(?:\.\d+)?))?\s*")


@dataclass(frozen=True)
class Term:
    kind: str
    value: str
    weight: float = 1.0


def parse_prompt(prompt: str) -> list[Term]:
    """The terms of a prompt; a UsageError naming where it cannot be read."""
    terms, position = [], 0
    while position < len(prompt):
        match = _TERM.match(prompt, position)
        if match is None or match.end() == position:
            if not prompt[position:].strip():
                break
            raise UsageError(
                f"cannot read the prompt at {prompt[position : position + 30]!r}: "
                "write terms like artist:(Radiohead) tag:(shoegaze):2 user:(17)"
            )
        kind, value, weight = match.group(1).lower(), match.group(2).strip(), match.group(3)
        if kind not in KINDS:
            raise UsageError(f"unknown radio term {kind!r}; use one of {', '.join(KINDS)}")
        if not value:
            raise UsageError(f"the {kind} term is empty")
        w = float(weight) if weight is not None else 1.0
        if not 0 < w <= 100:
            raise UsageError(f"term weights must be in (0, 100]; got {w:g}")
        terms.append(Term(kind, value, w))
        position = match.end()
    if not terms:
        raise UsageError("the prompt has no terms: try artist:(Radiohead) or tag:(shoegaze)")
    return terms


@dataclass
class Stream:
    """A term's items in preference order, each with its reason; ``seeds`` skip the band."""

    weight: float
    items: list[tuple[int, str]]
    seeds: frozenset[int] = frozenset()


def _resolve_artist(library: Library, name: str) -> int:
    resolution = library.data.name_matcher.resolve(name)
    if resolution.index is None:
        close = [library.item_name[i] for i in resolution.candidates[:3]]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"no artist called {name!r} in this model's catalogue{hint}")
    return resolution.index


def _artist_stream(library: Library, term: Term) -> Stream:
    seed = _resolve_artist(library, term.value)
    ids, _ = library.model.similar_items(np.asarray([seed]), ARTIST_NEIGHBOURS)
    name = library.item_artist[seed]
    items = [(seed, f"you asked for {name}")]
    items += [(int(i), f"similar to {name}") for i in ids[0] if i >= 0]
    return Stream(term.weight, items, frozenset({seed}))


def _tag_stream(library: Library, term: Term) -> Stream:
    tags = library.track_data.tag_items
    if not tags:
        raise UsageError("tag terms need tags, and this model's data has none")
    tag = term.value.casefold()
    if tag not in tags:
        raise UsageError(f"no artist is tagged {term.value!r} in this model's data")
    tagged = tags[tag]["item"].head(STREAM_ITEMS).to_list()
    items = [(int(i), f"tagged {term.value}") for i in tagged]
    # Tags most often given together with this one on its artists widen a small tag.
    for co_tag in [t for t in library.co_tags(tagged) if t.casefold() != tag][:CO_TAGS]:
        for i in tags[co_tag.casefold()]["item"].head(STREAM_ITEMS // 2).to_list():
            items.append((int(i), f"tagged {co_tag}, often with {term.value}"))
    return Stream(term.weight, items)


def _user_stream(library: Library, term: Term) -> Stream:
    user = library.data.users.get(term.value)
    if user < 0:
        raise UsageError(f"no user {term.value!r} in this model's data")
    ids, _ = library.model.recommend(np.asarray([user]), STREAM_ITEMS, exclude_heard=False)
    return Stream(term.weight, [(int(i), f"for {term.value}'s taste") for i in ids[0] if i >= 0])


def history_stream(library: Library, history: sp.spmatrix, weight: float = 1.0) -> Stream:
    """A posted listening history as a radio stream."""
    ids, _ = library.model.recommend_for_history(history, STREAM_ITEMS, exclude_heard=False)
    return Stream(weight, [(int(i), "from your listening") for i in ids[0] if i >= 0])


_STREAMS = {"artist": _artist_stream, "tag": _tag_stream, "user": _user_stream}


def _band_positions(counts: np.ndarray, round_: int, mode: str) -> np.ndarray:
    """Which of its tracks (0: the most played) each item plays in this round: easy from the
    top, hard from the bottom, medium from the fourth on (then the top three)."""
    if mode == "hard":
        return counts - 1 - round_
    if mode == "medium":
        return np.where(counts > 3, (round_ + 3) % np.maximum(counts, 1), round_)
    return np.full(len(counts), round_)


def _stream_tracks(library: Library, stream: Stream, mode: str) -> Iterator[Track]:
    """One track per artist per round, within the popularity band (up to
    ``RADIO_MAX_PER_ARTIST`` rounds); each round's tracks made in one gather."""
    low, high = BANDS[mode]
    quantile = library.popularity_quantile
    kept = [(i, why) for i, why in stream.items if i in stream.seeds or low <= quantile[i] <= high]
    if not kept:
        return
    items = np.asarray([i for i, _ in kept], dtype=np.int64)
    table = library.table
    counts, starts = table.counts[items], table.offsets[items]
    # An item with no recordings plays once, as an artist entry (row -1).
    plays = np.maximum(np.minimum(counts, RADIO_MAX_PER_ARTIST), 1)
    for round_ in range(RADIO_MAX_PER_ARTIST):
        playing = np.flatnonzero(round_ < plays)
        if not len(playing):
            return
        c = counts[playing]
        rows = np.where(c > 0, starts[playing] + _band_positions(c, round_, mode), -1)
        reasons = [kept[k][1] for k in playing.tolist()]
        yield from table.tracks(items[playing], rows, reasons, [False] * len(playing))


def radio(
    library: Library,
    prompt: str = "",
    mode: str = "easy",
    n: int = RADIO_LENGTH,
    seed: int = 0,
    history: sp.spmatrix | None = None,
    now: datetime | None = None,
    shuffle: bool = False,
) -> Playlist:
    """A radio playlist for ``prompt`` (and/or a posted ``history``)."""
    if mode not in BANDS:
        raise UsageError(f"--mode must be one of {', '.join(BANDS)}; got {mode!r}")
    if n < 1:
        raise UsageError(f"--n must be at least 1; got {n}")
    streams = [_STREAMS[t.kind](library, t) for t in parse_prompt(prompt)] if prompt.strip() else []
    if history is not None:
        streams.append(history_stream(library, history))
    if not streams:
        raise UsageError("a radio needs a prompt or a history")
    now = now or datetime.now(UTC)
    key = hashlib.sha256(f"{prompt}\x1f{mode}\x1f{now.date()}\x1f{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
    selection = Selection(Rules(n, RADIO_MAX_PER_ARTIST))
    sources = [_stream_tracks(library, s, mode) for s in streams]
    weights = np.asarray([s.weight for s in streams], dtype=np.float64)
    while not selection.full and weights.sum() > 0:
        pick = int(rng.choice(len(sources), p=weights / weights.sum()))
        track = next(sources[pick], None)
        if track is None:
            weights[pick] = 0.0
            continue
        selection.offer(track)
    tracks = selection.tracks
    similarity = library.similarity(tracks)
    ordered, unplaced = smooth_order(tracks, similarity, rng, shuffle=shuffle)
    shortfall = selection.shortfall(f"the prompt's artists within the {mode} band")
    if unplaced:
        shortfall = (shortfall + "; " if shortfall else "") + (
            f"{len(unplaced)} tracks could not be kept apart from their own artist"
        )
    notes = (
        ["the data names no recordings: this is a list of artists"] if library.artists_only else []
    )
    return Playlist(
        title=f"Radio: {prompt.strip() or 'your listening'} ({mode})",
        creator="tastemaker",
        date=now,
        mode=f"radio-{mode}",
        tracks=ordered,
        requested=n,
        max_per_artist=RADIO_MAX_PER_ARTIST,
        artists_only=library.artists_only,
        shortfall=shortfall,
        notes=notes,
    )

"""Personal playlists: jams, exploration and mix, and the two baselines they are measured by.

- jams: loved tracks not heard recently. The model ranks every artist (heard ones included);
  each artist gives the listener's own favourite recordings first, then its most played;
  nothing heard in the last 60 days.
- exploration: artists the listener has never played, each with its most played recordings
  (a few more than needed, less those of least contrast: ``coherence``).
- mix: jams with a share of discoveries (``DISCOVERY_SHARE``) woven in.

A playlist is deterministic for a (listener, day, seed): the day's generator perturbs the
ranking a little (Gumbel noise on log-ranks, ``DAILY_NOISE``) so today's playlist is stable
all day and tomorrow's differs. Baselines, for ``evaluation``: ``listenbrainz_recipe`` (random
50 of the model's top 1,000 recordings with ListenBrainz's filters) and ``plain_top`` (the
first tracks of the same ranking under the same rules).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import date

import numpy as np

from tastemaker.errors import UsageError
from tastemaker.playlists.candidates import known_and_new
from tastemaker.playlists.coherence import coherent_fill
from tastemaker.playlists.constraints import (
    PERSONAL_MAX_PER_ARTIST,
    Freshness,
    Rules,
    Selection,
)
from tastemaker.playlists.library import Library, Listener
from tastemaker.playlists.ordering import separate, smooth_order
from tastemaker.playlists.picking import (
    DAILY_NOISE,
    FAVOURITE_BOOST,
    Picker,
    Stream,
    picked_tracks,
    weighted_pool,
)
from tastemaker.playlists.playlist import Playlist, Track

MODES = ("jams", "exploration", "mix")
DISCOVERY_SHARE = 0.2
RECIPE_TOP = 1000
FAVOURITE = "one of your favourites"
__all__ = ["DAILY_NOISE", "FAVOURITE_BOOST", "MODES", "personal_playlist"]


def daily_rng(listener: Listener, day: date, seed: int) -> np.random.Generator:
    """One generator per (listener, day, seed)."""
    key = hashlib.sha256(f"{listener.name}\x1f{day.isoformat()}\x1f{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(key[:8], "little"))


def freshness(mode: str, listener: Listener) -> Freshness:
    """The mode's freshness rule for this listener."""
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}; got {mode!r}")
    rule = "new-artists" if mode == "exploration" else "not-recent"
    return Freshness(rule, listener.recent, listener.known)


def ranked_items(
    library: Library, listener: Listener, n: int, scope: str = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """The model's top ``n`` items for the listener within ``scope``: ``known`` (artists they
    have played), ``new`` (artists they never played) or ``all``."""
    model = library.model
    known = library.items_of_artists(listener.known)
    items = exclude = None
    if scope == "known":
        items = known
    elif scope == "new" and len(known):
        exclude = known
    if listener.user is not None:
        ids, scores = model.recommend(
            np.asarray([listener.user]),
            n,
            exclude_heard=scope == "new",
            items=items,
            exclude=exclude,
        )
    else:
        ids, scores = model.recommend_for_history(
            listener.history, n, exclude_heard=scope == "new", items=items, exclude=exclude
        )
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]


def _as_candidate(library: Library, listener: Listener, track: Track) -> Track:
    """An item's track with the reason and discovery flag for this listener."""
    known = library.item_artist_key[track.item] in listener.known
    reason = f"because you play {library.item_artist[track.item]}" if known else ""
    return replace(track, reason=reason, discovery=not known)


def item_candidates(
    library: Library, listener: Listener, item: int, own_first: bool
) -> list[Track]:
    """The tracks an item offers this listener: their own favourites first (``own_first``),
    then the item's most played recordings, each with a reason."""
    tracks = list(listener.favourites.get(item, ())) if own_first else []
    seen = {t.recording for t in tracks}
    for track in library.item_tracks(item):
        if track.recording is None or track.recording not in seen:
            tracks.append(_as_candidate(library, listener, track))
    return tracks


def _fill(selection: Selection, streams: Iterable[Iterable[Track]]) -> None:
    for candidates in streams:
        for track in candidates:
            if selection.full:
                return
            selection.offer(track)


def _pick(picker: Picker, streams: Iterable[Stream]) -> None:
    """Each stream's candidates in turn, until the playlist is full."""
    for stream in streams:
        while not picker.full:
            i = stream.next()
            if i is None:
                break
            picker.offer(stream.pool, i)


def _weave(picker: Picker, familiar: Stream, new: Stream) -> None:
    """Fill with a share of discoveries: a discovery whenever they fall below the share."""
    streams = {True: new, False: familiar}
    exhausted: set[bool] = set()
    discoveries = 0
    while not picker.full and len(exhausted) < 2:
        want_new = discoveries < DISCOVERY_SHARE * (len(picker.picked) + 1)
        side = want_new if want_new not in exhausted else not want_new
        stream = streams[side]
        i = stream.next()
        if i is None:
            exhausted.add(side)
            continue
        if picker.offer(stream.pool, i):
            discoveries += stream.pool.discovery[i]


def _with_reasons(library: Library, listener: Listener, picker: Picker) -> list[Track]:
    """The picked tracks, each with a reason: a discovery's from the model (the history item
    behind it, ``Library.because``), the rest their own."""
    missing = sorted({p.items[i] for p, i in picker.picked if p.discovery[i]})
    reasons = {}
    for item, source in zip(missing, library.because(listener.history, missing), strict=True):
        reasons[item] = (
            f"similar to {library.item_artist[source]}"
            if source is not None
            else "popular with listeners"
        )
    return picked_tracks(library, picker, reasons)


def personal_playlist(
    library: Library,
    listener: Listener,
    mode: str = "jams",
    n: int = 50,
    seed: int = 0,
    shuffle: bool = False,
    day: date | None = None,
) -> Playlist:
    """A ``mode`` playlist of ``n`` tracks for the listener, ordered, with reasons."""
    if n < 1:
        raise UsageError(f"--n must be at least 1; got {n}")
    rules = Rules(n, PERSONAL_MAX_PER_ARTIST, freshness(mode, listener))
    day = day or listener.now.date()
    rng = daily_rng(listener, day, seed)
    # Artists ranked per pool: two tracks each fill n with room for the rules' refusals.
    pool = 2 * n + 20
    picker = Picker(rules)
    known_ranked, new_ranked = known_and_new(library, listener, pool)
    fresh = rules.freshness
    known = Stream(lambda: weighted_pool(library, listener, known_ranked, rng, True, fresh))
    new = Stream(lambda: weighted_pool(library, listener, new_ranked, rng, False, fresh))
    if mode == "exploration":  # a few more new tracks, less those that stand out least
        coherent_fill(picker, new, library.item_similarity)
    elif mode == "jams":
        # Loved artists first; a listener with too few of them gets new ones after.
        _pick(picker, [known, new])
    else:
        _weave(picker, known, new)
    tracks = _with_reasons(library, listener, picker)
    similarity = library.similarity(tracks)
    ordered, unplaced = smooth_order(tracks, similarity, rng, shuffle=shuffle)
    return _playlist(library, listener, mode, n, ordered, unplaced, picker, day)


def _playlist(library, listener, mode, n, ordered, unplaced, selection, day) -> Playlist:
    shortfall = selection.shortfall(f"the model's ranking for {listener.name}")
    if unplaced:
        shortfall = (shortfall + "; " if shortfall else "") + (
            f"{len(unplaced)} tracks could not be kept apart from their own artist"
        )
    notes = []
    if library.artists_only:
        notes.append("the data names no recordings: this is a list of artists")
    return Playlist(
        title=f"{mode.capitalize()} for {listener.name}, {day.isoformat()}",
        creator="tastemaker",
        date=listener.now,
        mode=mode,
        tracks=ordered,
        requested=n,
        max_per_artist=PERSONAL_MAX_PER_ARTIST,
        artists_only=library.artists_only,
        shortfall=shortfall,
        notes=notes,
    )


# -- baselines ---------------------------------------------------------------------------------
def ranked_tracks(library: Library, listener: Listener, mode: str, limit: int) -> list[Track]:
    """The model's ranking as recordings: each item's most played tracks, in item order."""
    items, _ = ranked_items(library, listener, limit, "new" if mode == "exploration" else "all")
    tracks: list[Track] = []
    for item in items:
        for track in item_candidates(library, listener, int(item), own_first=False):
            tracks.append(track)
            if len(tracks) >= limit:
                return tracks
    return tracks


def listenbrainz_recipe(
    library: Library, listener: Listener, mode: str = "jams", n: int = 50, seed: int = 0
) -> Playlist:
    """ListenBrainz's recipe: from the model's top 1,000 recordings keep those not heard in
    60 days (jams) or never heard (exploration: as far as the track tables know), at most 2
    per artist, then 50 at random, in random order."""
    # Freshness lets a track without a recording key through whatever the set holds
    heard = frozenset(
        t.recording for ts in listener.favourites.values() for t in ts if t.recording is not None
    )
    rule = Freshness("not-recent", heard if mode == "exploration" else listener.recent)
    ranked = ranked_tracks(library, listener, "jams", RECIPE_TOP)
    selection = Selection(Rules(len(ranked), PERSONAL_MAX_PER_ARTIST, rule))
    _fill(selection, [ranked])
    rng = np.random.default_rng(seed)
    kept = selection.tracks
    chosen = [kept[i] for i in sorted(rng.permutation(len(kept))[:n])]
    rng.shuffle(chosen)
    return Playlist(
        title=f"ListenBrainz recipe ({mode}) for {listener.name}",
        creator="tastemaker",
        date=listener.now,
        mode=f"recipe-{mode}",
        tracks=chosen,
        requested=n,
        max_per_artist=PERSONAL_MAX_PER_ARTIST,
        artists_only=library.artists_only,
        shortfall=None if len(chosen) >= n else "the top 1,000 ran out",
    )


def plain_top(library: Library, listener: Listener, mode: str = "jams", n: int = 50) -> Playlist:
    """The first ``n`` tracks of the model's ranking that keep the mode's rules, in rank
    order (moved only to keep an artist from following itself)."""
    rules = Rules(n, PERSONAL_MAX_PER_ARTIST, freshness(mode, listener))
    selection = Selection(rules)
    _fill(selection, [ranked_tracks(library, listener, mode, RECIPE_TOP * 2)])
    ordered, unplaced = separate(selection.tracks)
    return _playlist(
        library, listener, f"top-{mode}", n, ordered, unplaced, selection, listener.now.date()
    )

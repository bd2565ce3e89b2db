"""Personal playlists: jams, exploration and mix, and the two baselines they are measured by.

- jams: loved tracks not heard recently. The model ranks every artist (heard ones included);
  each artist gives the listener's own favourite recordings first, then its most played;
  nothing heard in the last 60 days.
- exploration: artists the listener has never played, each with its most played recordings.
- mix: jams with a share of discoveries (``DISCOVERY_SHARE``) woven in.

A playlist is deterministic for a (listener, day, seed): the day's generator perturbs the
ranking a little (Gumbel noise on log-ranks, ``DAILY_NOISE``) so today's playlist is stable
all day and tomorrow's differs. Baselines, for ``evaluation``: ``listenbrainz_recipe`` (random
50 of the model's top 1,000 recordings with ListenBrainz's filters) and ``plain_top`` (the
first tracks of the same ranking under the same rules).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import date

import numpy as np

from tastemaker.errors import UsageError
from tastemaker.playlists.constraints import (
    PERSONAL_MAX_PER_ARTIST,
    Freshness,
    Rules,
    Selection,
)
from tastemaker.playlists.library import Library, Listener
from tastemaker.playlists.ordering import separate, smooth_order
from tastemaker.playlists.playlist import Playlist, Track
from tastemaker.ranking import mask_columns, mask_rows, top_n

MODES = ("jams", "exploration", "mix")
DISCOVERY_SHARE = 0.2
DAILY_NOISE = 0.15
# A favourite of the listener's counts this much more than its share of everyone's plays.
FAVOURITE_BOOST = 1.5
RECIPE_TOP = 1000
FAVOURITE = "one of your favourites"


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


def ranked_known_and_new(
    library: Library, listener: Listener, n: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``ranked_items`` for the ``known`` and the ``new`` scope from one scoring of the
    catalogue (the same lists as two ``recommend`` calls, at half the cost)."""
    model = library.model
    if listener.user is not None:
        scores = model.score(np.asarray([listener.user]))
    else:
        scores = model.score_history(listener.history)
    known = library.items_of_artists(listener.known)
    known_scores = np.full_like(scores, -np.inf)
    known_scores[:, known] = scores[:, known]
    mask_rows(scores, listener.history)
    mask_columns(scores, known)
    out = []
    for block in (known_scores, scores):
        ids, best = top_n(block, n)
        keep = ids[0] >= 0
        out.append((ids[0][keep], best[0][keep]))
    return out[0], out[1]


def _score_weights(scores: np.ndarray) -> np.ndarray:
    """Model scores as positive weights (min-max over the pool, a floor for the last)."""
    if not len(scores):
        return scores.astype(np.float64)
    low, high = float(scores.min()), float(scores.max())
    spread = high - low if high > low else 1.0
    return (scores.astype(np.float64) - low) / spread + 0.01


def expected_tracks(
    library: Library,
    listener: Listener,
    ranked: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator | None,
    loved: bool,
) -> Iterator[Track]:
    """Candidate tracks by how likely the listener is to play them: an artist's weight (the
    model's score; for ``loved`` artists, its geometric mean with the listener's own share of
    plays) times the track's share of the artist's plays, the listener's favourites boosted
    (``FAVOURITE_BOOST``). The day's generator adds a little noise (``DAILY_NOISE``, in log
    space) so the list changes from day to day. Lazy: tracks get their reason as they are
    taken, so only the few a playlist uses are built."""
    items, scores = ranked
    weights = _score_weights(scores)
    if loved:
        history = listener.history
        plays = dict(zip(history.indices.tolist(), history.data.tolist(), strict=True))
        total = sum(plays.values()) or 1.0
        weights = np.sqrt(weights * np.asarray([plays.get(int(i), 0.0) / total for i in items]))
    keys: list[float] = []
    entries: list[tuple[Track, bool]] = []  # (track, needs a reason of its item)
    for weight, item in zip(weights.tolist(), items.tolist(), strict=True):
        tracks = library.item_tracks(item)
        total_plays = sum(t.plays for t in tracks) or 1
        everyone = {t.recording: t.plays for t in tracks}
        floor = min(everyone.values(), default=1) or 1
        own = listener.favourites.get(item, ()) if loved else ()
        for favourite in own:
            share = everyone.get(favourite.recording, floor) / total_plays
            keys.append(weight * share * FAVOURITE_BOOST)
            entries.append((favourite, False))
        taken = {t.recording for t in own}
        for track in tracks:
            if track.recording is None or track.recording not in taken:
                keys.append(weight * track.plays / total_plays if track.plays else weight)
                entries.append((track, True))
    if not entries:
        return
    order = np.asarray(keys, dtype=np.float64)
    if rng is not None:
        order = order * np.exp(DAILY_NOISE * rng.gumbel(size=len(order)))
    for index in np.argsort(-order, kind="stable").tolist():
        track, needs_reason = entries[index]
        yield _as_candidate(library, listener, track) if needs_reason else track


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


def _weave(selection: Selection, familiar: Iterable[Track], new: Iterable[Track]) -> None:
    """Fill with a share of discoveries: a discovery whenever they fall below the share."""
    streams = {True: iter(new), False: iter(familiar)}
    exhausted: set[bool] = set()
    while not selection.full and len(exhausted) < 2:
        discoveries = sum(t.discovery for t in selection.tracks)
        want_new = discoveries < DISCOVERY_SHARE * (len(selection.tracks) + 1)
        side = want_new if want_new not in exhausted else not want_new
        track = next(streams[side], None)
        if track is None:
            exhausted.add(side)
            continue
        selection.offer(track)


def _with_reasons(library: Library, listener: Listener, tracks: list[Track]) -> list[Track]:
    """Tracks without a reason get one from the model: the history item behind them."""
    missing = sorted({t.item for t in tracks if not t.reason})
    sources = dict(zip(missing, library.because(listener.history, missing), strict=True))
    out = []
    for track in tracks:
        if not track.reason:
            source = sources.get(track.item)
            reason = (
                f"similar to {library.item_artist[source]}"
                if source is not None
                else "popular with listeners"
            )
            track = replace(track, reason=reason)
        out.append(track)
    return out


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
    selection = Selection(rules)
    known_ranked, new_ranked = ranked_known_and_new(library, listener, pool)
    known = expected_tracks(library, listener, known_ranked, rng, True)
    new = expected_tracks(library, listener, new_ranked, rng, False)
    if mode == "exploration":
        _fill(selection, [new])
    elif mode == "jams":
        # Loved artists first; a listener with too few of them gets new ones after.
        _fill(selection, [known, new])
    else:
        _weave(selection, known, new)
    tracks = _with_reasons(library, listener, selection.tracks)
    similarity = library.similarity(tracks)
    ordered, unplaced = smooth_order(tracks, similarity, rng, shuffle=shuffle)
    return _playlist(library, listener, mode, n, ordered, unplaced, selection, day)


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

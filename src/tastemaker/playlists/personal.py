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
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import date

import numpy as np

from tastemaker.errors import UsageError
from tastemaker.playlists.candidates import Ranked, known_and_new
from tastemaker.playlists.coherence import coherent_fill
from tastemaker.playlists.constraints import (
    PERSONAL_MAX_PER_ARTIST,
    Freshness,
    Rules,
    Selection,
)
from tastemaker.playlists.library import Library, Listener
from tastemaker.playlists.ordering import separate, smooth_order
from tastemaker.playlists.playlist import Playlist, Track

MODES = ("jams", "exploration", "mix")
DISCOVERY_SHARE = 0.2
DAILY_NOISE = 0.15
# A favourite of the listener's counts this much more than its share of everyone's plays.
FAVOURITE_BOOST = 1.5
RECIPE_TOP = 1000
FAVOURITE = "one of your favourites"
# Candidate tracks made into ``Track`` objects at a time (a playlist takes ~50 of a few hundred;
# a mix's discoveries about 10 of them).
CANDIDATE_CHUNK = 24
# Row marks of favourites among the candidates (rows >= 0 are track table rows, -1 artist entries).
FAVOURITE_ROW = -2


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
    ranked: Ranked,
    rng: np.random.Generator | None,
    loved: bool,
) -> Iterator[Track]:
    """Candidate tracks by how likely the listener is to play them: an artist's weight (the
    model's score; for ``loved`` artists, its geometric mean with the listener's own share of
    plays) times the track's share of the artist's plays, the listener's favourites boosted
    (``FAVOURITE_BOOST``). The day's generator adds a little noise (``DAILY_NOISE``, in log
    space) so the list changes from day to day. Weights are worked out on the track table's
    arrays; ``Track`` objects are made only for the candidates taken, a chunk at a time."""
    items, scores = ranked
    weights = _score_weights(scores)
    if loved:
        history = listener.history
        plays = dict(zip(history.indices.tolist(), history.data.tolist(), strict=True))
        total = sum(plays.values()) or 1.0
        weights = np.sqrt(weights * np.asarray([plays.get(int(i), 0.0) / total for i in items]))
    table = library.table
    position, within, rows = table.rows_of(items)
    item_of = items[position]
    played = table.plays_of(rows)
    keys = np.where(
        played > 0, weights[position] * played / table.total[item_of], weights[position]
    )
    favourites: list[Track] = []
    if loved and listener.favourites:
        keys, rows, item_of, favourites = _with_favourites(
            library, listener, items, weights, (position, within, rows, keys)
        )
    if not len(keys):
        return
    if rng is not None:
        keys = keys * np.exp(DAILY_NOISE * rng.gumbel(size=len(keys)))
    order = np.argsort(-keys, kind="stable")
    for start in range(0, len(order), CANDIDATE_CHUNK):
        chunk = order[start : start + CANDIDATE_CHUNK]
        kept = rows[chunk] > FAVOURITE_ROW
        items_kept = item_of[chunk][kept]
        new = [library.item_artist_key[i] not in listener.known for i in items_kept.tolist()]
        reasons = [
            "" if discovery else f"because you play {library.item_artist[i]}"
            for i, discovery in zip(items_kept.tolist(), new, strict=True)
        ]
        made = iter(table.tracks(items_kept, rows[chunk][kept], reasons, new))
        for index, is_row in zip(chunk.tolist(), kept.tolist(), strict=True):
            yield next(made) if is_row else favourites[FAVOURITE_ROW - int(rows[index])]


def _with_favourites(
    library: Library,
    listener: Listener,
    items: np.ndarray,
    weights: np.ndarray,
    entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Track]]:
    """The candidates with each item's favourites of the listener first (weighted by
    everyone's plays of that recording, or the item's least played track's, boosted), then
    the item's other tracks. A favourite's row is ``FAVOURITE_ROW - k``, k indexing the list
    returned with the keys, rows and items."""
    position, within, rows, keys = entries
    table = library.table
    keep = np.ones(len(rows), bool)
    extra_position: list[int] = []
    extra_keys: list[float] = []
    favourites: list[Track] = []
    for p, item in enumerate(items.tolist()):
        own = listener.favourites.get(item)
        if not own:
            continue
        start, stop = int(table.offsets[item]), int(table.offsets[item + 1])
        recordings = table.recordings(item)
        everyone = dict(zip(recordings, table.plays[start:stop].tolist(), strict=True))
        for favourite in own:
            share = everyone.get(favourite.recording, int(table.least[item])) / table.total[item]
            extra_position.append(p)
            extra_keys.append(weights[p] * share * FAVOURITE_BOOST)
            favourites.append(favourite)
        taken = {t.recording for t in own}
        if recordings:  # the item's rows, in table order, are its rows among the candidates
            first = int(np.searchsorted(position, p))
            keep[first : first + len(recordings)] = [
                r is None or r not in taken for r in recordings
            ]
    count = len(favourites)
    all_position = np.concatenate([position[keep], np.asarray(extra_position, np.int64)])
    # Per item: favourites first (part 0, in the listener's order), then its tracks (part 1).
    part = np.concatenate([np.ones(int(keep.sum()), np.int64), np.zeros(count, np.int64)])
    sequence = np.concatenate([within[keep], np.arange(count)])
    order = np.lexsort((sequence, part, all_position))
    all_rows = np.concatenate([rows[keep], FAVOURITE_ROW - np.arange(count)])[order]
    all_keys = np.concatenate([keys[keep], np.asarray(extra_keys, np.float64)])[order]
    return all_keys, all_rows, items[all_position[order]], favourites


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
    discoveries = 0
    while not selection.full and len(exhausted) < 2:
        want_new = discoveries < DISCOVERY_SHARE * (len(selection.tracks) + 1)
        side = want_new if want_new not in exhausted else not want_new
        track = next(streams[side], None)
        if track is None:
            exhausted.add(side)
            continue
        if selection.offer(track):
            discoveries += track.discovery


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
    known_ranked, new_ranked = known_and_new(library, listener, pool)
    known = expected_tracks(library, listener, known_ranked, rng, True)
    new = expected_tracks(library, listener, new_ranked, rng, False)
    if mode == "exploration":  # a few more new tracks, less those that stand out least
        coherent_fill(selection, new, library.similarity)
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

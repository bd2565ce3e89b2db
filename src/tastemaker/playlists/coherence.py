"""Choosing tracks with their order in mind (exploration's).

A playlist flows when each track has a close neighbour to follow, and it varies when its
tracks are not all alike. ``coherent_fill`` takes a few more candidates than the playlist
needs (``EXTRA_SHARE``), in the selection's own order (the ranking with the day's noise) and
under its rules, then drops, one at a time, the track whose closest neighbour of another
artist stands out least from its average neighbour (``contrast``: best less mean
similarity), until the playlist's length is left. A track alike to everything (no near
neighbour of its own) and an outlier (near nothing) go first; the best track always stays,
and the kept tracks keep their order. Any subset of tracks that keep the rules keeps them,
so the selection's checks need nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from tastemaker.playlists.picking import Picker, Stream

# Candidates taken beyond the playlist's length, as a share of it (50 tracks: 20 more).
EXTRA_SHARE = 0.4


def coherent_fill(
    picker: Picker,
    stream: Stream,
    similarity: Callable[[np.ndarray], np.ndarray],
    extra: float = EXTRA_SHARE,
) -> None:
    """Fill ``picker`` from ``stream``: the first ``length * (1 + extra)`` candidates that
    keep its rules, less those of least ``contrast`` (``similarity`` of item indices, as
    ``Library.item_similarity``). A picker that runs short keeps what it got and why."""
    length = picker.rules.length
    wider = Picker(replace(picker.rules, length=length + math.ceil(extra * length)))
    while not wider.full:
        i = stream.next()
        if i is None:
            break
        wider.offer(stream.pool, i)
    chosen = wider.picked
    if len(chosen) > length:
        items = np.asarray([p.items[i] for p, i in chosen], np.int64)
        codes = np.unique([p.artist[i] for p, i in chosen], return_inverse=True)[1].reshape(-1)
        chosen = [chosen[i] for i in most_contrasted(similarity(items), codes, length)]
    else:
        picker.refused.update(wider.refused)  # the shortfall says what was refused
    for pool, i in chosen:
        picker.offer(pool, i)


def most_contrasted(similarity: np.ndarray, codes: np.ndarray, keep: int) -> np.ndarray:
    """Indices (ascending) of the ``keep`` tracks left after dropping, one at a time and
    against those still left, the track of least contrast: its best similarity to a track
    of another artist less its mean similarity to the others. Ties drop the later track;
    track 0 is never dropped."""
    k = similarity.shape[0]
    sim = np.nan_to_num(np.asarray(similarity, dtype=np.float64), nan=0.0, neginf=-1.0)
    np.fill_diagonal(sim, 0.0)
    other = np.where(codes[:, None] != codes[None, :], sim, -np.inf)
    total = sim.sum(axis=1)  # over the tracks still left (kept up as they go)
    dropped = np.zeros(k, bool)
    dropped[0] = True  # not a candidate for dropping (its row and column still count)
    for remaining in range(k, max(keep, 1), -1):
        contrast = other.max(axis=1) - total / (remaining - 1)
        contrast[dropped] = np.inf
        last = k - 1 - int(np.argmin(contrast[::-1]))
        dropped[last] = True
        other[:, last] = -np.inf
        total -= sim[:, last]
    dropped[0] = False
    return np.flatnonzero(~dropped)

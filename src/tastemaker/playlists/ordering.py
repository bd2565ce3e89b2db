"""Order: artists kept apart, each track close to the one before it.

``smooth_order`` walks greedily from the first (best) track to the remaining track most
similar to the current one (similarity in the model's item space), never to the same artist,
and preferring artists not heard in the last ``SEPARATION`` tracks; ``shuffle`` picks at
random among the allowed tracks instead. A track that cannot be placed at the end of the walk
(only its own artist is left) is inserted where both neighbours are other artists.
``separate`` keeps a ranked order and only moves tracks that would follow their own artist.
"""

from __future__ import annotations

import numpy as np

from tastemaker.playlists.playlist import Track

# Prefer an artist not among the last this many tracks, where the choice allows.
SEPARATION = 3


def smooth_order(
    tracks: list[Track],
    similarity: np.ndarray,
    rng: np.random.Generator | None = None,
    shuffle: bool = False,
) -> tuple[list[Track], list[Track]]:
    """``(ordered, unplaced)``: the tracks in playing order, and any that no position could
    keep apart from their own artist (for the caller to report)."""
    if not tracks:
        return [], []
    rng = rng or np.random.default_rng(0)
    artists = [t.artist_key for t in tracks]
    remaining = set(range(1, len(tracks)))
    path = [0]
    while remaining:
        last = path[-1]
        recent = {artists[i] for i in path[-SEPARATION:]}
        allowed = [i for i in remaining if artists[i] != artists[last]]
        if not allowed:
            break
        spaced = [i for i in allowed if artists[i] not in recent] or allowed
        if shuffle:
            chosen = spaced[int(rng.integers(len(spaced)))]
        else:
            chosen = max(spaced, key=lambda i: (similarity[last, i], -i))
        path.append(chosen)
        remaining.discard(chosen)
    unplaced: list[int] = []
    for i in sorted(remaining):
        slot = _free_slot(path, artists, artists[i])
        if slot is None:
            unplaced.append(i)
        else:
            path.insert(slot, i)
    return [tracks[i] for i in path], [tracks[i] for i in unplaced]


def _free_slot(path: list[int], artists: list[str], artist: str) -> int | None:
    """A position in ``path`` whose neighbours are both other artists (None if there is none)."""
    for slot in range(len(path) + 1):
        before = artists[path[slot - 1]] if slot > 0 else None
        after = artists[path[slot]] if slot < len(path) else None
        if before != artist and after != artist:
            return slot
    return None


def separate(tracks: list[Track]) -> tuple[list[Track], list[Track]]:
    """Ranked order kept, except that a track following its own artist waits for the next
    position that does not."""
    ordered: list[Track] = []
    waiting: list[Track] = []
    for track in tracks:
        waiting.append(track)
        progress = True
        while waiting and progress:
            progress = False
            for j, candidate in enumerate(waiting):
                if not ordered or ordered[-1].artist_key != candidate.artist_key:
                    ordered.append(waiting.pop(j))
                    progress = True
                    break
    unplaced = []
    for track in waiting:
        keys = [t.artist_key for t in ordered]
        slot = _free_slot(list(range(len(ordered))), keys, track.artist_key)
        if slot is None:
            unplaced.append(track)
        else:
            ordered.insert(slot, track)
    return ordered, unplaced


def transition_similarity(similarity: np.ndarray, order: np.ndarray) -> float:
    """Mean similarity of consecutive tracks (``order`` indexes ``similarity``)."""
    if len(order) < 2:
        return float("nan")
    return float(np.mean(similarity[order[:-1], order[1:]]))


def random_order_similarity(
    similarity: np.ndarray, rng: np.random.Generator, repeats: int = 20
) -> float:
    """The same mean over random orders of the same tracks (the baseline it is measured by)."""
    k = similarity.shape[0]
    if k < 2:
        return float("nan")
    return float(
        np.mean([transition_similarity(similarity, rng.permutation(k)) for _ in range(repeats)])
    )

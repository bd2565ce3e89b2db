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
# 2-opt (``improve``): rounds at most, and the best exchanges tried in each.
MAX_ROUNDS = 6
ROUND_CANDIDATES = 128


def smooth_order(
    tracks: list[Track],
    similarity: np.ndarray,
    rng: np.random.Generator | None = None,
    shuffle: bool = False,
) -> tuple[list[Track], list[Track]]:
    """``(ordered, unplaced)``: the tracks in playing order, and any that no position could
    keep apart from their own artist (for the caller to report). Greedy walk, then (unless
    ``shuffle``) 2-opt exchanges (``improve``)."""
    if not tracks:
        return [], []
    rng = rng or np.random.default_rng(0)
    artists = [t.artist_key for t in tracks]
    codes = np.unique(artists, return_inverse=True)[1].reshape(-1)
    path = _shuffled_walk(codes, rng) if shuffle else _greedy_walk(codes, similarity)
    remaining = sorted(set(range(len(tracks))) - set(path))
    unplaced: list[int] = []
    for i in remaining:
        slot = _free_slot(path, artists, artists[i])
        if slot is None:
            unplaced.append(i)
        else:
            path.insert(slot, i)
    if not shuffle:
        path = improve(np.asarray(path, np.int64), codes, similarity).tolist()
    return [tracks[i] for i in path], [tracks[i] for i in unplaced]


def _greedy_walk(codes: np.ndarray, similarity: np.ndarray) -> list[int]:
    """From track 0, each step to the most similar remaining track (ties: the lower index) of
    another artist, one not among the last ``SEPARATION`` where there is one; stops when only
    the current artist is left. Each track's candidates are sorted once, then walked."""
    k = len(codes)
    # Rows sorted by similarity, descending, ties to the lower index (a stable sort of -s).
    ranked = np.argsort(-np.nan_to_num(similarity, nan=-np.inf), axis=1, kind="stable").tolist()
    artist = codes.tolist()
    free = [True] * k
    free[0] = False
    path = [0]
    for _ in range(k - 1):
        last = path[-1]
        recent = {artist[i] for i in path[-SEPARATION:]}
        chosen = fallback = -1
        for i in ranked[last]:
            if not free[i] or artist[i] == artist[last]:
                continue
            if artist[i] not in recent:
                chosen = i
                break
            if fallback < 0:
                fallback = i
        chosen = chosen if chosen >= 0 else fallback
        if chosen < 0:
            break
        path.append(chosen)
        free[chosen] = False
    return path


def _shuffled_walk(codes: np.ndarray, rng: np.random.Generator) -> list[int]:
    """From track 0, each step to a random remaining track of another artist, one not among
    the last ``SEPARATION`` where there is one."""
    k = len(codes)
    free = np.ones(k, bool)
    free[0] = False
    path = [0]
    for _ in range(k - 1):
        last = path[-1]
        allowed = free & (codes != codes[last])
        if not allowed.any():
            break
        spaced = allowed & ~np.isin(codes, codes[path[-SEPARATION:]])
        choices = np.flatnonzero(spaced if spaced.any() else allowed)
        chosen = int(choices[int(rng.integers(len(choices)))])
        path.append(chosen)
        free[chosen] = False
    return path


def improve(path: np.ndarray, codes: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """2-opt on an open path: reverse segments that raise the sum of consecutive
    similarities, as long as one does, keeping the first track first, no artist next to
    itself and no more artists within ``SEPARATION`` of themselves than before. A greedy walk
    leaves long jumps near its end; this takes most of them out. Each round scores every
    exchange at once and makes the best ones that touch disjoint stretches (their gains add
    up), so a playlist takes a few rounds, not one per exchange (at most ``MAX_ROUNDS``)."""
    k = len(path)
    if k < 4:
        return path
    sim = np.nan_to_num(np.asarray(similarity, dtype=np.float64), nan=0.0, neginf=-1.0)
    # A similarity need not be symmetric (item-KNN's): then the reversed edges count too.
    symmetric = np.array_equal(sim, sim.T)
    # gain[i, j]: reversing path[i + 1 : j + 1] (j >= i + 2) swaps the edges (i, i + 1) and
    # (j, j + 1) for (i, j) and (i + 1, j + 1); there is no edge after the last track (the
    # padding row and column of ``s``, zero, stand for it).
    pairs = np.triu(np.ones((k, k), bool), 2)
    padded = np.zeros((k + 1, k + 1))
    for _ in range(MAX_ROUNDS):
        s = padded[:k, :k] = sim[np.ix_(path, path)]
        edge = np.diagonal(padded, 1)[:k]
        gain = s + padded[1:, 1:] - edge[:, None] - edge[None, :]
        if not symmetric:
            turned = np.concatenate([[0.0], np.cumsum(np.diagonal(s, -1) - np.diagonal(s, 1))])
            gain += turned[None, :] - np.append(turned[1:], 0.0)[:, None]
        c = codes[path]
        # Neither new edge joins two tracks of one artist (the last track has no next).
        spread = np.append(c, -1)
        valid = pairs & (c[:, None] != c[None, :]) & (spread[1:, None] != spread[None, 1:])
        flat = np.flatnonzero(valid & (gain > 1e-9))
        if not len(flat):
            break
        path, moved = _exchange(path, c.tolist(), flat, gain.reshape(-1)[flat])
        if not moved:
            break
    return path


def _exchange(
    path: np.ndarray, artists: list[int], flat: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, bool]:
    """One round of ``improve``: the best exchanges (``ROUND_CANDIDATES`` at most, best
    first, ties to the first pair) that touch disjoint stretches and crowd no artist."""
    k = len(path)
    if len(flat) > ROUND_CANDIDATES:
        top = np.argpartition(-scores, ROUND_CANDIDATES - 1)[:ROUND_CANDIDATES]
        flat, scores = flat[top], scores[top]
    best = flat[np.lexsort((flat, -scores))]
    lows, highs = np.divmod(best, k)
    highs += 1
    # Candidates still possible: none overlapping a stretch changed this round (those are
    # struck out in one step when a stretch changes, not tested one by one).
    alive = np.ones(len(best), bool)
    moved = False
    while True:
        m = int(alive.argmax())
        if not alive[m]:
            break
        alive[m] = False
        low, high = int(lows[m]), int(highs[m])
        if _crowding_change(artists, low, high) <= 0:
            path[low + 1 : high] = path[low + 1 : high][::-1].copy()
            artists[low + 1 : high] = artists[low + 1 : high][::-1]
            alive &= (lows > high) | (highs < low)
            moved = True
    return path, moved


def _crowding_change(artists: list[int], low: int, high: int) -> int:
    """How many more pairs of one artist within ``SEPARATION`` positions reversing
    ``artists[low + 1 : high]`` makes. Only pairs with one end inside the segment and one
    outside change, and only within ``SEPARATION`` of its ends: a few comparisons."""
    k = len(artists)
    turn = low + high  # after the reversal, position x inside plays artists[turn - x]
    change = 0
    for q in range(low + 1, min(high, low + 1 + SEPARATION)):
        now, then = artists[q], artists[turn - q]
        for p in range(max(0, q - SEPARATION), low + 1):
            change += (artists[p] == then) - (artists[p] == now)
    for p in range(max(low + 1, high - SEPARATION), high):
        now, then = artists[p], artists[turn - p]
        for q in range(high, min(k, p + SEPARATION + 1)):
            change += (then == artists[q]) - (now == artists[q])
    return change


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


def transition_bound(similarity: np.ndarray, artists: list[str]) -> float:
    """An upper bound of the mean transition similarity any order of these tracks can reach:
    each transition leaves one track for another artist's, so it is at most that track's
    best such neighbour; a path of k tracks has k - 1 transitions, at most the k - 1 best."""
    k = similarity.shape[0]
    if k < 2:
        return float("nan")
    codes = np.unique(artists, return_inverse=True)[1].reshape(-1)
    best = np.where(codes[:, None] == codes[None, :], -np.inf, similarity).max(axis=1)
    best = np.sort(best[np.isfinite(best)])[::-1][: k - 1]
    return float(best.mean()) if len(best) else float("nan")

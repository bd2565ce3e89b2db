"""Stage 1 of the hybrid: candidates, the union of each generator's top-n unheard items.

``top_entries`` finds each row's n best scores as flat arrays (faster than a full sort on
large catalogues); ``propose`` runs every generator on a block of rows and keeps, for each
candidate, what each generator said about it (score, score relative to the row's best, rank;
NaN where it did not propose the item).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tastemaker.models.base import Recommender
from tastemaker.models.features import Candidates
from tastemaker.ranking import mask_rows


def top_entries(
    scores: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The n best finite scores of each row as flat (row, item, 1-based rank, score) arrays,
    sorted by row then item; ties go to the lower item index.

    The lists of ``base.top_n``, without padding, ties at the cut resolved like everywhere
    else, and found faster on large catalogues: a cut taken from a strided sample of each row
    lies (almost always) below its n-th best score, so only the few hundred values above it
    need sorting. Where fewer than n values clear the cut, the row is ranked exactly.
    """
    rows, n_items = scores.shape
    n_eff = min(n, n_items)
    if n_eff <= 0 or rows == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0, np.float32)
    fast = np.zeros(rows, dtype=bool)
    stride = n_items // (8 * n_eff)
    if stride >= 2:
        sample = scores[:, ::stride]
        k = min(sample.shape[1], int(np.ceil(2.0 * n_eff / stride)) + 8)
        at = np.argpartition(-sample, k - 1, axis=1)[:, k - 1 : k]
        cut = np.take_along_axis(sample, at, axis=1)[:, 0]
        above = scores > cut[:, None]
        # Every item of the top n lies above the cut when at least n do (and the cut is a
        # real score): selecting by value there is exact.
        fast = np.isfinite(cut) & (above.sum(axis=1) >= n_eff)
    parts = []
    if fast.any():
        which = np.flatnonzero(fast)
        r, c = np.divmod(np.flatnonzero(above[which]), n_items)
        parts.append(_rank_selected(which[r], c, scores[which[r], c], n_eff))
    if not fast.all():
        which = np.flatnonzero(~fast)
        r, c, k, v = _exact_top(scores[which], n_eff)
        parts.append((which[r], c, k, v))
    row, item, rank, value = (np.concatenate(x) for x in zip(*parts, strict=True))
    by_key = np.lexsort((item, row))
    return row[by_key], item[by_key], rank[by_key], value[by_key].astype(np.float32)


def _rank_selected(
    row: np.ndarray, item: np.ndarray, value: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rank selected entries (sorted by row, then item) within their rows, best first and the
    lower item on ties, and keep the first n of each row.

    One stable sort per row of a padded (rows, widest) table: much faster than a global
    three-key lexsort of the same entries.
    """
    if len(row) == 0:
        return row, item, row.copy(), value
    rows, inverse, counts = np.unique(row, return_inverse=True, return_counts=True)
    position = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    table = np.full((len(rows), int(counts.max())), np.inf, np.float64)
    table[inverse, position] = -value.astype(np.float64)
    order = np.argsort(table, axis=1, kind="stable")[:, :n]  # ties keep item order
    take = order < counts[:, None]
    owner = np.repeat(np.arange(len(rows)), take.sum(axis=1))
    start = np.cumsum(counts) - counts
    picked = start[owner] + order[take]
    rank = np.tile(np.arange(1, order.shape[1] + 1), (len(rows), 1))[take]
    return row[picked], item[picked], rank, value[picked]


def _exact_top(
    scores: np.ndarray, n_eff: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``top_entries`` by an index partition of whole rows (small catalogues, odd rows)."""
    rows, n_items = scores.shape
    if n_eff < n_items:
        part = np.argpartition(-scores, n_eff - 1, axis=1)[:, :n_eff]
        threshold = np.take_along_axis(scores, part, axis=1).min(axis=1)
    else:
        threshold = np.full(rows, -np.inf, np.float32)
    # Everything at or above the n-th best (ties included), finite only; then rank exactly.
    chosen = (scores >= threshold[:, None]) & np.isfinite(scores)
    r, c = np.nonzero(chosen)
    return _rank_selected(r, c, scores[r, c], n_eff)


def propose(
    generators: dict[str, Recommender],
    history: sp.csr_matrix,
    users: np.ndarray | None,
    n: int,
    keep_fallback: bool = True,
) -> tuple[Candidates, np.ndarray | None]:
    """Stage 1 for a block of rows: the union of each generator's top-n unheard items.

    Returns the candidates and (with ``keep_fallback``) the first generator's unmasked dense
    scores, the order of the items outside the candidate set. A generator's score, relative
    score and rank are NaN for the candidates it did not propose: the ranker learns from "not
    proposed" itself, as it would with generators that only ever return their top-n.
    """
    rows, n_items = history.shape
    proposals, fallback = [], None
    for generator in generators.values():
        scores = np.array(generator._score_rows(history, users), dtype=np.float32)
        if fallback is None and keep_fallback:
            fallback = scores.copy()
        lowest = scores.min(axis=1)
        if not np.isfinite(lowest).all():  # some items unscored (-inf): the lowest finite
            lowest = np.where(np.isfinite(scores), scores, np.inf).min(axis=1)
        mask_rows(scores, history)
        row_of, item, rank_of, best = top_entries(scores, n)
        # A generator whose scores are all equal for a row (an empty history, say) has no
        # opinion there: its "top n" would be the lowest item indices. It proposes nothing.
        first = np.zeros(rows, np.float32)
        first[row_of[rank_of == 1]] = best[rank_of == 1]
        keep = first[row_of] > lowest[row_of]
        row_of, item, rank_of, best = row_of[keep], item[keep], rank_of[keep], best[keep]
        count = np.maximum(np.bincount(row_of, minlength=rows), 1)
        mean = np.bincount(row_of, best, rows) / count
        spread = np.sqrt(np.bincount(row_of, (best - mean[row_of]) ** 2, rows) / count)
        relative = (best - first[row_of]) / (spread[row_of] + 1e-6)
        proposals.append((row_of * n_items + item, rank_of, best, relative))  # sorted keys
    union = np.unique(np.concatenate([p[0] for p in proposals]))
    shape = (len(union), len(proposals))
    score = np.full(shape, np.nan, np.float32)
    relative = np.full(shape, np.nan, np.float32)
    rank = np.full(shape, np.nan, np.float32)
    for g, (keys, ranks, values, relatives) in enumerate(proposals):
        if len(keys) == 0:
            continue
        at = np.minimum(np.searchsorted(keys, union), len(keys) - 1)
        hit = keys[at] == union
        rank[hit, g], score[hit, g], relative[hit, g] = (
            ranks[at[hit]],
            values[at[hit]],
            relatives[at[hit]],
        )
    return Candidates(union // n_items, union % n_items, score, relative, rank), fallback

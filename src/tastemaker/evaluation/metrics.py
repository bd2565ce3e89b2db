"""Ranking metrics over a split, vectorised over batches of users (DESIGN.md, exactly).

For every test user the model scores every item; items in the user's history (training row,
or fold-in row for user K-fold) are masked, and the rest are ranked (full ranking). Per user:

- precision@k = hits / k; recall@k = hits / |test|; hit_rate@k = 1 if any hit;
- capped_recall@k = hits / min(k, |test|): Liang et al. 2018's Recall@R, which reaches 1 when
  the top k is all hits however many items were held out;
- NDCG@k with binary relevance, ideal DCG over min(k, |test|);
- MAP@k = sum of precision@i at each hit i <= k, / min(k, |test|);
- MRR@k = 1 / rank of the first hit within k (0 if none);
- AUC = the share of (test item, candidate negative) pairs ordered correctly, ties counting one
  half; negatives are the items neither in the history nor in the test set;

each averaged over test users. Beside them, over all test users' top-k lists:

- coverage@k = distinct recommended items / catalogue size;
- popular_share@k = mean share of each top-k list among the ``POPULAR_HEAD`` (20) items with
  the most training listeners (how much of a list the head of the catalogue takes);
- novelty@k = mean self-information ``-log2(p)`` of recommended items, ``p`` = share of training
  users who listened to the item (at least one listener assumed, so the value stays finite).

On a ``sampled`` split the same definitions apply within each user's candidate list (held-out
item + sampled negatives) instead of the whole catalogue.

Ties in score are broken by the lower item index, in top-k lists as in ``Recommender.recommend``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastemaker.evaluation.splits import Split
from tastemaker.models.base import Recommender
from tastemaker.ranking import top_n

PER_USER = ("precision", "recall", "capped_recall", "ndcg", "map", "hit_rate", "mrr")
METRIC_ORDER = (*PER_USER, "auc", "coverage", "popular_share", "novelty")
# The most listened-to items whose share of each top-k list ``popular_share@k`` reports.
POPULAR_HEAD = 20
# Rows per batch are chosen so that one dense score block stays near this many floats.
BLOCK_FLOATS = 1 << 23


def metric_names(ks: Sequence[int]) -> list[str]:
    """Output keys in display order: ndcg@10, recall@10, ..., auc, coverage@10, novelty@10."""
    names = []
    for base in ("ndcg", "recall", "capped_recall", "precision", "map", "hit_rate", "mrr"):
        names += [f"{base}@{k}" for k in ks]
    names.append("auc")
    for base in ("coverage", "popular_share", "novelty"):
        names += [f"{base}@{k}" for k in ks]
    return names


# -- per-batch building blocks ---------------------------------------------------------------


def _sortable(values: np.ndarray) -> np.ndarray:
    """float32 -> int32 keys with the same order (-0.0 == +0.0; NaN after +inf).

    IEEE floats order like sign-magnitude integers: flipping the magnitude bits of negative
    numbers makes them order like two's-complement ones.
    """
    v = np.ascontiguousarray(values, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0
    bits = v.view(np.int32)
    return bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))


def _row_keys(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """int64 keys ordered by row, then by value: the row in the high 32 bits, the value's
    order-preserving key shifted to be non-negative in the low 32."""
    return (rows.astype(np.int64) << 32) + (_sortable(values).astype(np.int64) + (1 << 31))


def _count_below(sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray, equal: bool):
    """Per query: how many entries of ``sorted_rows[row]`` are < value (<= with ``equal``).

    A vectorised binary search: all queries advance together, ~log2(width) gathers in all.
    NaN entries (sorted last) never count.
    """
    lo = np.zeros(len(rows), np.int64)
    hi = np.full(len(rows), sorted_rows.shape[1], np.int64)
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        probe = sorted_rows[rows, np.minimum(mid, sorted_rows.shape[1] - 1)]
        right = (probe <= values) if equal else (probe < values)
        lo = np.where(active & right, mid + 1, lo)
        hi = np.where(active & ~right, mid, hi)


def count_below_many(
    sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``_count_below`` (both sides) for many queries: one C-level ``searchsorted`` over the
    rows laid end to end, kept in order by putting the row number in the high bits."""
    n_rows, width = sorted_rows.shape
    keys = _row_keys(np.arange(n_rows)[:, None], sorted_rows).ravel()
    queries = _row_keys(rows, values)
    start = rows.astype(np.int64) * width
    below = np.searchsorted(keys, queries, side="left") - start
    not_above = np.searchsorted(keys, queries, side="right") - start
    return below, not_above


def _count_within(rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each (row, value): how many values of the same row are < it, and <= it."""
    keys = _row_keys(rows, values)
    ordered = np.sort(keys)
    start = np.searchsorted(ordered, rows.astype(np.int64) << 32, side="left")
    less = np.searchsorted(ordered, keys, side="left") - start
    less_equal = np.searchsorted(ordered, keys, side="right") - start
    return less, less_equal


# Rows with more test items than this get their AUC from one sort of the row instead of one
# counting pass per test item (a pass costs about 1/40 of a sort).
COUNTING_MAX_POSITIVES = 32
SAMPLE_COLUMNS = 2048


def _row_counts(mask: np.ndarray) -> np.ndarray:
    """True cells per row of a boolean matrix (bit-packed popcount: ~4x ``count_nonzero``)."""
    return np.bitwise_count(np.packbits(mask, axis=1)).sum(axis=1, dtype=np.int64)


def _selection(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a sparse boolean (rows, width) mask, scanning 8 bytes at a time."""
    rows, width = mask.shape
    flat = np.ascontiguousarray(mask).reshape(-1)
    whole = (len(flat) // 8) * 8
    words = flat[:whole].view(np.uint64)
    hit_words = np.flatnonzero(words)
    word_bytes = flat[:whole].reshape(-1, 8)[hit_words]
    w, b = np.nonzero(word_bytes)
    positions = hit_words[w] * 8 + b
    tail = np.flatnonzero(flat[whole:]) + whole
    positions = np.concatenate([positions, tail])
    return positions // width, positions % width


def _top_of_selection(
    scores: np.ndarray, rows_sel: np.ndarray, cols_sel: np.ndarray, n_rows: int, k: int
) -> np.ndarray:
    """Top-k columns (ties -> lower index) among the selected cells, grouped by row."""
    top = np.full((n_rows, k), -1, np.int64)
    if len(rows_sel) == 0:
        return top
    counts = np.bincount(rows_sel, minlength=n_rows)
    width = int(counts.max())
    slot = np.arange(len(rows_sel)) - np.repeat(np.cumsum(counts) - counts, counts)
    pad_scores = np.full((n_rows, width), -np.inf, np.float32)
    pad_items = np.full((n_rows, width), -1, np.int64)
    pad_scores[rows_sel, slot] = scores[rows_sel, cols_sel]
    pad_items[rows_sel, slot] = cols_sel
    order, _ = top_n(pad_scores, min(k, width))  # padded selection: columns ascending per row
    found = np.where(order >= 0, np.take_along_axis(pad_items, np.maximum(order, 0), 1), -1)
    top[:, : found.shape[1]] = found
    return top


def _exact_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k finite columns per row, ties broken by the lower index, from one partition."""
    n_rows, width = scores.shape
    finite = scores > -np.inf
    k_eff = np.minimum(k, finite.sum(axis=1))
    kth = np.partition(scores, width - min(k, width), axis=1)[:, width - min(k, width)]
    above = scores > kth[:, None]
    need = k_eff - above.sum(axis=1)
    ties = (scores == kth[:, None]) & finite
    chosen = above | (ties & (np.cumsum(ties, axis=1) <= need[:, None]))
    r, c = np.nonzero(chosen)
    return _top_of_selection(scores, r, c, n_rows, k)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k item indices per row, best first, ties broken by the lower item index; ``-inf``
    scores are never selected (padded with -1).

    A threshold from a fixed sample of columns selects a few dozen cells per row in one pass;
    rows where it selects too few or too many fall back to an exact partition.
    """
    n_rows, width = scores.shape
    if width <= 4 * SAMPLE_COLUMNS or width <= 64 * k:
        return _exact_top(scores, k)
    columns = np.sort(np.random.default_rng(0).choice(width, SAMPLE_COLUMNS, replace=False))
    sample = scores[:, columns]
    rank = max(1, round(4 * k * SAMPLE_COLUMNS / width))
    threshold = np.partition(sample, SAMPLE_COLUMNS - rank, axis=1)[:, SAMPLE_COLUMNS - rank]
    threshold = np.maximum(threshold, -np.finfo(np.float32).max)  # never select -inf
    mask = scores >= threshold[:, None]
    counts = _row_counts(mask)
    bad = (counts < k) | (counts > 64 * k + 256)
    top = np.empty((n_rows, k), np.int64)
    if bad.any():
        mask[bad] = False
        top[bad] = _exact_top(scores[bad], k)
    good = ~bad
    if good.any():
        r, c = _selection(mask)
        top[good] = _top_of_selection(scores, r, c, n_rows, k)[good]
    return top


def _auc_counts(
    scores: np.ndarray, n_history: np.ndarray, pos_rows: np.ndarray, pos_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each positive: candidates scoring below it, and tied with it (itself included).

    ``scores`` has history cells at ``-inf``; one comparison pass over the block per "slot"
    (the j-th positive of every row), so rows should have few positives.
    """
    n_rows = scores.shape[0]
    order = np.argsort(pos_rows, kind="stable")
    rows_sorted = pos_rows[order]
    slot = np.arange(len(rows_sorted)) - np.searchsorted(rows_sorted, rows_sorted, side="left")
    below = np.zeros(len(pos_rows), np.int64)
    tied = np.zeros(len(pos_rows), np.int64)
    for j in range(int(slot.max()) + 1 if len(slot) else 0):
        pick = order[slot == j]
        rows = pos_rows[pick]
        values = pos_scores[pick]
        if len(rows) * 4 >= n_rows:
            threshold = np.full(n_rows, np.nan, np.float32)
            threshold[rows] = values
            lt = _row_counts(scores < threshold[:, None])[rows]
            eq = _row_counts(scores == threshold[:, None])[rows]
        else:
            block = scores[rows]
            lt = _row_counts(block < values[:, None])
            eq = _row_counts(block == values[:, None])
        below[pick], tied[pick] = lt, eq
    finite = pos_scores > -np.inf
    # History cells are -inf: below every finite positive, tied with a -inf one.
    below = below - np.where(finite, n_history[pos_rows], 0)
    tied = tied - np.where(finite, 0, n_history[pos_rows])
    return below, tied


def _auc_sorted(
    scores: np.ndarray, pos_rows: np.ndarray, pos_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``_auc_counts`` from one sort per row (for rows with many positives)."""
    candidates = np.where(scores > -np.inf, scores, np.nan).astype(np.float32)
    candidates.sort(axis=1)  # history (NaN) last, never counted
    lt = _count_below(candidates, pos_rows, pos_scores, equal=False)
    le = _count_below(candidates, pos_rows, pos_scores, equal=True)
    return lt, le - lt


def block_auc(scores: np.ndarray, history: sp.csr_matrix, relevant: sp.csr_matrix) -> np.ndarray:
    """Per-row AUC of the ``relevant`` items against every item in neither matrix.

    ``scores`` must already hold ``-inf`` in the history cells. Ties count one half. NaN for
    rows without positives or without negatives.
    """
    n_rows, width = scores.shape
    n_pos = np.diff(relevant.indptr)
    n_history = np.diff(history.indptr)
    pos_rows = np.repeat(np.arange(n_rows), n_pos)
    pos_scores = scores[pos_rows, relevant.indices].astype(np.float32)
    many = n_pos > COUNTING_MAX_POSITIVES
    below = np.zeros(len(pos_rows), np.int64)
    tied = np.zeros(len(pos_rows), np.int64)
    few_pos = ~many[pos_rows]
    if few_pos.any():
        below[few_pos], tied[few_pos] = _auc_counts(
            scores, n_history, pos_rows[few_pos], pos_scores[few_pos]
        )
    if many.any():
        heavy = np.flatnonzero(many)
        local = np.searchsorted(heavy, pos_rows[~few_pos])
        below[~few_pos], tied[~few_pos] = _auc_sorted(scores[heavy], local, pos_scores[~few_pos])
    # Take the positives themselves out of the candidate counts.
    pos_below, pos_not_above = _count_within(pos_rows, pos_scores)
    neg_below = below - pos_below
    neg_tied = tied - (pos_not_above - pos_below)
    n_neg = (width - n_history - n_pos).astype(np.float64)
    correct = np.bincount(pos_rows, weights=neg_below + 0.5 * neg_tied, minlength=n_rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        return correct / (n_pos * n_neg)


def rank_block(
    scores: np.ndarray,
    history: sp.csr_matrix,
    relevant: sp.csr_matrix,
    k_max: int,
    auc: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k_max`` item indices and per-row AUC for one block of users.

    ``scores`` (rows, items) are raw model scores, overwritten: history items become ``-inf``
    and are excluded from the ranking and from the negatives; ``relevant`` items are the
    positives. Without ``auc`` the AUC column is NaN.
    """
    n_rows = scores.shape[0]
    scores[np.repeat(np.arange(n_rows), np.diff(history.indptr)), history.indices] = -np.inf
    top = top_k(scores, k_max)
    if auc:
        return top, block_auc(scores, history, relevant)
    return top, np.full(n_rows, np.nan)


def auc_per_row(scores: np.ndarray, positive: sp.csr_matrix, excluded: sp.csr_matrix) -> np.ndarray:
    """Per-row AUC of ``positive`` columns against every column in neither matrix (NaN when a
    row has no positives or no negatives)."""
    return rank_block(scores.astype(np.float32), excluded, positive, 1)[1]


def hits_of(top: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean (rows, K): whether each top-K column is in the row of ``relevant`` (sorted CSR)."""
    rows, width = top.shape
    n_cols = relevant.shape[1]
    rel_keys = (
        np.repeat(np.arange(rows, dtype=np.int64), np.diff(relevant.indptr)) * n_cols
        + relevant.indices
    )
    if len(rel_keys) == 0:
        return np.zeros(top.shape, bool)
    keys = np.arange(rows, dtype=np.int64)[:, None] * n_cols + top
    pos = np.minimum(np.searchsorted(rel_keys, keys), len(rel_keys) - 1)
    return (rel_keys[pos] == keys) & (top >= 0)


def per_user_metrics(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """precision, recall, capped_recall, ndcg, map, hit_rate and mrr at ``k`` per row."""
    h = hits[:, :k].astype(np.float64)
    if h.shape[1] < k:
        h = np.pad(h, ((0, 0), (0, k - h.shape[1])))
    n_relevant = n_relevant.astype(np.float64)
    positions = np.arange(1, k + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(positions + 1.0)
    n_hits = h.sum(axis=1)
    capped = np.minimum(n_relevant, k)
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[capped.astype(np.int64)]
    first = np.where(n_hits > 0, np.argmax(h > 0, axis=1) + 1.0, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "precision": n_hits / k,
            "recall": n_hits / n_relevant,
            "capped_recall": n_hits / capped,
            "ndcg": (h @ discounts) / ideal,
            "map": ((np.cumsum(h, axis=1) / positions) * h).sum(axis=1) / capped,
            "hit_rate": (n_hits > 0).astype(np.float64),
            "mrr": 1.0 / first,
        }


def self_information(train: sp.csr_matrix) -> np.ndarray:
    """``-log2(p)`` per item, ``p`` = share of users with history who listened to it (>= 1)."""
    listeners = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float64)
    users = max(int((np.diff(train.indptr) > 0).sum()), 1)
    return -np.log2(np.maximum(listeners, 1.0) / users)


def most_popular(train: sp.csr_matrix, n: int | None = None) -> np.ndarray:
    """The ``n`` (default ``POPULAR_HEAD``) items with the most training listeners (ties:
    lower index first)."""
    n = POPULAR_HEAD if n is None else n
    listeners = np.bincount(train.indices, minlength=train.shape[1])
    return np.lexsort((np.arange(len(listeners)), -listeners))[:n]


# -- the evaluation loop ---------------------------------------------------------------------


class _Accumulator:
    """Sums of per-user metrics, recommended-item sets and novelty over batches."""

    def __init__(
        self, ks: Sequence[int], n_items: int, information: np.ndarray, head: np.ndarray
    ) -> None:
        self.ks = list(ks)
        self.sums = {f"{m}@{k}": 0.0 for m in PER_USER for k in self.ks}
        self.auc_sum = 0.0
        self.auc_users = 0
        self.users = 0
        self.recommended = {k: np.zeros(n_items, bool) for k in self.ks}
        self.novelty_sum = dict.fromkeys(self.ks, 0.0)
        self.popular_sum = dict.fromkeys(self.ks, 0.0)
        self.information = information
        self.is_head = np.zeros(n_items, bool)
        self.is_head[head] = True

    def add(self, top_items: np.ndarray, hits: np.ndarray, n_relevant: np.ndarray, auc) -> None:
        self.users += len(n_relevant)
        for k in self.ks:
            for name, values in per_user_metrics(hits, n_relevant, k).items():
                self.sums[f"{name}@{k}"] += float(values.sum())
            top = top_items[:, :k]
            valid = top >= 0
            self.recommended[k][top[valid]] = True
            info = np.where(valid, self.information[np.maximum(top, 0)], 0.0)
            per_user = info.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
            self.novelty_sum[k] += float(per_user.sum())
            in_head = np.where(valid, self.is_head[np.maximum(top, 0)], False)
            self.popular_sum[k] += float((in_head.sum(axis=1) / k).sum())
        finite = np.isfinite(auc)
        self.auc_sum += float(auc[finite].sum())
        self.auc_users += int(finite.sum())

    def result(self) -> dict[str, float]:
        users = max(self.users, 1)
        out: dict[str, float] = {}
        for name in metric_names(self.ks):
            base, _, k = name.partition("@")
            if base == "auc":
                out[name] = self.auc_sum / max(self.auc_users, 1)
            elif base == "coverage":
                out[name] = float(self.recommended[int(k)].mean())
            elif base == "novelty":
                out[name] = self.novelty_sum[int(k)] / users
            elif base == "popular_share":
                out[name] = self.popular_sum[int(k)] / users
            else:
                out[name] = self.sums[name] / users
        return out


def batch_rows(n_items: int, batch_size: int | None = None) -> int:
    """Users per scoring batch: ``batch_size`` or as many as fit in the block budget."""
    if batch_size:
        return max(1, int(batch_size))
    return int(np.clip(BLOCK_FLOATS // max(n_items, 1), 16, 4096))


def score_users(model: Recommender, split: Split, users: np.ndarray) -> np.ndarray:
    """float32 scores (len(users), n_items): training users directly, K-fold users by fold-in.

    The result is always a fresh array the caller may overwrite (a model may hand back a view
    of its own state).
    """
    if split.fold_in is not None:
        scores = model.score_history(split.fold_in[users])
    else:
        scores = model.score(users)
    out = np.asarray(scores, dtype=np.float32)
    if out is scores and (out.base is not None or not out.flags.writeable):
        out = out.copy()
    return np.ascontiguousarray(out)


def ranking_metrics(
    model: Recommender,
    split: Split,
    ks: Sequence[int] = (10,),
    batch_size: int | None = None,
    users: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
    collect_top: int = 0,
    auc: bool = True,
) -> dict[str, Any]:
    """Mean ranking metrics of a fitted ``model`` over the test users of ``split``.

    ``progress(n)`` is called after each batch with the number of users done in it. With
    ``collect_top`` > 0, the top lists (item indices) are also returned under the key
    ``"_top"`` (an array, for the report's popularity plot) -- callers pop it. With
    ``auc=False`` the full-ranking AUC (the costliest metric) is skipped and left out.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError("cut-offs k must be positive integers")
    k_max = max(ks + [collect_top])
    test_users = split.test_users if users is None else np.asarray(users, dtype=np.int64)
    n_items = split.train.n_items
    train = split.train.user_items
    acc = _Accumulator(ks, n_items, self_information(train), most_popular(train))
    tops = []
    step = batch_rows(n_items, batch_size)
    candidate_users = split.test_users if split.sampled else None
    for start in range(0, len(test_users), step):
        block = test_users[start : start + step]
        scores = score_users(model, split, block)
        relevant = split.test[block]
        if split.sampled:
            assert split.candidates is not None and candidate_users is not None  # sampled
            candidates = split.candidates[np.searchsorted(candidate_users, block)]
            top, hits, n_rel, row_auc = _sampled_batch(scores, candidates, relevant, k_max)
        else:
            top, row_auc = rank_block(scores, split.history(block), relevant, k_max, auc=auc)
            hits = hits_of(top, relevant)
            n_rel = np.diff(relevant.indptr)
        acc.add(top, hits, n_rel, row_auc)
        if collect_top:
            tops.append(top[:, :collect_top])
        if progress:
            progress(len(block))
    result: dict = acc.result()
    if not auc:
        del result["auc"]
    if collect_top:
        result["_top"] = np.vstack(tops) if tops else np.empty((0, collect_top), np.int64)
    return result


def _sampled_batch(
    scores: np.ndarray, candidates: np.ndarray, relevant: sp.csr_matrix, k_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top items, hits, |test| and AUC when each user ranks only their candidate list."""
    rows, width = candidates.shape
    cand_scores = np.take_along_axis(scores, candidates, axis=1)
    is_pos = hits_of(candidates, relevant)  # candidates are sorted by item index
    positions, _ = top_n(cand_scores, k_max)
    valid = positions >= 0
    safe = np.maximum(positions, 0)
    top = np.where(valid, np.take_along_axis(candidates, safe, axis=1), -1)
    hits = np.take_along_axis(is_pos, safe, axis=1) & valid
    pos_csr = sp.csr_matrix(is_pos)
    no_exclusion = sp.csr_matrix((rows, width), dtype=np.float32)
    auc = auc_per_row(cand_scores, pos_csr, no_exclusion)
    return top, hits, np.diff(relevant.indptr), auc

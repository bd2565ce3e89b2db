"""Train / test splits of an ``Interactions`` object, leak-free by construction.

Every split holds out whole (user, item) pairs: a held-out pair leaves the training matrix,
its ``last_listened`` entry and every one of its listen events, so no model ever sees any trace
of a test interaction. Test matrices are binary (users x items).

- ``random`` (the default protocol, DESIGN.md): every user with at least ``min_items`` items
  keeps ``round(test_fraction * n_items)`` of them, drawn uniformly with ``seed``, as test.
- ``temporal``: pairs last listened at or after a global ``cutoff``, or each user's latest
  ``test_fraction`` of pairs by last-listened time. Needs timestamps.
- ``leave-last-out``: each user's most recently listened pair. Needs timestamps.
- ``user-kfold``: users are dealt into ``k`` folds; in fold ``f`` the users of that fold leave
  training entirely and are *folded in* at test time from the visible part of their history
  (``Split.fold_in``), the rest of which is test.
- ``sampled``: one held-out item per user (the last one where timestamps exist, else random)
  ranked against ``negatives`` random items the user never listened to -- the NCF paper's
  protocol. Its numbers are not comparable with full ranking and are always labelled so.
- ``strong`` (strong generalisation, Liang et al. 2018): a share of the users leaves
  training; each is folded in from 80 % of their history and ranked for the rest.
- ``short``: the same held-out users, folded in from only the first ``fold_in_k`` items of
  their history (seeded random order) and ranked for all the others (docs/protocols.md).
- ``cold-items``: a share of the items with enough listeners leaves training entirely (every
  pair, time and event of it); each test user ranks only those cold items (see
  ``cold_items_split``).

``Split`` and the operations every split is built from are in ``split_parts``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastemaker.data.interactions import (
    UNKNOWN_TIME,
    Interactions,
)
from tastemaker.errors import UsageError
from tastemaker.evaluation.split_parts import (
    Split,
    check_fraction,
    filter_events,
    from_test_mask,
    holdout_counts,
    listen_timestamps,
    pair_keys,
    rank_within_rows,
    row_of_each_entry,
    select_entries,
)

SPLITS = (
    "random",
    "temporal",
    "leave-last-out",
    "user-kfold",
    "sampled",
    "strong",
    "short",
    "cold-items",
)


# -- splits ---------------------------------------------------------------------------------


def random_split(
    interactions: Interactions, test_fraction: float = 0.2, min_items: int = 5, seed: int = 0
) -> Split:
    """The default protocol: users with >= ``min_items`` items keep
    ``round(test_fraction * n_items)`` of them, drawn uniformly with ``seed``, as test."""
    check_fraction(test_fraction)
    m = interactions.user_items
    rng = np.random.default_rng(seed)
    rank = rank_within_rows(m, rng.random(m.nnz))
    n_test = holdout_counts(np.diff(m.indptr), test_fraction, min_items)
    is_test = rank < n_test[row_of_each_entry(m)]
    params = {"test_fraction": test_fraction, "min_items": min_items, "seed": seed}
    train, test = from_test_mask(interactions, is_test, "random", params)
    return Split(train, test, "random", params)


def _parse_cutoff(cutoff: str | int | float) -> int:
    if isinstance(cutoff, int | float):
        return int(cutoff)
    text = str(cutoff).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"cut-off {cutoff!r} is neither an ISO date (2009-01-01) nor epoch seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def temporal_split(
    interactions: Interactions,
    cutoff: str | int | None = None,
    test_fraction: float = 0.2,
    min_items: int = 5,
    seed: int = 0,
) -> Split:
    """Hold out by time (each pair's time is its last listen; pairs of unknown time train).

    With ``cutoff`` (ISO date or epoch seconds): every pair last listened at or after it is
    test, for users who keep at least one training pair (the pairs of users with nothing
    before the cut-off cannot be ranked for; they are dropped from both parts, and counted).
    Without: each user with >= ``min_items`` items keeps their latest ``round(test_fraction *
    n)`` pairs (ties in time broken at random with ``seed``).
    """
    last = listen_timestamps(interactions, "temporal")
    m = interactions.user_items
    rows = row_of_each_entry(m)
    known = last != UNKNOWN_TIME
    params: dict[str, Any] = {"seed": seed}
    drop = None
    if cutoff is not None:
        at = _parse_cutoff(cutoff)
        is_test = known & (last >= at)
        train_count = np.bincount(rows[~is_test], minlength=m.shape[0])
        cold = is_test & (train_count[rows] == 0)
        is_test &= ~cold
        drop = cold  # after the cut-off, yet not rankable: in neither part
        params.update(
            cutoff=datetime.fromtimestamp(at, UTC).isoformat(),
            cold_users_dropped=int(len(np.unique(rows[cold]))),
        )
    else:
        check_fraction(test_fraction)
        rng = np.random.default_rng(seed)
        # Latest first: sort by descending time, unknown times last, random among equal times.
        time_key = np.where(known, -last.astype(np.float64), np.inf)
        order = np.lexsort((rng.random(m.nnz), time_key, rows))
        rank = np.empty(m.nnz, np.int64)
        rank[order] = np.arange(m.nnz) - np.repeat(m.indptr[:-1], np.diff(m.indptr))
        n_test = holdout_counts(np.diff(m.indptr), test_fraction, min_items)
        is_test = (rank < n_test[rows]) & known
        params.update(test_fraction=test_fraction, min_items=min_items)
    train, test = from_test_mask(interactions, is_test, "temporal", params, drop=drop)
    return Split(train, test, "temporal", params)


def _one_per_user(
    interactions: Interactions, holdout: str, min_items: int, seed: int
) -> np.ndarray:
    """Mask of one held-out pair per user with >= ``min_items`` items: latest, or random."""
    m = interactions.user_items
    rows = row_of_each_entry(m)
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(m.nnz)
    if holdout == "last":
        last = listen_timestamps(interactions, "leave-last-out")
        known = last != UNKNOWN_TIME
        key = np.where(known, -last.astype(np.float64), np.inf)
        order = np.lexsort((tiebreak, key, rows))
        rank = np.empty(m.nnz, np.int64)
        rank[order] = np.arange(m.nnz) - np.repeat(m.indptr[:-1], np.diff(m.indptr))
        eligible = known
    elif holdout == "random":
        rank = rank_within_rows(m, tiebreak)
        eligible = np.ones(m.nnz, bool)
    else:
        raise UsageError(f"holdout must be 'last' or 'random'; got {holdout!r}")
    long_enough = np.diff(m.indptr) >= min_items
    return (rank == 0) & eligible & long_enough[rows]


def leave_last_out(interactions: Interactions, min_items: int = 2, seed: int = 0) -> Split:
    """Each user with >= ``min_items`` items holds out the pair they listened to last."""
    is_test = _one_per_user(interactions, "last", min_items, seed)
    params = {"min_items": min_items, "seed": seed}
    train, test = from_test_mask(interactions, is_test, "leave-last-out", params)
    return Split(train, test, "leave-last-out", params)


def sampled_split(
    interactions: Interactions,
    negatives: int = 100,
    holdout: str | None = None,
    min_items: int = 2,
    seed: int = 0,
) -> Split:
    """One held-out item per user ranked against ``negatives`` random never-heard items.

    ``holdout`` is ``"last"`` (the NCF paper's choice) when the data has timestamps, else
    ``"random"``. Negatives are drawn uniformly, without replacement, from the items the user
    has neither in training nor in test.
    """
    if holdout is None:
        has_time = interactions.last_listened is not None and np.any(
            interactions.last_listened != UNKNOWN_TIME
        )
        holdout = "last" if has_time else "random"
    if negatives < 1:
        raise UsageError(f"negatives must be at least 1; got {negatives}")
    is_test = _one_per_user(interactions, holdout, min_items, seed)
    params = {"negatives": negatives, "holdout": holdout, "min_items": min_items, "seed": seed}
    train, test = from_test_mask(interactions, is_test, "sampled", params)
    m = interactions.user_items
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    unheard = m.shape[1] - np.diff(m.indptr)[users]
    if len(users) and unheard.min() < negatives:
        raise UsageError(
            f"some users have only {int(unheard.min())} unheard items; "
            f"ask for fewer than {negatives} negatives"
        )
    candidates = _sample_unheard(m, users, negatives, np.random.default_rng([seed, 1]))
    # Each row: the user's test items then the negatives, sorted by item index so that ties in
    # score are broken the same way as in full ranking (lower index first).
    test_items = test[users]
    pos = np.split(test_items.indices, test_items.indptr[1:-1])
    widths = {len(p) for p in pos}
    if len(widths) > 1:
        raise AssertionError("sampled split holds out exactly one item per user")
    full = np.hstack([np.asarray(pos, dtype=np.int64).reshape(len(users), -1), candidates])
    full.sort(axis=1)
    return Split(train, test, "sampled", params, candidates=full)


def cold_items_split(
    interactions: Interactions,
    test_fraction: float = 0.1,
    min_listeners: int = 5,
    seed: int = 0,
) -> Split:
    """Cold-start: ``round(test_fraction * eligible)`` of the items with at least
    ``min_listeners`` listeners, drawn with ``seed``, leave training entirely (their pairs,
    last-listened times and events); every listener of one is a test user, who ranks only the
    cold items (``candidates``: the same sorted list for every test user).

    Tag assignments stay in training, those on cold items too: they are what a content model
    knows of a cold item. A user's OWN assignments reveal what that user listened to, so every
    model that reads tags leaves them out of that user's scores (``features.TagProfiles``);
    they are not dropped here because they inform other users' scores legitimately.
    """
    check_fraction(test_fraction)
    if min_listeners < 1:
        raise UsageError(f"min_listeners must be at least 1; got {min_listeners}")
    m = interactions.user_items
    listeners = np.bincount(m.indices, minlength=m.shape[1])
    eligible = np.flatnonzero(listeners >= min_listeners)
    n_cold = int(round(test_fraction * len(eligible)))
    if n_cold < 1:
        raise UsageError(
            f"no cold items: {len(eligible)} items have >= {min_listeners} listeners; lower "
            "min_listeners or raise the test fraction"
        )
    rng = np.random.default_rng([seed, 15])
    cold = np.sort(rng.choice(eligible, n_cold, replace=False))
    is_cold = np.zeros(m.shape[1], bool)
    is_cold[cold] = True
    is_test = is_cold[m.indices]
    train_matrix = select_entries(m, ~is_test)
    params = {
        "test_fraction": test_fraction,
        "min_listeners": min_listeners,
        "seed": seed,
        "cold_items": n_cold,
    }
    last = interactions.last_listened
    train = interactions.with_matrix(
        train_matrix,
        last_listened=None if last is None else last[~is_test],
        events=filter_events(interactions.events, train_matrix),
        split="cold-items",
        split_params=params,
    )
    test = select_entries(m, is_test, binary=True)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    candidates = np.tile(cold.astype(np.int64), (len(users), 1))
    return Split(train, test, "cold-items", params, candidates=candidates)


def _sample_unheard(
    m: sp.csr_matrix, users: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` distinct items per user, uniformly among the items not in the user's row.

    Vectorised rejection sampling: draw with some slack, drop heard items and duplicates,
    redraw only the rows that came up short.
    """
    n_items = m.shape[1]
    out = np.full((len(users), n), -1, np.int64)
    todo = np.arange(len(users))
    heard_keys = pair_keys(row_of_each_entry(m), m.indices, n_items)
    draw = n * 2 + 8
    while len(todo):
        u = users[todo]
        sample = rng.integers(0, n_items, size=(len(todo), draw))
        keys = pair_keys(np.repeat(u, draw), sample.ravel(), n_items)
        pos = np.minimum(np.searchsorted(heard_keys, keys), max(len(heard_keys) - 1, 0))
        heard = (heard_keys[pos] == keys).reshape(sample.shape) if len(heard_keys) else False
        sample = np.where(heard, -1, sample)
        # Drop repeats within a row, keeping first occurrences (order stays random).
        sorted_idx = np.argsort(sample, axis=1, kind="stable")
        s = np.take_along_axis(sample, sorted_idx, axis=1)
        dup = np.zeros_like(s, bool)
        dup[:, 1:] = s[:, 1:] == s[:, :-1]
        invalid = np.empty_like(dup)
        np.put_along_axis(invalid, sorted_idx, dup | (s < 0), axis=1)
        valid_count = (~invalid).sum(axis=1)
        done = valid_count >= n
        for_rows = np.flatnonzero(done)
        if len(for_rows):
            # Take the first n valid draws of each finished row.
            order = np.argsort(invalid[for_rows], axis=1, kind="stable")[:, :n]
            out[todo[for_rows]] = np.take_along_axis(sample[for_rows], order, axis=1)
        todo = todo[~done]
        draw *= 2
    return out


def user_kfold(
    interactions: Interactions,
    folds: int = 5,
    test_fraction: float = 0.2,
    min_items: int = 5,
    seed: int = 0,
) -> list[Split]:
    """User K-fold: each fold's users leave training and are folded in from part of their
    history; ``round(test_fraction * n)`` of their items (drawn with ``seed``) are test.

    Users with fewer than ``min_items`` items always stay in training.
    """
    if folds < 2:
        raise UsageError(f"--folds must be at least 2; got {folds}")
    check_fraction(test_fraction)
    m = interactions.user_items
    rows = row_of_each_entry(m)
    lengths = np.diff(m.indptr)
    eligible = np.flatnonzero(lengths >= min_items)
    if len(eligible) < folds:
        raise UsageError(
            f"only {len(eligible)} users have >= {min_items} items; cannot make {folds} folds"
        )
    rng = np.random.default_rng(seed)
    fold_of = np.full(m.shape[0], -1, np.int64)
    fold_of[rng.permutation(eligible)] = np.arange(len(eligible)) % folds
    rank = rank_within_rows(m, rng.random(m.nnz))
    n_test = holdout_counts(lengths, test_fraction, min_items)
    splits = []
    for fold in range(folds):
        held = fold_of == fold
        is_test = held[rows] & (rank < n_test[rows])
        params = {
            "folds": folds,
            "fold": fold,
            "test_fraction": test_fraction,
            "min_items": min_items,
            "seed": seed,
        }
        train, test = from_test_mask(interactions, is_test, "user-kfold", params, ~held)
        fold_in = select_entries(m, held[rows] & ~is_test)
        splits.append(Split(train, test, "user-kfold", params, fold_in=fold_in))
    return splits


def _heldout_users(
    lengths: np.ndarray, fraction: float, min_items: int, rng: np.random.Generator
) -> np.ndarray:
    """Mask of ``round(fraction * eligible)`` users drawn among those with >= ``min_items``."""
    check_fraction(fraction)
    eligible = np.flatnonzero(lengths >= min_items)
    n_held = int(round(fraction * len(eligible)))
    if n_held < 1:
        raise UsageError(
            f"only {len(eligible)} users have >= {min_items} items: none would be held out"
        )
    held = np.zeros(len(lengths), bool)
    held[rng.choice(eligible, n_held, replace=False)] = True
    return held


def _fold_in_split(
    interactions: Interactions,
    held: np.ndarray,
    is_test: np.ndarray,
    name: str,
    params: dict[str, Any],
) -> Split:
    """Held-out users leave training; their non-test items become the fold-in matrix."""
    m = interactions.user_items
    rows = row_of_each_entry(m)
    train, test = from_test_mask(interactions, is_test, name, params, ~held)
    fold_in = select_entries(m, held[rows] & ~is_test)
    return Split(train, test, name, params, fold_in=fold_in)


def strong_generalization(
    interactions: Interactions,
    heldout_fraction: float = 0.2,
    test_fraction: float = 0.2,
    min_items: int = 5,
    seed: int = 0,
) -> Split:
    """Strong generalisation (Liang et al. 2018): ``heldout_fraction`` of the users with >=
    ``min_items`` items leave training; ``round(test_fraction * n)`` of each one's items
    (drawn with ``seed``) are test, the rest is folded in."""
    check_fraction(test_fraction)
    m = interactions.user_items
    rng = np.random.default_rng(seed)
    lengths = np.diff(m.indptr)
    held = _heldout_users(lengths, heldout_fraction, min_items, rng)
    rows = row_of_each_entry(m)
    rank = rank_within_rows(m, rng.random(m.nnz))
    n_test = np.maximum(holdout_counts(lengths, test_fraction, min_items), 1)
    is_test = held[rows] & (rank < n_test[rows])
    params = {
        "heldout_fraction": heldout_fraction,
        "test_fraction": test_fraction,
        "min_items": min_items,
        "seed": seed,
    }
    return _fold_in_split(interactions, held, is_test, "strong", params)


def short_history_split(
    interactions: Interactions,
    fold_in_k: int = 3,
    heldout_fraction: float = 0.2,
    min_items: int = 20,
    seed: int = 0,
) -> Split:
    """Short histories: held-out users (as in ``strong_generalization``, among users with >=
    ``min_items`` items) are folded in from the first ``fold_in_k`` items of their history in
    a random order drawn with ``seed``; all their other items are test.

    The held-out users and the order depend on ``seed`` only, so the splits for k = 1, 3, 5,
    10 share their users and each fold-in holds the smaller ones.
    """
    if not 1 <= int(fold_in_k) < int(min_items):
        raise UsageError(
            f"fold-in k must be between 1 and min_items - 1 ({int(min_items) - 1}); got {fold_in_k}"
        )
    m = interactions.user_items
    rng = np.random.default_rng(seed)
    held = _heldout_users(np.diff(m.indptr), heldout_fraction, min_items, rng)
    rows = row_of_each_entry(m)
    rank = rank_within_rows(m, rng.random(m.nnz))
    is_test = held[rows] & (rank >= int(fold_in_k))
    params = {
        "fold_in_k": int(fold_in_k),
        "heldout_fraction": heldout_fraction,
        "min_items": min_items,
        "seed": seed,
    }
    return _fold_in_split(interactions, held, is_test, "short", params)


def make_splits(
    interactions: Interactions, name: str = "random", folds: int | None = None, **params: Any
) -> list[Split]:
    """One split by name, or the ``folds`` splits of user K-fold (``name`` random / user-kfold)."""
    if folds is not None or name == "user-kfold":
        if name not in ("random", "user-kfold"):
            raise UsageError(
                f"--folds makes a user K-fold split; it cannot be combined with {name}"
            )
        return user_kfold(interactions, folds=folds or 5, **params)
    return [make_split(interactions, name, **params)]


def make_split(interactions: Interactions, name: str = "random", **params: Any) -> Split:
    """A single split by name: random, temporal, leave-last-out, sampled, strong or short."""
    builders: dict[str, Callable[..., Split]] = {
        "random": random_split,
        "temporal": temporal_split,
        "leave-last-out": leave_last_out,
        "sampled": sampled_split,
        "strong": strong_generalization,
        "short": short_history_split,
        "cold-items": cold_items_split,
    }
    if name not in builders:
        hint = " (use make_splits / --folds)" if name == "user-kfold" else ""
        raise UsageError(f"unknown split {name!r}{hint}; choose one of: {', '.join(SPLITS)}")
    try:
        return builders[name](interactions, **params)
    except TypeError as exc:
        raise UsageError(f"bad parameters for the {name} split: {exc}") from None

"""What every split is built from: ``Split`` (train, test, fold-in, description) and the
matrix operations that hold pairs out leak-free (their times, events and tags with them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastemaker.data.interactions import (
    UNKNOWN_TIME,
    Interactions,
    ListenEvents,
    TagAssignments,
)
from tastemaker.errors import UsageError


@dataclass(frozen=True, eq=False)
class Split:
    """A training ``Interactions`` and the held-out pairs to rank for.

    ``test`` is binary users x items. ``fold_in`` (user K-fold only) holds the visible history
    of held-out users, who have no row in training: they are scored through fold-in.
    ``candidates`` (sampled only) lists, per test user in ``test_users`` order, the items the
    user's test items are ranked against (held-out items included); ``None`` means full
    ranking against every item not in the user's history.
    """

    train: Interactions
    test: sp.csr_matrix
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    fold_in: sp.csr_matrix | None = None
    candidates: np.ndarray | None = None

    @property
    def test_users(self) -> np.ndarray:
        """Indices of the users with at least one test item."""
        return np.flatnonzero(np.diff(self.test.indptr) > 0)

    @property
    def sampled(self) -> bool:
        return self.candidates is not None

    def history(self, users: np.ndarray) -> sp.csr_matrix:
        """What each of ``users`` is known to have heard (masked from their rankings)."""
        source = self.fold_in if self.fold_in is not None else self.train.user_items
        return source[np.asarray(users, dtype=np.int64)]

    @property
    def label(self) -> str:
        """A one-line description for tables and reports."""
        p = self.params
        if self.name == "random":
            text = (
                f"random: {p['test_fraction']:.0%} of each user's items (users with >= "
                f"{p['min_items']}), seed {p['seed']}, full ranking"
            )
        elif self.name == "temporal":
            if p.get("cutoff"):
                how = f"pairs last listened at or after {p['cutoff']}"
            else:
                how = f"each user's latest {p['test_fraction']:.0%} of items by last listen"
            text = f"temporal: {how}, full ranking"
        elif self.name == "leave-last-out":
            text = "leave-last-out: each user's latest item, full ranking"
        elif self.name == "user-kfold":
            text = (
                f"user {p['folds']}-fold (fold {p['fold'] + 1}): held-out users folded in from "
                f"{1 - p['test_fraction']:.0%} of their history, full ranking"
            )
        elif self.name == "sampled":
            text = (
                f"SAMPLED: each held-out item ({p['holdout']}) ranked against {p['negatives']} "
                "random unheard items (NCF protocol; not comparable with full ranking)"
            )
        elif self.name == "strong":
            text = (
                f"strong generalisation: {p['heldout_fraction']:.0%} of users held out, folded "
                f"in from {1 - p['test_fraction']:.0%} of their history, full ranking"
            )
        elif self.name == "short":
            text = (
                f"short histories: {p['heldout_fraction']:.0%} of users held out, folded in from "
                f"their first {p['fold_in_k']} item(s) (seed {p['seed']}), full ranking"
            )
        elif self.name == "cold-items":
            text = (
                f"cold items: {p['test_fraction']:.0%} of the items with >= "
                f"{p['min_listeners']} listeners ({p['cold_items']}) held out entirely, seed "
                f"{p['seed']}; each test user ranks only the cold items"
            )
        else:
            text = self.name
        return f"{text}; {len(self.test_users)} test users, {self.test.nnz} test items"

    def describe(self) -> dict[str, Any]:
        """JSON-ready description of the split."""
        return {
            "name": self.name,
            "params": dict(self.params),
            "label": self.label,
            "full_ranking": not self.sampled,
            "test_users": int(len(self.test_users)),
            "test_items": int(self.test.nnz),
            "train_interactions": int(self.train.nnz),
        }


def row_of_each_entry(matrix: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))


def rank_within_rows(matrix: sp.csr_matrix, keys: np.ndarray) -> np.ndarray:
    """0-based rank of every stored entry within its row, ordered by ``keys`` (ascending)."""
    rows = row_of_each_entry(matrix)
    order = np.lexsort((keys, rows))
    rank = np.empty(matrix.nnz, np.int64)
    rank[order] = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], np.diff(matrix.indptr))
    return rank


def select_entries(matrix: sp.csr_matrix, keep: np.ndarray, binary: bool = False) -> sp.csr_matrix:
    """The stored entries where ``keep`` is true, in CSR order (so aligned arrays stay aligned)."""
    rows = row_of_each_entry(matrix)[keep]
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=matrix.shape[0]), out=indptr[1:])
    data = np.ones(int(keep.sum()), np.float32) if binary else matrix.data[keep]
    return sp.csr_matrix((data, matrix.indices[keep], indptr), shape=matrix.shape)


def pair_keys(rows: np.ndarray, cols: np.ndarray, n_items: int) -> np.ndarray:
    return rows.astype(np.int64) * n_items + cols.astype(np.int64)


def filter_events(events: ListenEvents | None, train: sp.csr_matrix) -> ListenEvents | None:
    """Keep only the listen events of pairs that are in the training matrix."""
    if events is None:
        return None
    train_keys = pair_keys(row_of_each_entry(train), train.indices, train.shape[1])
    event_keys = pair_keys(events.user, events.item, train.shape[1])
    pos = np.searchsorted(train_keys, event_keys)
    pos = np.minimum(pos, max(len(train_keys) - 1, 0))
    keep = (train_keys[pos] == event_keys) if len(train_keys) else np.zeros(len(events), bool)
    return ListenEvents(events.user[keep], events.item[keep], events.timestamp[keep])


def filter_tags(tags: TagAssignments | None, test: sp.csr_matrix) -> TagAssignments | None:
    """Drop the tag assignments a user made on their own held-out items (they would leak)."""
    if tags is None or test.nnz == 0:
        return tags
    test_keys = pair_keys(row_of_each_entry(test), test.indices, test.shape[1])
    tag_keys = pair_keys(np.maximum(tags.user, 0), tags.item, test.shape[1])
    pos = np.minimum(np.searchsorted(test_keys, tag_keys), len(test_keys) - 1)
    leaked = (test_keys[pos] == tag_keys) & (tags.user >= 0)
    if not leaked.any():
        return tags
    keep = ~leaked
    return TagAssignments(tags.user[keep], tags.item[keep], tags.tag[keep], tags.tags)


def from_test_mask(
    interactions: Interactions,
    is_test: np.ndarray,
    name: str,
    params: dict[str, Any],
    train_rows: np.ndarray | None = None,
    drop: np.ndarray | None = None,
) -> tuple[Interactions, sp.csr_matrix]:
    """Training Interactions (entries neither in test nor dropped, and in ``train_rows`` if
    given) + the binary test matrix."""
    m = interactions.user_items
    keep = ~is_test if drop is None else ~is_test & ~drop
    if train_rows is not None:
        keep &= train_rows[row_of_each_entry(m)]
    train_matrix = select_entries(m, keep)
    last = interactions.last_listened[keep] if interactions.last_listened is not None else None
    train = interactions.with_matrix(
        train_matrix,
        last_listened=last,
        events=filter_events(interactions.events, train_matrix),
        split=name,
        split_params=params,
    )
    test = select_entries(m, is_test, binary=True)
    train = dataclasses.replace(train, tags=filter_tags(interactions.tags, test))
    return train, test


def holdout_counts(lengths: np.ndarray, fraction: float, min_items: int) -> np.ndarray:
    return np.where(lengths >= min_items, np.round(fraction * lengths).astype(np.int64), 0)


def check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise UsageError(f"test fraction must be between 0 and 1; got {test_fraction}")


def listen_timestamps(interactions: Interactions, split: str) -> np.ndarray:
    last = interactions.last_listened
    if last is None or not np.any(last != UNKNOWN_TIME):
        raise UsageError(
            f"the {split} split needs listen timestamps, and this data has none "
            f"(source: {interactions.source.get('format', 'unknown')}); use --split random"
        )
    return last

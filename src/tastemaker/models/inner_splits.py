"""The hybrid's inner splits: the training data each one leaves, their seeds, and the rankers
trained on them (``models.hybrid``).

A hybrid with ``inner_splits`` = K carves K inner holdouts from its training matrix, each with
a seed of ``inner_seeds``; each split's generators see ``inner_interactions`` (the training
data less the split's held-out pairs, listens and times included), each split trains a ranker,
and a ``RankerBag`` averages their scores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions
from tastemaker.models.sessions import restrict_events

# Bound on ``inner_splits`` (each costs a round of generator fits and one more ranker).
MAX_INNER_SPLITS = 100


def inner_interactions(interactions: Interactions, matrix: sp.csr_matrix) -> Interactions:
    """``interactions`` restricted to the pairs of ``matrix`` (a sub-matrix of its own):
    last-listened times realigned, events of the removed pairs dropped."""
    m = interactions.user_items
    last = None
    if interactions.last_listened is not None:
        n_items = m.shape[1]
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        keys = rows * n_items + m.indices
        sub = sp.csr_matrix(matrix)
        sub.sort_indices()
        sub_rows = np.repeat(np.arange(sub.shape[0], dtype=np.int64), np.diff(sub.indptr))
        at = np.searchsorted(keys, sub_rows * n_items + sub.indices)
        last = interactions.last_listened[at]
    events = None
    if interactions.events is not None:
        events = restrict_events(interactions.events, matrix)
    return dataclasses.replace(interactions, user_items=matrix, last_listened=last, events=events)


def inner_seeds(seed: int, splits: int) -> list[int]:
    """The seed of each inner split: the hybrid's own seed first (one split is the model the
    hybrid always was), then seeds derived from it and the split's number."""
    seeds = [int(seed)]
    for k in range(1, int(splits)):
        seeds.append(int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, k]).generate_state(1)[0]))
    return seeds


def summed_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    """The inner splits' training statistics summed; candidate recall over all of them."""
    counts = ("users", "held_out_items", "rows", "groups")
    out = {key: sum(s[key] for s in stats) for key in counts}
    reached = sum(s["candidate_recall"] * s["held_out_items"] for s in stats)
    out["candidate_recall"] = reached / out["held_out_items"] if out["held_out_items"] else 0.0
    out["inner_splits"] = float(len(stats))
    return out


def ranker_file(index: int) -> str:
    """The saved text of the ``index``-th inner split's ranker."""
    return "ranker.txt" if index == 0 else f"ranker-{index}.txt"


class RankerBag:
    """The rankers of the inner splits, one each: a candidate's score is the mean of theirs.
    One ranker predicts exactly as a bare LightGBM booster does."""

    def __init__(self, boosters: list[Any]) -> None:
        if not boosters:
            raise ValueError("a RankerBag needs at least one ranker")
        self.boosters = list(boosters)

    def predict(self, x: np.ndarray, num_threads: int = 0) -> np.ndarray:
        if len(self.boosters) == 1:
            return self.boosters[0].predict(x, num_threads=num_threads)
        scores = [b.predict(x, num_threads=num_threads) for b in self.boosters]
        return np.mean(scores, axis=0)

    def feature_importance(self, importance_type: str = "split") -> np.ndarray:
        """Summed over the rankers (shares of the total read the same as for one)."""
        gains = [b.feature_importance(importance_type=importance_type) for b in self.boosters]
        return np.sum(gains, axis=0)

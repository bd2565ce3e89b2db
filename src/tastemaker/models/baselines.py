"""Floors for the cold-start protocol, where popularity says nothing (cold items have no
listeners in training):

- ``random``: a seeded random ranking for each listener;
- ``tag-count``: items by how often they were tagged (assignments plus metadata weights),
  without the listener's own assignments: the content signal's popularity.
"""

from __future__ import annotations

import zlib

import numpy as np
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec
from tastemaker.data.interactions import Interactions
from tastemaker.data.metadata.combined import combined_tags
from tastemaker.errors import UsageError
from tastemaker.models.base import Recommender
from tastemaker.models.features import TagProfiles


class RandomRanking(Recommender):
    """A random ranking per listener: each row's scores are drawn from ``seed`` and a
    checksum of the row's history, so a user and the same history folded in get the same
    ranking, and the figure is a mean over independent rankings (one shared permutation
    would make it hinge on where a few popular items fall)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _fit(self, interactions: Interactions) -> None:
        self.seed_ = np.asarray(self.seed, np.int64)

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        scores = np.empty((history.shape[0], self.n_items_), np.float32)
        for row in range(history.shape[0]):
            lo, hi = history.indptr[row], history.indptr[row + 1]
            key = zlib.crc32(history.indices[lo:hi].astype(np.int64).tobytes())
            rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, key])
            scores[row] = rng.random(self.n_items_, dtype=np.float32)
        return scores

    def _similar(self, items: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, 1])
        return np.tile(rng.random(self.n_items_, dtype=np.float32), (len(items), 1))

    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _state_spec(self) -> dict[str, ArraySpec]:
        return {}


class TagCount(Recommender):
    """Items by log(1 + how often they were tagged); a user's own assignments do not count
    for that user."""

    name = "tag-count"

    def __init__(self) -> None:
        pass

    def _fit(self, interactions: Interactions) -> None:
        assignments, base = combined_tags(interactions)
        if base.nnz == 0 and len(assignments.item) == 0:
            raise UsageError("tag-count needs item tags (--metadata, or HetRec's assignments)")
        profiles = TagProfiles(assignments, interactions.n_users, interactions.n_items, base)
        self.item_counts_ = profiles.item_counts
        self.own_keys_ = profiles.own_keys
        self.own_item_counts_ = profiles.own_item_counts

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        counts = np.tile(self.item_counts_, (history.shape[0], 1))
        if users is not None and len(self.own_keys_):
            users = np.asarray(users, np.int64)
            lo = np.searchsorted(self.own_keys_, users * self.n_items_)
            hi = np.searchsorted(self.own_keys_, (users + 1) * self.n_items_)
            for row, (a, b) in enumerate(zip(lo, hi, strict=True)):
                counts[row, self.own_keys_[a:b] % self.n_items_] = self.own_item_counts_[a:b]
        return np.log1p(counts).astype(np.float32)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.tile(np.log1p(self.item_counts_), (len(items), 1)).astype(np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "item_counts": self.item_counts_,
            "own_keys": self.own_keys_,
            "own_item_counts": self.own_item_counts_,
        }

    def _state_dims(self) -> dict[str, int]:
        return {"cells": self.user_items_.shape[0] * self.n_items_}

    def _state_spec(self) -> dict[str, ArraySpec]:
        return {
            "item_counts": ArraySpec(("items",), low=0),
            "own_keys": ArraySpec(("own",), "int", low=0, high="cells"),
            "own_item_counts": ArraySpec(("own",), low=0),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_counts_ = arrays["item_counts"].astype(np.float32, copy=False)
        self.own_keys_ = arrays["own_keys"].astype(np.int64, copy=False)
        self.own_item_counts_ = arrays["own_item_counts"].astype(np.float32, copy=False)

"""Most-listened items first: the baseline every personalised model must beat."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec
from tastemaker.data.interactions import Interactions
from tastemaker.models.base import Recommender


class Popularity(Recommender):
    """Ranks items by how many users listened to them (not by total plays, which a few heavy
    listeners would dominate)."""

    name = "popularity"
    personalised = False  # the same list for every listener (less what they heard)

    def __init__(self) -> None:
        pass

    def _fit(self, interactions: Interactions) -> None:
        listeners = np.bincount(interactions.user_items.indices, minlength=interactions.n_items)
        self.item_scores_ = (listeners / max(interactions.n_users, 1)).astype(np.float32)

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return np.tile(self.item_scores_, (history.shape[0], 1))

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.tile(self.item_scores_, (len(items), 1))

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores_}

    def _state_spec(self) -> dict[str, ArraySpec]:
        return {"item_scores": ArraySpec(("items",), low=0)}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_scores_ = arrays["item_scores"].astype(np.float32, copy=False)

"""``tags``: a content model. Items are TF-IDF vectors of their tags; a user is the weighted
sum of the vectors of what they played; an item's score is the cosine of the two.

Tags come from every source the data has (``tastemaker.data.metadata.combined_tags``):
metadata weights (MusicBrainz votes, a CSV) and per-user tag assignments (HetRec). A user's
OWN assignments never reach that user's scores: for every (user, item) pair the user tagged,
the item's vector is rebuilt without them (``features.TagProfiles``), both in the profile and
in the candidate, since what a user tagged reveals what they listened to (the cold-start
protocol holds such items out). The IDF is a corpus statistic over all tags; see
``TagProfiles``.

Needs no listens for an item: an item with tags and no listener is scored like any other,
which is what cold items and a live catalogue's new artists need. Items without tags score 0.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec, CSRSpec
from tastemaker.data.interactions import Interactions
from tastemaker.data.metadata.combined import combined_tags
from tastemaker.errors import UsageError
from tastemaker.models.base import Recommender
from tastemaker.models.features import TagProfiles, rowwise_dot
from tastemaker.models.params import one_of

PREFIX = "tag_"


class TagContent(Recommender):
    """Content-based recommendations by tag similarity.

    ``history_weight``: how a play count weighs its item in the profile (``log`` =
    log(1 + plays), ``binary`` = 1 per item).
    """

    name = "tags"
    param_rules = {"history_weight": one_of("log", "binary")}

    def __init__(self, history_weight: str = "log") -> None:
        self.history_weight = history_weight

    def _fit(self, interactions: Interactions) -> None:
        assignments, base = combined_tags(interactions)
        if base.nnz == 0 and len(assignments.item) == 0:
            raise UsageError(
                "the tags model needs item tags: ingest with --metadata, or a source with tag "
                "assignments (HetRec 2K)"
            )
        self.profiles_ = TagProfiles(assignments, interactions.n_users, interactions.n_items, base)
        self.tag_names_ = np.asarray(assignments.tags.to_list(), dtype=str)

    # -- scoring ---------------------------------------------------------------------------
    def _weights(self, history: sp.csr_matrix) -> sp.csr_matrix:
        weighted = sp.csr_matrix(history, dtype=np.float32, copy=True)
        if self.history_weight == "log":
            weighted.data = np.log1p(weighted.data)
        else:
            weighted.data = np.ones_like(weighted.data)
        return weighted

    def _profiles(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        return self.profiles_.profiles(self._weights(history), users)

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        profiles = self._profiles(history, users)
        tags = self.profiles_
        scores = np.asarray(tags.item_vectors @ profiles.T.astype(np.float32)).T
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        if users is not None and len(tags.own_keys):
            # The items each user tagged: their vectors without that user's own tags.
            users = np.asarray(users, np.int64)
            lo = np.searchsorted(tags.own_keys, users * tags.n_items)
            hi = np.searchsorted(tags.own_keys, (users + 1) * tags.n_items)
            row = np.repeat(np.arange(len(users)), hi - lo)
            pair = np.concatenate(
                [np.arange(a, b) for a, b in zip(lo, hi, strict=True)] or [np.empty(0)]
            )
            pair = pair.astype(np.int64)
            if len(pair):
                item = tags.own_keys[pair] % tags.n_items
                scores[row, item] = rowwise_dot(tags.own_vectors, pair, profiles, row)
        return scores

    def _similar(self, items: np.ndarray) -> np.ndarray:
        vectors = self.profiles_.item_vectors
        return np.asarray((vectors[items] @ vectors.T).todense(), dtype=np.float32)

    def shared_tags(self, history: sp.spmatrix, item: int, n: int = 3) -> list[str]:
        """The tags that contribute most to ``item``'s score for one history row (the reason
        to give: "shares tags: shoegaze, dream pop")."""
        self._check_fitted()
        profile = self._profiles(self._check_history(history)[:1], None)[0]
        vector = self.profiles_.item_vectors[int(item)]
        contribution = vector.data * profile[vector.indices]
        order = np.argsort(-contribution, kind="stable")
        return [str(self.tag_names_[vector.indices[k]]) for k in order[:n] if contribution[k] > 0]

    def item_tags(self, item: int, n: int = 5) -> list[str]:
        """The item's heaviest tags by TF-IDF weight."""
        vector = self.profiles_.item_vectors[int(item)]
        order = np.argsort(-vector.data, kind="stable")[:n]
        return [str(self.tag_names_[vector.indices[k]]) for k in order]

    # -- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {**self.profiles_.state(PREFIX), "tag_names": self.tag_names_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.profiles_ = TagProfiles.from_state(arrays, PREFIX)
        self.tag_names_ = arrays["tag_names"].astype(str)

    def _state_dims(self) -> dict[str, int]:
        return {"cells": self.user_items_.shape[0] * self.n_items_}

    def _state_spec(self) -> dict[str, ArraySpec | CSRSpec]:
        return {
            "tag_names": ArraySpec(("tags",), "str"),
            f"{PREFIX}idf": ArraySpec(("tags",), low=0),
            f"{PREFIX}item_counts": ArraySpec(("items",), low=0),
            f"{PREFIX}own_keys": ArraySpec(("own",), "int", low=0, high="cells"),
            f"{PREFIX}own_item_counts": ArraySpec(("own",), low=0),
            f"{PREFIX}item_vectors": CSRSpec.prefixed(
                f"{PREFIX}item_vectors_",
                ("items", "tags"),
                shape_array=f"{PREFIX}item_vectors_shape",
            ),
            f"{PREFIX}own_vectors": CSRSpec.prefixed(
                f"{PREFIX}own_vectors_", ("own", "tags"), shape_array=f"{PREFIX}own_vectors_shape"
            ),
        }

"""Item lookups for the service: ids and names to indices, and as-you-type name search.

The matching itself is ``tastemaker.data.names.NameMatcher`` (the CLI uses the same one), so a
name the page finds is a name ``tastemaker similar --item`` finds, in the same order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tastemaker.data.interactions import Interactions
from tastemaker.data.metadata.combined import combined_tags
from tastemaker.data.names import Hit as SearchHit
from tastemaker.data.names import NameMatcher
from tastemaker.models.features import TagProfiles
from tastemaker.ranking import top_n
from tastemaker.serving.answers import ItemFragments

__all__ = ["Catalogue", "SearchHit"]


class Catalogue:
    """Display names, popularity and lookups of one model's items (built once per load)."""

    def __init__(self, data: Interactions, model: object | None = None) -> None:
        self.matcher: NameMatcher = data.name_matcher
        self.ids = self.matcher.ids
        self.names = self.matcher.names  # items without a name are shown by their id
        self.listeners = self.matcher.listeners
        self.metadata = data.metadata
        # Tag vectors: the content model's own where it is the model (it saw every tag
        # source), else built on first use from the catalogue's metadata.
        self._tag_model: Any = model if hasattr(model, "item_tags") else None
        self._data = data
        self._tag_vectors = None
        # Every answer lists each item's top tags: looked up once per item and load, not per
        # request (the hot path's cost is per-item Python work; docs/serving.md).
        self._top_tags: dict[tuple[int, int], list[str]] = {}
        # Recommendation lists are assembled from each item's JSON, written once (answers).
        self.fragments = ItemFragments(self.ids, self.names, self.listeners, self.top_tags)

    def top_tags(self, index: int, n: int = 3) -> list[str]:
        """The item's heaviest tags (metadata weights, else the content model's), or []."""
        key = (index, n)
        found = self._top_tags.get(key)
        if found is None:
            found = self._top_tags[key] = self._find_top_tags(index, n)
        return found

    def _find_top_tags(self, index: int, n: int) -> list[str]:
        if self.metadata is not None and len(self.metadata.tags):
            tags = self.metadata.top_tags(index, n)
            if tags:
                return tags
        return self._tag_model.item_tags(index, n) if self._tag_model is not None else []

    def has_tags(self) -> bool:
        return self._tag_model is not None or (
            self.metadata is not None and self.metadata.item_tags.nnz > 0
        )

    def similar_by_tags(self, index: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The n items whose tag vectors are closest to the item's (cosine), best first."""
        if self._tag_model is not None:
            vectors = self._tag_model.profiles_.item_vectors
        else:
            if self._tag_vectors is None:
                assignments, base = combined_tags(self._data)
                profiles = TagProfiles(assignments, 0, len(self.ids), base)
                self._tag_vectors = profiles.item_vectors
            vectors = self._tag_vectors
        scores = np.asarray((vectors[index] @ vectors.T).todense(), dtype=np.float32)
        scores[0, index] = -np.inf
        scores[scores <= 0] = -np.inf  # nothing in common: not similar by tags
        ids, values = top_n(scores, n)
        return ids[0], values[0]

    def __len__(self) -> int:
        return len(self.ids)

    def resolve(self, query: str) -> int | None:
        """Index of an item given its source id or its whole name (folded: case, accents,
        punctuation, a leading "The"), else None. Never a guess: a posted history must not
        turn a misspelt entry into some other artist."""
        return self.matcher.exact(query)

    def suggest(self, query: str, limit: int = 3) -> list[str]:
        """Names close to ``query``, for "did you mean" in an unknown-item answer."""
        return [self.names[h.index] for h in self.matcher.search(query, limit)]

    def search(self, text: str, limit: int) -> list[SearchHit]:
        """Best matches for ``text`` as typed so far (``NameMatcher.search``'s ranking: exact,
        name starts with it, a word starts with it, close spelling; popular first within each,
        a far more popular near-exact name ahead of an obscure one). Empty text: most popular."""
        return self.matcher.search(text, limit)

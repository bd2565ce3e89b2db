"""Tags as a way in: the catalogue's tag vocabulary, searchable as you type, and each tag's
artists ranked, built once per loaded model.

Tags come from every source the data has (``combined_tags``: metadata weights and per-user
assignments), the vocabulary ``similar?by=tags`` and the ``tags`` model use. An item's score for
a tag is the cosine of its TF-IDF tag vector with the tag alone (what the ``tags`` model
scores for a history made of that one tag: how central the tag is to the item) times
log(1 + the tag's raw weight on it) (votes, assignments: how strongly it is tagged so), so
that an artist tagged "shoegaze" once, and nothing else, does not outrank one that hundreds
tagged so. Every tag's items are sorted once at build time; a request slices its first n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions
from tastemaker.data.metadata.combined import combined_tags
from tastemaker.data.names import Hit, NameMatcher
from tastemaker.models.features import TagProfiles


@dataclass(frozen=True)
class TagHit:
    """One suggested tag: its name, how many items carry it and how it matched."""

    tag: str
    items: int
    how: str


class TagIndex:
    """The tags of one catalogue: ``search`` (as you type), ``resolve`` and ``top_items``.

    ``vectors``: items x tags, L2-normalised TF-IDF; ``evidence``: items x tags, log(1 + the
    raw weight), on the same cells (or a column of one value per item where only totals are
    known); ``listeners`` break ties.
    """

    def __init__(
        self, tags: list[str], vectors: sp.csr_matrix, evidence: sp.spmatrix, listeners: np.ndarray
    ) -> None:
        self.tags = tags
        scores = sp.csc_matrix(sp.csr_matrix(vectors).multiply(evidence), dtype=np.float32)
        scores.eliminate_zeros()
        self._order_columns(scores, np.asarray(listeners, np.int64))
        self.item_counts = np.diff(self._indptr)
        # Tags are matched like artist names (case, accents, punctuation: "Post-Rock" finds
        # "post rock"), the most used tag first among equals.
        self._matcher = NameMatcher(self.tags, self.tags, self.item_counts)

    @classmethod
    def from_interactions(cls, data: Interactions) -> TagIndex:
        """From the catalogue's own tags (metadata weights, and per-user assignments where the
        data still has them; a saved model's training data keeps only the metadata)."""
        assignments, base = combined_tags(data)
        n_items, n_tags = data.n_items, len(assignments.tags)
        ok = (assignments.item >= 0) & (assignments.item < n_items)
        counts = sp.csr_matrix(
            (np.ones(int(ok.sum()), np.float32), (assignments.item[ok], assignments.tag[ok])),
            shape=(n_items, n_tags),
        )
        counts = sp.csr_matrix(counts + base, dtype=np.float32)
        counts.sum_duplicates()
        vectors = TagProfiles(assignments, 0, n_items, base).item_vectors
        listeners = data.user_items.getnnz(axis=0)
        return cls(assignments.tags.to_list(), vectors, counts.log1p(), listeners)

    @classmethod
    def from_profiles(
        cls, tags: list[str], profiles: TagProfiles, listeners: np.ndarray
    ) -> TagIndex:
        """From a fitted ``tags`` model's vectors: its per-tag counts are not kept, so the
        evidence is log(1 + the item's total tag weight)."""
        evidence = np.log1p(profiles.item_counts).astype(np.float32)[:, None]
        return cls(tags, profiles.item_vectors, evidence, listeners)

    def _order_columns(self, scores: sp.csc_matrix, listeners: np.ndarray) -> None:
        """Each tag's items best first (ties: more listeners, then the lower index)."""
        column = np.repeat(np.arange(scores.shape[1]), np.diff(scores.indptr))
        items = scores.indices.astype(np.int64)
        order = np.lexsort((items, -listeners[items], -scores.data, column))
        self._indptr = scores.indptr.astype(np.int64)
        self._items = items[order]
        self._scores = scores.data[order]

    def __len__(self) -> int:
        return len(self.tags)

    def search(self, text: str, limit: int) -> list[TagHit]:
        """Tags matching ``text`` as typed so far (``NameMatcher``'s ranking: exact, prefix,
        a word's prefix, close spelling; most used first). Empty text: the most used tags."""
        hits: list[Hit] = self._matcher.search(text, limit)
        return [TagHit(self.tags[h.index], int(self.item_counts[h.index]), h.how) for h in hits]

    def resolve(self, text: str) -> int | None:
        """The tag ``text`` names (folded like names), the most used of equals; else None."""
        index = self._matcher.exact(text)
        return index if index is not None and self.item_counts[index] > 0 else None

    def suggest(self, text: str, limit: int = 3) -> list[str]:
        """Close tags, for "did you mean" when ``resolve`` finds none."""
        return [hit.tag for hit in self.search(text, limit) if hit.items > 0]

    def top_items(self, tag: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most strongly tagged ``tag`` and their scores, best first."""
        start = int(self._indptr[tag])
        end = min(int(self._indptr[tag + 1]), start + n)
        return self._items[start:end], self._scores[start:end]

"""Item lookups for the service: ids and names to indices, and as-you-type name search.

The matching itself is ``tastemaker.data.names.NameMatcher`` (the CLI uses the same one), so a
name the page finds is a name ``tastemaker similar --item`` finds, in the same order.
"""

from __future__ import annotations

from tastemaker.data.interactions import Interactions
from tastemaker.data.names import Hit as SearchHit
from tastemaker.data.names import NameMatcher

__all__ = ["Catalogue", "SearchHit"]


class Catalogue:
    """Display names, popularity and lookups of one model's items (built once per load)."""

    def __init__(self, catalogue: Interactions) -> None:
        self.matcher: NameMatcher = catalogue.name_matcher
        self.ids = self.matcher.ids
        self.names = self.matcher.names  # items without a name are shown by their id
        self.listeners = self.matcher.listeners

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

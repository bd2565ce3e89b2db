"""Item lookups for the service: ids and names to indices, and as-you-type name search."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process

from tastemaker.data.interactions import Interactions

# Highest code point: ``prefix + _MAX`` sorts after every string that starts with ``prefix``.
_MAX = "\U0010ffff"
FUZZY_CUTOFF = 70.0


@dataclass(frozen=True)
class SearchHit:
    index: int
    score: float  # 0..100, how well the name matches
    how: str  # "id", "name", "prefix", "word" or "fuzzy"


class Catalogue:
    """Display names, popularity and lookups of one model's items (built once per load)."""

    def __init__(self, catalogue: Interactions) -> None:
        self.ids: list[str] = catalogue.items.to_list()
        self._id_index = {item: i for i, item in enumerate(self.ids)}
        raw_names = catalogue.item_metadata["name"].to_list()
        # Items without a name are shown (and found) by their id.
        self.names: list[str] = [
            name if name else item for name, item in zip(raw_names, self.ids, strict=True)
        ]
        self.listeners = np.bincount(catalogue.user_items.indices, minlength=len(self.ids))
        folded = [name.casefold() for name in self.names]
        self._folded = folded
        # Several items may share a name: the most listened-to one is the one people mean.
        by_popularity = np.argsort(-self.listeners, kind="stable")
        self._name_index: dict[str, int] = {}
        for i in by_popularity.tolist():
            self._name_index.setdefault(folded[i].strip(), i)
        # Prefix search over every word start ("beat" finds "The Beatles"): sorted suffixes.
        keys: list[tuple[str, int, int]] = []
        for i, name in enumerate(folded):
            start = 0
            for word_no, word in enumerate(name.split()):
                start = name.index(word, start)
                keys.append((name[start:], i, word_no))
                start += len(word)
        keys.sort()
        self._prefix_keys = [k[0] for k in keys]
        self._prefix_items = np.asarray([k[1] for k in keys], dtype=np.int64)
        self._prefix_word = np.asarray([k[2] for k in keys], dtype=np.int64)
        self._popular = by_popularity

    def __len__(self) -> int:
        return len(self.ids)

    def resolve(self, query: str) -> int | None:
        """Index of an item given its source id or its name (case-insensitive), else None."""
        index = self._id_index.get(query)
        if index is not None:
            return index
        return self._name_index.get(query.strip().casefold())

    def search(self, text: str, limit: int) -> list[SearchHit]:
        """Best matches for ``text``: exact id or name, then names or words starting with it
        (most listened-to first), then close spellings (rapidfuzz). Empty text: most popular."""
        query = text.strip().casefold()
        if not query:
            return [SearchHit(int(i), 0.0, "popular") for i in self._popular[:limit]]
        hits: dict[int, SearchHit] = {}
        exact = self._id_index.get(text.strip())
        if exact is not None:
            hits[exact] = SearchHit(exact, 100.0, "id")
        named = self._name_index.get(query)
        if named is not None and named not in hits:
            hits[named] = SearchHit(named, 100.0, "name")
        if len(hits) < limit:
            lo = bisect.bisect_left(self._prefix_keys, query)
            hi = bisect.bisect_left(self._prefix_keys, query + _MAX)
            items = self._prefix_items[lo:hi]
            whole = self._prefix_word[lo:hi] == 0
            # Whole-name prefixes before word prefixes, each most listened-to first.
            key = whole * (int(self.listeners.max()) + 1) + self.listeners[items]
            take = min(len(items), 2 * limit + len(hits))
            best = np.argpartition(-key, take - 1)[:take] if take < len(items) else np.arange(take)
            best = best[np.lexsort((items[best], -key[best]))]
            for pos in best.tolist():
                i = int(items[pos])
                if i not in hits:
                    score = 100.0 * len(query) / max(len(self._folded[i]), 1)
                    hits[i] = SearchHit(i, round(score, 1), "prefix" if whole[pos] else "word")
                    if len(hits) >= limit:
                        break
        if len(hits) < limit:
            matches = process.extract(
                query,
                self._folded,
                scorer=fuzz.WRatio,
                limit=limit * 2,
                score_cutoff=FUZZY_CUTOFF,
            )
            matches.sort(key=lambda m: (-m[1], -int(self.listeners[m[2]])))
            for _, score, i in matches:
                if i not in hits:
                    hits[i] = SearchHit(int(i), round(float(score), 1), "fuzzy")
                    if len(hits) >= limit:
                        break
        return list(hits.values())[:limit]

"""How much of a catalogue its metadata covers: the figures ``inspect`` prints."""

from __future__ import annotations

from typing import Any

import numpy as np

from tastemaker.data.interactions import Interactions


def tagged_items(interactions: Interactions) -> np.ndarray:
    """Boolean per item: tagged by a metadata source or by a user's tag assignment."""
    tagged = np.zeros(interactions.n_items, bool)
    if interactions.metadata is not None:
        tagged |= interactions.metadata.tagged_items()
    if interactions.tags is not None and len(interactions.tags.item):
        tagged[interactions.tags.item] = True
    return tagged


def has_item_tags(interactions: Interactions) -> bool:
    """Whether any item has a tag (from metadata or from a user's assignment)."""
    meta, tags = interactions.metadata, interactions.tags
    return bool((meta is not None and meta.item_tags.nnz) or (tags is not None and len(tags.item)))


def coverage(interactions: Interactions) -> dict[str, Any] | None:
    """Share of items and of listens with tags, and the facts known; None without metadata."""
    if interactions.metadata is None and interactions.tags is None:
        return None
    tagged = tagged_items(interactions)
    m = interactions.user_items
    item_listens = np.bincount(m.indices, weights=m.data.astype(np.float64), minlength=m.shape[1])
    total = float(item_listens.sum())
    report: dict[str, Any] = {
        "items_with_tags": int(tagged.sum()),
        "item_share": float(tagged.mean()) if len(tagged) else 0.0,
        "listen_share": float(item_listens[tagged].sum() / total) if total else 0.0,
    }
    meta = interactions.metadata
    if meta is not None:
        report["tags"] = len(meta.tags)
        report["genres"] = int(meta.genre.sum())
        for column in ("year", "country"):
            report[f"items_with_{column}"] = int(meta.facts[column].is_not_null().sum())
        report["sources"] = interactions.source.get("metadata", [])
    return report

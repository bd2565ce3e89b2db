"""Recommendation lists assembled from bytes: each item's JSON written once, not per request.

A list answer is ``{"model", "items": [{"item", "name", "score", "reason", "listeners",
"tags"}, ...], "user", "unmatched"}`` (``schemas.Recommendations``). Of an item's fields only
the score and the reason change between requests, so the rest (its id, name, listeners and top
tags, escaped as JSON) is written the first time the item is recommended and kept for the
model's lifetime; a request then joins those fragments around its scores (one orjson call for
all of them) and its reasons (``"because you listened to X"``, kept per X likewise). Building a
dict per item and serialising the whole list cost about as much as the ANN search
(docs/serving.md). The bytes are identical to ``orjson.dumps`` of the same dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import orjson

_REASON = b',"reason":'
_NULL = b"null"
_POPULAR = orjson.dumps("popular with listeners")


class ItemFragments:
    """Per item: the JSON before its score and after its reason (filled on first use; at most
    one entry per catalogue item, so bounded by the catalogue)."""

    def __init__(
        self,
        ids: Sequence[str],
        names: Sequence[str],
        listeners: np.ndarray,
        top_tags: Callable[[int], list[str]],
    ) -> None:
        self._ids, self._names, self._listeners, self._top_tags = ids, names, listeners, top_tags
        self._items: dict[int, tuple[bytes, bytes]] = {}
        self._because: dict[int, bytes] = {}

    def item(self, index: int) -> tuple[bytes, bytes]:
        found = self._items.get(index)
        if found is None:
            head = orjson.dumps({"item": self._ids[index], "name": self._names[index]})
            tail = orjson.dumps(
                {"listeners": int(self._listeners[index]), "tags": self._top_tags(index)}
            )
            # '{"item":..,"name":..' + ',"score":' ... reason ... ',"listeners":..,"tags":..}'
            found = self._items[index] = (head[:-1] + b',"score":', b"," + tail[1:])
        return found

    def because(self, source: int) -> bytes:
        found = self._because.get(source)
        if found is None:
            found = self._because[source] = orjson.dumps(
                f"because you listened to {self._names[source]}"
            )
        return found


def recommendation_list(
    fragments: ItemFragments,
    ids: np.ndarray,
    scores: np.ndarray,
    sources: Sequence[int | None],
    popular: bool,
) -> bytes:
    """The JSON array of items: ``sources`` the history item behind each (None: no reason, or
    "popular with listeners" where ``popular``). Scores must be finite."""
    if len(ids) == 0:
        return b"[]"
    score_text = orjson.dumps(scores.tolist())[1:-1].split(b",")
    parts = []
    no_reason = _POPULAR if popular else _NULL
    for index, score, source in zip(ids.tolist(), score_text, sources, strict=True):
        head, tail = fragments.item(index)
        reason = no_reason if source is None else fragments.because(source)
        parts.append(b"".join((head, score, _REASON, reason, tail)))
    return b"[" + b",".join(parts) + b"]"


def recommendations_body(model: str, items: bytes, user: str | None, unmatched: list[str]) -> bytes:
    """The whole answer around an ``items`` array from ``recommendation_list``."""
    return b"".join(
        (
            b'{"model":',
            orjson.dumps(model),
            b',"items":',
            items,
            b',"user":',
            orjson.dumps(user),
            b',"unmatched":',
            orjson.dumps(unmatched),
            b"}",
        )
    )

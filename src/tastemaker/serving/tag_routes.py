"""Tag routes: ``GET /v1/tags?q=`` (tags as you type) and ``GET /v1/tags/{tag}/items`` (the
artists most strongly tagged so: where the page starts from a tag such as "shoegaze").

Each loaded model gets one ``TagIndex``, built on the first tag request (under a lock:
requests arrive on many threads) and dropped with the model.
"""

from __future__ import annotations

import threading
import weakref
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from tastemaker.serving.catalogue import Catalogue
from tastemaker.serving.routes import NOT_FOUND, Bundle, N
from tastemaker.serving.schemas import ItemList
from tastemaker.serving.state import LoadedModel
from tastemaker.serving.tag_index import TagIndex

tag_router = APIRouter(tags=["tags"])
MAX_SUGGESTIONS = 100
NO_TAGS = "this model's data has no item tags (see docs/metadata.md)"
TAG_REASONS = {
    "id": "exact tag",
    "name": "exact tag",
    "prefix": "tag starts with it",
    "word": "a word starts with it",
    "fuzzy": "similar spelling",
    "popular": "most used",
}

_indexes: weakref.WeakKeyDictionary[Catalogue, TagIndex] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class Tag(BaseModel):
    tag: str
    items: int = Field(description="How many items carry the tag.")
    reason: str | None = Field(None, description='How it matched, e.g. "tag starts with it".')


class TagSuggestions(BaseModel):
    model: str
    query: str
    tags: list[Tag]


class TaggedItems(ItemList):
    tag: Tag


def _answer(payload: dict) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def _item(bundle: LoadedModel, index: int, score: float, reason: str) -> dict:
    """One ``schemas.Item`` as the dict orjson writes (the shape of routes' answers)."""
    cat = bundle.catalogue
    return {
        "item": cat.ids[index],
        "name": cat.names[index],
        "score": float(score),
        "reason": reason,
        "listeners": int(cat.listeners[index]),
        "tags": cat.top_tags(index),
    }


def tag_index(bundle: LoadedModel) -> TagIndex:
    """The bundle's ``TagIndex``; 404 where its data has no tags."""
    with _lock:
        index = _indexes.get(bundle.catalogue)
        if index is None:
            index = _indexes[bundle.catalogue] = _build(bundle)
    if not len(index) or not index.item_counts.any():
        raise HTTPException(404, NO_TAGS)
    return index


def _build(bundle: LoadedModel) -> TagIndex:
    # The catalogue's metadata weights where it has them, else a ``tags`` model's own vectors
    # (a saved model's catalogue keeps per-user assignments only as top counts per item).
    data = bundle.model.interactions_
    model: Any = bundle.model  # duck-typed: a ``tags`` model where it has item_tags
    metadata = data.metadata
    if (metadata is None or metadata.item_tags.nnz == 0) and hasattr(model, "item_tags"):
        tags = [str(t) for t in model.tag_names_]
        return TagIndex.from_profiles(tags, model.profiles_, bundle.catalogue.listeners)
    return TagIndex.from_interactions(data)


@tag_router.get("/v1/tags", response_model=TagSuggestions, responses=NOT_FOUND)
def search_tags(
    bundle: Bundle,
    q: Annotated[str, Query(max_length=200, description="A tag as typed; empty: most used.")] = "",
    n: Annotated[int, Query(ge=1, le=MAX_SUGGESTIONS, description="How many tags.")] = 10,
) -> Response:
    """Tags as you type: exact, prefix (of the tag or a word of it), then close spellings,
    the most used first within each; 404 where the data has no tags."""
    hits = tag_index(bundle).search(q, n)
    tags = [{"tag": h.tag, "items": h.items, "reason": TAG_REASONS[h.how]} for h in hits]
    return _answer({"model": bundle.name, "query": q, "tags": tags})


@tag_router.get("/v1/tags/{tag:path}/items", response_model=TaggedItems, responses=NOT_FOUND)
def tagged_items(
    tag: Annotated[str, Path(min_length=1, max_length=200)], bundle: Bundle, n: N = 10
) -> Response:
    """The n items most strongly tagged ``tag`` (any case; cosine of the item's tag vector
    with the tag, times log(1 + its weight); see docs/serving.md); 404 for an unknown tag."""
    index = tag_index(bundle)
    found = index.resolve(tag)
    if found is None:
        close = index.suggest(tag)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise HTTPException(404, f"no item is tagged {tag!r}{hint}")
    name = index.tags[found]
    ids, scores = index.top_items(found, n)
    reason = f"tagged {name}"
    items = [
        _item(bundle, i, s, reason) for i, s in zip(ids.tolist(), scores.tolist(), strict=True)
    ]
    described = {"tag": name, "items": int(index.item_counts[found]), "reason": None}
    return _answer({"model": bundle.name, "items": items, "tag": described})

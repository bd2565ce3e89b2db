"""Request and response bodies of the HTTP API (pydantic): the OpenAPI spec comes from these."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_N = 1000
# Limits of a posted history's entries (routes.plain_history checks the same).
MAX_ITEM_TEXT = 500
MAX_COUNT = 1e9


class Item(BaseModel):
    """One item in any list the API returns."""

    item: str = Field(description="The source's own item id.")
    name: str
    score: float = Field(description="Model score (recommendations), similarity or match score.")
    reason: str | None = Field(None, description='E.g. "because you listened to Radiohead".')
    listeners: int = Field(description="Training users who listened to the item.")
    tags: list[str] = Field(
        default_factory=list, description="The item's top tags, where the data has them."
    )


class ItemList(BaseModel):
    model: str
    items: list[Item]


class Recommendations(ItemList):
    user: str | None = Field(description="The user id; null for a posted history.")
    unmatched: list[str] = Field(
        default_factory=list, description="History entries naming no known item (ignored)."
    )


class SimilarItems(ItemList):
    item: Item


class SearchResults(ItemList):
    query: str


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item: str = Field(
        min_length=1, max_length=MAX_ITEM_TEXT, description="Item id or name (any case)."
    )
    count: float = Field(1.0, gt=0, le=MAX_COUNT, allow_inf_nan=False, description="Play count.")


class HistoryRequest(BaseModel):
    """A listening history not seen in training; recommendations come from fold-in."""

    model_config = ConfigDict(extra="forbid")

    history: list[HistoryEntry] = Field(
        min_length=1, description="At most 10,000 entries (more answers 413)."
    )
    exclude_heard: bool = True


class Contribution(BaseModel):
    item: str
    name: str
    weight: float


class Explanation(BaseModel):
    user: str
    model: str
    item: Item
    because: list[Contribution] = Field(
        description="The history items that contribute most to the item's score, largest first."
    )
    reason: str | None


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_dir: str = Field(min_length=1, max_length=4096)


class ModelInfo(BaseModel):
    model: str
    version: str = Field(description="First 12 hex digits of the manifest's SHA-256.")
    data_fingerprint: str | None
    params: dict
    users: int
    items: int
    loaded_at: str
    load_seconds: float
    retrieval: dict


class Health(BaseModel):
    status: str
    model: ModelInfo


class ReloadResult(BaseModel):
    reloaded: bool
    previous_version: str | None
    model: ModelInfo


class ErrorBody(BaseModel):
    detail: str

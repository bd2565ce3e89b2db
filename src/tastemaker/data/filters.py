"""Filters that shape the data before models see it; each reports what it removed.

* date range (``start`` inclusive, ``end`` exclusive, UTC): listens outside are dropped, and
  so are rows without a timestamp when a range is set;
* implausible activity (``max_listens_per_day``): a user with more listens than that on any
  one UTC day is dropped entirely. About 500 a day is continuous 3-minute tracks for 24
  hours, so a limit of 1,000 only catches scripts and bots (and bulk imports that stamp
  many listens with one time);
* k-core (``min_user_items``, ``min_item_users``): users with fewer distinct items and items
  with fewer distinct users are removed, repeatedly, until every remaining user and item
  meets both minimums (removing an item can push a user below the minimum, and so on).

The first two act per listen, on a ``ListenTable`` (``filter_table``) or, where an
``Interactions`` kept its events, on those (``apply_filters``). The k-core acts on the
(user, item) matrix (``apply_k_core``). Users and items left without any interaction
disappear from the vocabularies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from tastemaker.data.interactions import (
    UNKNOWN_TIME,
    Interactions,
    ListenEvents,
    TagAssignments,
    Vocabulary,
)
from tastemaker.data.pairs import ListenTable, interactions_from_table
from tastemaker.errors import UsageError

DAY = 86_400


@dataclass(frozen=True)
class Filters:
    """Filter settings; the defaults keep everything."""

    min_user_items: int = 1
    min_item_users: int = 1
    start: datetime | None = None
    end: datetime | None = None
    max_listens_per_day: int | None = None

    def __post_init__(self) -> None:
        if self.min_user_items < 1 or self.min_item_users < 1:
            raise UsageError("the k-core minimums must be at least 1")
        if self.max_listens_per_day is not None and self.max_listens_per_day < 1:
            raise UsageError("the listens-per-day limit must be at least 1")
        if self.start and self.end and _epoch(self.start) >= _epoch(self.end):
            raise UsageError(f"the date range is empty ({self.start} to {self.end})")

    @property
    def per_listen(self) -> bool:
        return self.start is not None or self.end is not None or bool(self.max_listens_per_day)

    @property
    def k_core(self) -> bool:
        return self.min_user_items > 1 or self.min_item_users > 1

    def describe(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, datetime) else v) for k, v in vars(self).items()}


@dataclass
class FilterStep:
    """What one filter removed."""

    name: str
    setting: str
    listens: int = 0
    users: int = 0
    items: int = 0
    interactions: int | None = None

    def line(self) -> str:
        parts = [f"{self.listens:,} listens", f"{self.users:,} users", f"{self.items:,} items"]
        if self.interactions is not None:
            parts.append(f"{self.interactions:,} interactions")
        return f"{self.name} ({self.setting}): removed " + ", ".join(parts)


@dataclass
class FilterReport:
    steps: list[FilterStep] = field(default_factory=list)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(step) for step in self.steps]


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


# -- per listen -----------------------------------------------------------------------------


def _counts(table: ListenTable, rows: np.ndarray) -> int:
    return int(rows.sum()) if table.count is None else int(table.count[rows].sum())


def _step(name: str, setting: str, table: ListenTable, keep: np.ndarray) -> FilterStep:
    kept_users = np.unique(table.user[keep]).size
    kept_items = np.unique(table.item[keep]).size
    return FilterStep(
        name,
        setting,
        listens=_counts(table, ~keep),
        users=len(table.users) - kept_users,
        items=len(table.items) - kept_items,
    )


def date_mask(time: np.ndarray, start: datetime | None, end: datetime | None) -> np.ndarray:
    """Rows with a known time in [start, end)."""
    keep = time != UNKNOWN_TIME
    if start is not None:
        keep &= time >= _epoch(start)
    if end is not None:
        keep &= time < _epoch(end)
    return keep


def busy_users(
    user: np.ndarray, time: np.ndarray, count: np.ndarray | None, limit: int
) -> np.ndarray:
    """Indices of users with more than ``limit`` listens on some UTC day."""
    known = time != UNKNOWN_TIME
    frame = pl.DataFrame(
        {
            "user": user[known],
            "day": time[known] // DAY,
            "n": np.ones(int(known.sum()), np.int64) if count is None else count[known],
        }
    )
    per_day = frame.group_by("user", "day").agg(pl.col("n").sum())
    return per_day.filter(pl.col("n") > limit).get_column("user").unique().sort().to_numpy()


def filter_table(table: ListenTable, filters: Filters) -> tuple[ListenTable, list[FilterStep]]:
    """Apply the per-listen filters (date range, then bots) to a ``ListenTable``."""
    steps = []
    if filters.start is not None or filters.end is not None:
        if table.time is None:
            raise UsageError("a date range needs timestamps, and this source has none")
        keep = date_mask(table.time, filters.start, filters.end)
        setting = f"{filters.start or '…'} to {filters.end or '…'}"
        steps.append(_step("date range", setting, table, keep))
        if not keep.all():
            table = table.subset(keep)
    if filters.max_listens_per_day:
        if table.time is None:
            raise UsageError("the listens-per-day limit needs timestamps; this source has none")
        bots = busy_users(table.user, table.time, table.count, filters.max_listens_per_day)
        keep = ~np.isin(table.user, bots)
        step = _step("bots", f"> {filters.max_listens_per_day:,} listens a day", table, keep)
        steps.append(step)
        if len(bots):
            table = table.subset(keep)
    return table, steps


# -- on Interactions ------------------------------------------------------------------------


def k_core(
    matrix: sp.csr_matrix, min_user_items: int, min_item_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the users and items in the (min_user_items, min_item_users)-core."""
    binary = sp.csr_matrix(
        (np.ones(matrix.nnz, dtype=np.int64), matrix.indices, matrix.indptr), shape=matrix.shape
    )
    users = np.ones(matrix.shape[0], dtype=bool)
    items = np.ones(matrix.shape[1], dtype=bool)
    transposed = binary.T.tocsr()
    while True:
        user_degree = binary @ items.astype(np.int64)
        new_users = users & (user_degree >= min_user_items)
        item_degree = transposed @ new_users.astype(np.int64)
        new_items = items & (item_degree >= min_item_users)
        if np.array_equal(new_users, users) and np.array_equal(new_items, items):
            return users, items
        users, items = new_users, new_items


def subset_interactions(
    interactions: Interactions, users: np.ndarray, items: np.ndarray, **source: Any
) -> Interactions:
    """Only the given users and items (boolean masks); everything stays aligned."""
    user_index, item_index = np.flatnonzero(users), np.flatnonzero(items)
    m = interactions.user_items
    # Positions ride along as data (offset by one so none is zero) to realign last_listened.
    positions = sp.csr_matrix(
        (np.arange(1, m.nnz + 1, dtype=np.int64), m.indices, m.indptr), shape=m.shape
    )
    positions = positions[user_index][:, item_index].tocsr()
    positions.sort_indices()
    taken = positions.data - 1
    matrix = sp.csr_matrix(
        (m.data[taken], positions.indices, positions.indptr), shape=positions.shape
    )
    last = None if interactions.last_listened is None else interactions.last_listened[taken]
    user_map = np.cumsum(users) - 1
    item_map = np.cumsum(items) - 1
    events = None
    if interactions.events is not None:
        ev = interactions.events
        keep = users[ev.user] & items[ev.item]
        events = ListenEvents(
            user_map[ev.user[keep]].astype(np.int32),
            item_map[ev.item[keep]].astype(np.int32),
            ev.timestamp[keep],
        )
    tags = None
    if interactions.tags is not None:
        tg = interactions.tags
        keep = items[tg.item]
        tagger = tg.user[keep]
        known = tagger >= 0
        new_user = np.full(len(tagger), -1, dtype=np.int32)
        new_user[known] = np.where(users[tagger[known]], user_map[tagger[known]], -1)
        tags = TagAssignments(
            new_user, item_map[tg.item[keep]].astype(np.int32), tg.tag[keep], tg.tags
        )
    friends = None
    if interactions.friends is not None:
        friends = sp.csr_matrix(interactions.friends)[user_index][:, user_index].tocsr()
    return Interactions(
        matrix,
        Vocabulary(interactions.users.ids.gather(user_index)),
        Vocabulary(interactions.items.ids.gather(item_index)),
        interactions.item_metadata[item_index],
        level=interactions.level,
        last_listened=last,
        events=events,
        tags=tags,
        source={**interactions.source, **source},
        metadata=None
        if interactions.metadata is None
        else interactions.metadata.subset(item_index),
        friends=friends,
    )


def apply_k_core(
    interactions: Interactions, min_user_items: int, min_item_users: int
) -> tuple[Interactions, FilterStep]:
    """The k-core of ``interactions`` and what it removed."""
    result, step, _, _ = k_core_subset(interactions, min_user_items, min_item_users)
    return result, step


def k_core_subset(
    interactions: Interactions, min_user_items: int, min_item_users: int
) -> tuple[Interactions, FilterStep, np.ndarray, np.ndarray]:
    """``apply_k_core``, also giving the masks of the users and items kept (the spilled
    ingest filters the events it streams with them)."""
    users, items = k_core(interactions.user_items, min_user_items, min_item_users)
    step = FilterStep(
        "k-core",
        f"users >= {min_user_items} items, items >= {min_item_users} users",
        users=int((~users).sum()),
        items=int((~items).sum()),
    )
    if users.all() and items.all():
        step.interactions = 0
        return interactions, step, users, items
    result = subset_interactions(interactions, users, items)
    step.interactions = interactions.nnz - result.nnz
    step.listens = int(round(interactions.user_items.sum() - result.user_items.sum()))
    return result, step, users, items


def apply_filters(
    interactions: Interactions, filters: Filters
) -> tuple[Interactions, FilterReport]:
    """All filters on an ``Interactions``; the per-listen ones need its events, and counts
    that are single listens (re-ingest with the filters otherwise)."""
    report = FilterReport()
    if filters.per_listen:
        events = interactions.events
        if events is None or len(events) != int(round(interactions.user_items.sum())):
            raise UsageError(
                "date and listens-per-day filters need every listen with its time; "
                "pass them to `tastemaker ingest` instead"
            )
        interactions, steps = _filter_events(interactions, filters)
        report.steps += steps
    if filters.k_core:
        interactions, step = apply_k_core(
            interactions, filters.min_user_items, filters.min_item_users
        )
        report.steps.append(step)
    return interactions, report


def _filter_events(
    interactions: Interactions, filters: Filters
) -> tuple[Interactions, list[FilterStep]]:
    """Per-listen filters through the events: rebuild counts and last times from the kept."""
    ev = interactions.events
    assert ev is not None  # apply_filters checked
    table = ListenTable(
        user=ev.user,
        item=ev.item,
        time=ev.timestamp,
        count=None,
        users=interactions.users,
        items=interactions.items,
        item_metadata=interactions.item_metadata,
        level=interactions.level,
    )
    table, steps = filter_table(table, filters)
    rebuilt = interactions_from_table(table, keep_events=True, source=interactions.source)
    if interactions.tags is not None or interactions.friends is not None:
        kept_users = np.isin(interactions.users.ids.to_numpy(), rebuilt.users.ids.to_numpy())
        kept_items = np.isin(interactions.items.ids.to_numpy(), rebuilt.items.ids.to_numpy())
        subset = subset_interactions(interactions, kept_users, kept_items)
        rebuilt = dataclasses.replace(rebuilt, tags=subset.tags, friends=subset.friends)
    for step in steps:
        step.interactions = None
    return rebuilt, steps

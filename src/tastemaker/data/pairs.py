"""``ListenTable`` (listens as integer codes) and its reduction to ``Interactions``: packed
(user, item) keys sorted once, play counts and last-listened times per pair, and the
time-ordered per-listen events. Nothing here touches a string; the encoding of the canonical
listens into a ``ListenTable`` is ``tastemaker.data.listens``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from tastemaker.data.interactions import (
    UNKNOWN_TIME,
    Interactions,
    ListenEvents,
    Vocabulary,
)

# Rows handled at a time where whole-table index arrays would cost a row-sized buffer.
CHUNK_ROWS = 1 << 22


def _compact(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The values ``codes`` uses (ascending) and ``codes`` renumbered into them."""
    used = np.bincount(codes, minlength=size) > 0
    remap = (np.cumsum(used) - 1).astype(np.int32)
    return np.flatnonzero(used), remap[codes]


@dataclass
class ListenTable:
    """Canonical rows in index space: the step between raw listens and ``Interactions``.

    One entry per canonical row: ``user`` / ``item`` int32 indices into ``users`` / ``items``;
    ``time`` epoch seconds (``UNKNOWN_TIME`` where unknown, ``None`` when no row has one);
    ``count`` plays per row (``None`` when every row is a single listen). Filters that act
    per listen (date range, bots) work here, before the reduction to (user, item) pairs.
    """

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray | None
    count: np.ndarray | None
    users: Vocabulary
    items: Vocabulary
    item_metadata: pl.DataFrame
    level: str
    rows_without_item: int = 0
    # What the identity rule did (tastemaker.data.identity.summarize), None if not applied.
    identity: dict | None = None

    def __len__(self) -> int:
        return len(self.user)

    @property
    def listens(self) -> int:
        """Plays represented (the sum of counts)."""
        if self.count is None:
            return len(self.user)
        return int(self.count.sum(dtype=np.int64))

    def subset(self, keep: np.ndarray) -> ListenTable:
        """Only the rows where ``keep`` is true; users and items left with no row vanish."""
        user_ids, user = _compact(self.user[keep], len(self.users))
        item_ids, item = _compact(self.item[keep], len(self.items))
        return ListenTable(
            user=user,
            item=item,
            time=None if self.time is None else self.time[keep],
            count=None if self.count is None else self.count[keep],
            users=Vocabulary(self.users.ids.gather(user_ids)),
            items=Vocabulary(self.items.ids.gather(item_ids)),
            item_metadata=self.item_metadata[item_ids],
            level=self.level,
            rows_without_item=self.rows_without_item,
            identity=self.identity,
        )


def _bits(size: int) -> int:
    return max(size - 1, 1).bit_length()


def reduce_pairs(table: ListenTable) -> pl.DataFrame:
    """Rows reduced to (user, item) pairs in (user, item) order: count and last time."""
    user_bits, item_bits = _bits(len(table.users)), _bits(len(table.items))
    packed = _pairs_packed(table, user_bits, item_bits)
    if packed is not None:
        return packed
    aggregates = [pl.len().alias("count") if table.count is None else pl.col("count").sum()]
    columns: dict[str, np.ndarray] = {}
    if table.count is not None:
        columns["count"] = table.count
    if table.time is not None:
        columns["time"] = table.time
        aggregates.append(pl.col("time").max())
    if user_bits + item_bits > 63:  # no packed key: group by both columns
        frame = pl.DataFrame({"user": table.user, "item": table.item, **columns})
        return frame.group_by("user", "item").agg(aggregates).sort("user", "item")
    key = table.user.astype(np.int64)
    key <<= item_bits
    key |= table.item
    pairs = (
        pl.DataFrame({"key": key, **columns})
        .sort("key")
        .group_by("key", maintain_order=True)
        .agg(aggregates)
    )
    key = pairs.drop_in_place("key").to_numpy()
    return pairs.with_columns(
        user=pl.Series(key >> item_bits, dtype=pl.Int64),
        item=pl.Series(key & ((1 << item_bits) - 1), dtype=pl.Int64),
    )


def _packed_keys(fields: list[tuple[np.ndarray, int, int]], n: int) -> np.ndarray:
    """One uint64 per row: every ``(values, offset, shift)`` field as ``(values - offset) <<
    shift``, OR-ed together. Built in chunks, so temporaries stay chunk-sized."""
    key = np.empty(n, dtype=np.uint64)
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, n)
        part = np.zeros(hi - lo, dtype=np.uint64)
        for values, offset, shift in fields:
            chunk = values[lo:hi] - offset if offset else values[lo:hi]
            part |= chunk.astype(np.uint64) << np.uint64(shift)
        key[lo:hi] = part
    return key


def _sorted(key: np.ndarray) -> np.ndarray:
    """``key`` in ascending order, as a new read-only array.

    polars sorts integer keys about 3x faster than numpy's in-place sort (20 M uint64: 0.4 s
    against 1.35 s, one thread or two); the price is a second key-sized buffer while it runs.
    """
    return pl.Series(key, dtype=pl.UInt64).sort().to_numpy()


def _pairs_packed(table: ListenTable, user_bits: int, item_bits: int) -> pl.DataFrame | None:
    """``reduce_pairs`` for single listens with known times (dumps of timestamped listens), when
    (user, item, time offset) packs into 64 bits: the packed keys are sorted and each pair
    is a run of equal (user, item) bits, its last key holding its latest time. Memory: two
    keys per row while sorting (a sort of the rows with their times needs three, plus an
    index). None when the data does not qualify."""
    if table.count is not None or len(table.user) == 0:
        return None
    time = table.time
    n = len(table.user)
    start, time_bits = 0, 0
    if time is not None:
        start = int(time.min())
        if start == UNKNOWN_TIME:
            return None
        time_bits = max(int(time.max()) - start, 1).bit_length()
    if user_bits + item_bits + time_bits > 64:
        return None
    pair_shift = np.uint64(time_bits)
    fields = [(table.user, 0, time_bits + item_bits), (table.item, 0, time_bits)]
    if time is not None:
        fields.append((time, start, 0))
    key = _sorted(_packed_keys(fields, n))
    starts = []
    previous = None
    for lo in range(0, n, CHUNK_ROWS):  # where the (user, item) bits change: a new pair
        pair = key[lo : lo + CHUNK_ROWS] >> pair_shift
        first = previous is None or pair[0] != previous
        new = np.flatnonzero(pair[1:] != pair[:-1]) + (lo + 1)
        starts.append(np.r_[lo, new] if first else new)
        previous = pair[-1]
    begin = np.concatenate(starts)
    del starts
    end = np.append(begin[1:], n)
    pair = key[begin] >> pair_shift
    columns = {
        "count": (end - begin).astype(np.uint32),
        "user": (pair >> np.uint64(item_bits)).astype(np.int64),
        "item": (pair & np.uint64((1 << item_bits) - 1)).astype(np.int64),
    }
    if time is not None:
        latest = key[end - 1] & np.uint64((1 << time_bits) - 1)
        columns["time"] = latest.astype(np.int64) + start
    return pl.DataFrame(columns)


def sorted_events(table: ListenTable, reuse_arrays: bool = False) -> ListenEvents:
    """Timestamped rows sorted by user, then time, then item.

    Where (user, time offset, item) packs into 64 bits, the packed keys alone are sorted and
    the events unpacked from them: no row-sized index or gathered copies. With
    ``reuse_arrays`` the events are unpacked into the table's own arrays (the table is
    consumed), which keeps the peak at the table plus two keys per row.
    """
    assert table.time is not None  # events come from tables with listen times
    known = table.time != UNKNOWN_TIME
    everything = bool(known.all())
    user = table.user if everything else table.user[known]
    item = table.item if everything else table.item[known]
    time = table.time if everything else table.time[known]
    del known
    n = len(time)
    if not n:
        return ListenEvents(user.astype(np.int32), item.astype(np.int32), time.astype(np.int64))
    start = int(time.min())
    time_bits = max(int(time.max()) - start, 1).bit_length()
    user_bits, item_bits = _bits(len(table.users)), _bits(len(table.items))
    if user_bits + time_bits + item_bits > 64:
        order = np.lexsort((item, time, user))
        return ListenEvents(user[order].astype(np.int32), item[order].astype(np.int32), time[order])
    user_shift, time_shift = np.uint64(time_bits + item_bits), np.uint64(item_bits)
    key = _sorted(
        _packed_keys([(user, 0, time_bits + item_bits), (time, start, item_bits), (item, 0, 0)], n)
    )
    # Arrays polars lends without a copy are read-only: those are never reused.
    writable = all(a.flags.writeable for a in (user, item, time))
    if not (reuse_arrays and everything and writable):
        user = np.empty(n, dtype=np.int32)
        item = np.empty(n, dtype=np.int32)
        time = np.empty(n, dtype=np.int64)
    item_mask, time_mask = np.uint64((1 << item_bits) - 1), np.uint64((1 << time_bits) - 1)
    for lo in range(0, n, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, n)
        part = key[lo:hi]
        user[lo:hi] = part >> user_shift
        time[lo:hi] = ((part >> time_shift) & time_mask).astype(np.int64) + start
        item[lo:hi] = part & item_mask
    return ListenEvents(user, item, time)


def interactions_from_table(
    table: ListenTable,
    keep_events: bool = True,
    source: dict | None = None,
    consume: bool = False,
) -> Interactions:
    """Play counts and last-listened time per (user, item), and optionally the listen events.

    Single timestamped listens (dumps) are reduced by sorts of packed uint64 keys: one by
    (user, item, time) for the pairs, one by (user, time, item) for the events; rows with
    play counts by a parallel sort of a packed (user, item) key and a group-by. ``consume``
    lets the events reuse the table's arrays (the table must not be used afterwards), which
    keeps their 16 bytes per listen out of the peak.
    """
    n_users, n_items = len(table.users), len(table.items)
    pairs = reduce_pairs(table)
    rows = pairs.get_column("user").to_numpy()
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    matrix = sp.csr_matrix(
        (
            pairs.get_column("count").to_numpy().astype(np.float32),
            pairs.get_column("item").to_numpy().astype(np.int32),
            indptr,
        ),
        shape=(n_users, n_items),
    )
    last_listened = None
    if table.time is not None:
        last_listened = pairs.get_column("time").to_numpy().astype(np.int64)
    del pairs
    events = None
    if keep_events and table.time is not None:
        events = sorted_events(table, reuse_arrays=consume)

    return Interactions(
        matrix,
        table.users,
        table.items,
        table.item_metadata,
        level=table.level,
        last_listened=last_listened,
        events=events,
        source=source or {},
    )

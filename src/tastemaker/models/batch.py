"""The nightly batch: every user's top-n, streamed in user blocks to one Parquet file.

One row per (user, rank): ``user`` and ``item`` (source ids), ``rank`` (1-based), ``score``;
with ``keep_heard`` heard items stay in the lists, flagged (``heard``) with the time of the
user's last listen of them (``last_listened``, as ListenBrainz's batch writes
``latest_listened_at``). Memory is bounded by one block of users: a block is ranked (by the
model's own ``recommend``, or by an approximate index), turned into Arrow columns and written
as one row group, then dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from tastemaker.artifacts import atomic_file, parquet_tag
from tastemaker.data.interactions import UNKNOWN_TIME
from tastemaker.errors import UsageError
from tastemaker.models.base import Recommender

RECOMMENDATIONS_KIND = "recommendations"
FORMAT_VERSION = 1
# Users ranked and written at once. A dense scorer holds block x n_items float32 scores
# (1024 x 200,000 items: 0.8 GB); the Parquet row group holds block x n rows.
BLOCK_USERS = 1024


class BlockRanker(Protocol):
    """Top-n of many training users at once, padded with -1 / -inf like ``recommend``."""

    kind: str

    def rank(
        self, users: np.ndarray, n: int, exclude_heard: bool
    ) -> tuple[np.ndarray, np.ndarray]: ...


class ExactRanker:
    """The model's own scoring of every item (``Recommender.recommend``): the reference."""

    kind = "exact"

    def __init__(self, model: Recommender) -> None:
        self.model = model

    def rank(self, users: np.ndarray, n: int, exclude_heard: bool) -> tuple[np.ndarray, np.ndarray]:
        return self.model.recommend(users, n, exclude_heard=exclude_heard)


@dataclass(frozen=True)
class Block:
    """One block of users' lists, in index space (rows padded with -1 / -inf)."""

    users: np.ndarray  # int64 (rows,)
    items: np.ndarray  # int64 (rows, n)
    scores: np.ndarray  # float32 (rows, n)


def user_blocks(n_users: int, block_users: int = BLOCK_USERS) -> Iterator[np.ndarray]:
    """Consecutive user index blocks covering ``0..n_users-1``."""
    if block_users < 1:
        raise UsageError(f"the block size must be >= 1 user; got {block_users}")
    for start in range(0, n_users, block_users):
        yield np.arange(start, min(start + block_users, n_users), dtype=np.int64)


def rank_blocks(
    ranker: BlockRanker,
    n_users: int,
    n: int,
    exclude_heard: bool = True,
    block_users: int = BLOCK_USERS,
) -> Iterator[Block]:
    """Every training user's top-n, one block of users at a time."""
    for users in user_blocks(n_users, block_users):
        items, scores = ranker.rank(users, n, exclude_heard)
        yield Block(users, items, scores)


def heard_times(
    user_items: sp.csr_matrix, last_listened: np.ndarray | None, block: Block
) -> tuple[np.ndarray, np.ndarray]:
    """For each listed (user, item) of ``block``: whether the user heard it, and the epoch
    seconds of their last listen of it (``UNKNOWN_TIME`` where unheard or unknown)."""
    rows = user_items[block.users]
    n_items = user_items.shape[1]
    # (row, item) as one sorted key per heard pair: CSR rows are in order, indices sorted.
    row_of_pair = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(rows.indptr))
    heard_keys = row_of_pair * n_items + rows.indices
    listed = np.clip(block.items, 0, None)
    keys = np.arange(len(block.users), dtype=np.int64)[:, None] * n_items + listed
    position = np.searchsorted(heard_keys, keys)
    safe = np.minimum(position, max(len(heard_keys) - 1, 0))
    heard = (
        (heard_keys[safe] == keys) & (block.items >= 0)
        if len(heard_keys)
        else np.zeros(keys.shape, dtype=bool)
    )
    times = np.full(keys.shape, UNKNOWN_TIME, np.int64)
    if last_listened is not None and len(heard_keys):
        # The pair's place in the whole matrix's data: its row's start + its offset in the row.
        offset = safe - rows.indptr[:-1][:, None]
        global_position = user_items.indptr[block.users][:, None] + offset
        times[heard] = last_listened[global_position[heard]]
    return heard, times


def block_table(
    block: Block,
    user_ids: pa.Array,
    item_ids: pa.Array,
    heard: tuple[np.ndarray, np.ndarray] | None,
) -> pa.Table:
    """One block as rows (user, rank, item, score[, heard, last_listened]); padding dropped."""
    valid = block.items >= 0
    row, column = np.nonzero(valid)
    columns: dict[str, pa.Array] = {
        "user": user_ids.take(pa.array(block.users[row])),
        "rank": pa.array((column + 1).astype(np.int32)),
        "item": item_ids.take(pa.array(block.items[row, column])),
        "score": pa.array(block.scores[row, column].astype(np.float32)),
    }
    if heard is not None:
        flags, times = heard[0][row, column], heard[1][row, column]
        columns["heard"] = pa.array(flags)
        columns["last_listened"] = pa.array(
            times, type=pa.timestamp("s", tz="UTC"), mask=times == UNKNOWN_TIME
        )
    return pa.table(columns)


@dataclass
class BatchSummary:
    users: int
    rows: int
    ranker: str
    path: Path


def write_recommendations(
    model: Recommender,
    path: str | Path,
    n: int,
    ranker: BlockRanker | None = None,
    keep_heard: bool = False,
    block_users: int = BLOCK_USERS,
    on_block: Callable[[int], Any] | None = None,
    force: bool = False,
    inputs: tuple[str | Path, ...] = (),
) -> BatchSummary:
    """Write every training user's top-n to the Parquet file ``path`` atomically (one row
    group per block of users; ``tastemaker.artifacts`` decides what may be replaced).

    ``ranker`` defaults to exact scoring by the model; ``on_block(users_done)`` is called
    after each block (a progress bar)."""
    model._check_fitted()
    if n < 1:
        raise UsageError(f"n must be >= 1; got {n}")
    ranker = ranker or ExactRanker(model)
    data = model.interactions_
    user_ids = data.users.ids.to_arrow()
    item_ids = data.items.ids.to_arrow()
    schema = recommendations_schema(keep_heard).with_metadata(
        parquet_tag(
            RECOMMENDATIONS_KIND,
            format_version=FORMAT_VERSION,
            model=model.name,
            n=n,
            ranker=ranker.kind,
            heard="kept" if keep_heard else "excluded",
            data_fingerprint=model.data_fingerprint_,
        )
    )
    rows = done = 0
    with (
        atomic_file(path, RECOMMENDATIONS_KIND, inputs=inputs, force=force) as tmp,
        pq.ParquetWriter(tmp, schema, compression="zstd") as writer,
    ):
        for block in rank_blocks(ranker, data.n_users, n, not keep_heard, block_users):
            heard = (
                heard_times(model.user_items_, data.last_listened, block) if keep_heard else None
            )
            table = block_table(block, user_ids, item_ids, heard)
            writer.write_table(table.cast(schema), row_group_size=max(table.num_rows, 1))
            rows += table.num_rows
            done += len(block.users)
            if on_block is not None:
                on_block(done)
    return BatchSummary(data.n_users, rows, ranker.kind, Path(path))


def recommendations_schema(keep_heard: bool) -> pa.Schema:
    fields = [
        pa.field("user", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("item", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
    ]
    if keep_heard:
        fields += [
            pa.field("heard", pa.bool_(), nullable=False),
            pa.field("last_listened", pa.timestamp("s", tz="UTC")),
        ]
    return pa.schema(fields)


def blocks_needed(n_users: int, block_users: int = BLOCK_USERS) -> int:
    return math.ceil(n_users / block_users) if n_users else 0

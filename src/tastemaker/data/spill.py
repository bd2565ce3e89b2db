"""Ingest past a memory budget: listens spilled to disk by user, reduced a partition at a time.

The in-memory ingest (``listens.encode_listens`` then ``interactions_from_table``) holds
about 41 bytes per listen at its peak (docs/scaling.md). When the estimate of that exceeds
``--memory-limit``, ``ingest`` runs this path instead, which writes the same files, byte for
byte:

1. **Partition** (one streaming pass over the source, in batches): each listen goes to the
   partition ``hash(user) % parts`` as a row of (user, time, count, combination hash) in a
   zstd Parquet run. Beside it, per distinct *combination* of the columns that key and
   name an item (the level's id, its names, whether the row has a user) the pass keeps the
   listens it stands for and the global index of its last row (its position in the
   source's order, the order the in-memory path reads).
2. **Items, globally**: the combinations, in the order of their last rows, go through the
   same ``listens.encode_items`` as the rows of the in-memory path. The identity rule only
   looks at distinct names (weighted by listens), and each item's metadata comes from its
   last eligible row, which lies in the combination with the latest last row: the keys,
   metadata and identity report are those of the in-memory path.
3. **Reduce** each partition alone (every user's listens are in one partition): item and
   user indices in the global vocabularies, rows without an item dropped, the date and bot
   filters (both per listen or per user), then the (user, item) pairs and the events,
   sorted, written as ``.npy`` files.
4. **Merge**: the pairs of all partitions (far fewer than the listens) into the CSR; users
   and items left without a listen leave the vocabularies; the k-core runs on the merged
   matrix (``filters.k_core_subset``); the events are streamed into ``events.npz`` block by
   block of users (``artifacts.stream_arrays``), never held at once.

Deduplication is the readers' own (a listen repeated across dumps is dropped before
partitioning), so it is the same either way. The runs live in a folder inside the output's
temporary directory, which ``artifacts.atomic_directory`` removes on any error or Ctrl-C;
the folder is deleted before the manifest is written, unless the runs are kept (``keep``:
``ingest --keep-runs``): then each run row also carries the ListenBrainz dedup key (the
time in ms and a hash of ``recording_msid``), the combinations are written beside the runs,
and the folder becomes the output's ``runs/``, covered by its manifest, which
``data.append`` adds incremental dumps to (``data.runs``).
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import scipy.sparse as sp

from tastemaker.artifacts import stream_arrays
from tastemaker.data.filters import Filters, FilterStep, busy_users, date_mask
from tastemaker.data.interactions import UNKNOWN_TIME, Interactions, Vocabulary
from tastemaker.data.listens import decode_categorical, encode_items, new_categorical
from tastemaker.data.pairs import ListenTable, reduce_pairs, sorted_events
from tastemaker.data.schema import LEVEL_IDS, LEVEL_NAMES
from tastemaker.data.spill_tracks import TRACK_KEY_COLUMNS, TrackCombinations, progress_bar
from tastemaker.errors import DataError, UsageError

# Peak bytes per listen of the in-memory ingest (41 measured at 100 M listens; margin added).
PEAK_BYTES_PER_LISTEN = 48
# The default budget: this share of the machine's memory.
MEMORY_FRACTION = 0.5
# Text sources: bytes per listen assumed to estimate their listens from their size (a
# ListenBrainz JSON line is 300-600 bytes, a Last.fm TSV line about 150: this errs towards
# more listens, so towards spilling).
TEXT_BYTES_PER_LISTEN = 100
MAX_PARTITIONS = 1024
BATCH_ROWS = 4_000_000
BATCH_MIN_ROWS = 100_000
EVENT_BLOCK = 1 << 22
FOLDER = ".spill"
MSID_SEED = 59  # the seed of the recording_msid hash in kept runs
_U32 = np.iinfo(np.uint32).max
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def machine_memory() -> int:
    """Physical memory of this machine, in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_memory_limit() -> int:
    """``MEMORY_FRACTION`` of the machine's memory."""
    return int(machine_memory() * MEMORY_FRACTION)


def parse_size(text: str) -> int:
    """``4GB`` / ``512MB`` / ``2GiB`` / ``1000000`` as bytes (GB: 10**9, GiB: 2**30)."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"--memory-limit must be a size like 4GB or 512MB; got {text!r}")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    size = float(number) * base ** " kmgt".index(unit.lower() or " ")
    if size < 1:
        raise UsageError(f"--memory-limit must be at least 1 byte; got {text!r}")
    return int(size)


def estimate_listens(paths: Sequence[str | Path]) -> int:
    """Listens in the sources, before reading them: Parquet files' row counts from their
    footers, other files' sizes over ``TEXT_BYTES_PER_LISTEN``."""
    total = 0
    for root in map(Path, paths):
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for file in files:
            if file.suffix.lower() == ".parquet":
                try:
                    total += pq.read_metadata(file).num_rows
                    continue
                except (OSError, ValueError):
                    pass  # the reader names what is wrong with it
            elif file.name in ("manifest.json", "synth.json"):
                continue
            total += file.stat().st_size // TEXT_BYTES_PER_LISTEN
    return total


def spill_partitions(listens: int, memory_limit: int) -> int:
    """Partitions to spill ``listens`` into under ``memory_limit`` (0: the in-memory path
    fits): each partition's reduction gets half the budget, the rest is for what is global
    (vocabularies, the merged pairs)."""
    need = listens * PEAK_BYTES_PER_LISTEN
    if need <= memory_limit:
        return 0
    return min(max(2, math.ceil(need / max(memory_limit / 2, 1))), MAX_PARTITIONS)


@dataclass
class SpillResult:
    """What the spilled reduction hands back to ``ingest``: the ``Interactions`` without
    its events (they stay on disk until ``Spill.write_events``), and the figures the
    in-memory path reads off its ``ListenTable``."""

    interactions: Interactions
    listens: int
    identity: dict | None
    filter_steps: list[FilterStep] = field(default_factory=list)
    rows_without_item: int = 0


class Spill:
    """One spilled ingest: ``partition``, ``reduce``, then ``write_events`` and ``close``."""

    def __init__(
        self,
        folder: Path,
        level: str,
        parts: int,
        memory_limit: int,
        console: Any | None = None,
        keep: bool = False,
    ):
        self.folder, self.level, self.parts, self.console = folder, level, parts, console
        # Kept runs (``close`` keeps them as ``runs/``): run rows carry the dedup key, and
        # ``state`` (what ``data.append`` needs to add to them) is written beside them.
        self.keep, self.state, self.prefix = keep, dict[str, Any](), ""
        self.on_close: Callable[[Spill], None] = lambda spill: None  # ``runs.keep_runs``
        self.names = LEVEL_NAMES[level]
        self.extra = ("artist_mbid",) if level != "artist" else ()
        # A batch of raw rows holds its strings (about 100-300 bytes a row, with what is
        # derived from them): a thousandth of the budget in rows keeps it well inside.
        self.batch_rows = min(BATCH_ROWS, max(BATCH_MIN_ROWS, memory_limit // 1000))
        self.rows = self.batches = 0
        self.has_time = False
        self.single = True  # every row is one listen
        self._combos: list[pl.DataFrame] = []
        self.tracks = TrackCombinations()
        self.folder.mkdir(exist_ok=keep)

    def add_combinations(self, items: pl.DataFrame) -> None:
        """Item combinations kept from an earlier spill (``items.parquet`` of kept runs)."""
        self._combos.append(items)

    def _combo_columns(self) -> list[str]:
        return ["id", *[f"name_{c}" for c in (*self.names, *self.extra)], "user_known"]

    # -- 1. partition ----------------------------------------------------------------------
    def partition(self, listens: pl.LazyFrame, expected: int) -> None:
        """Stream ``listens`` into the partitions' runs, keeping the combinations."""
        columns = listens.select(
            pl.col("user"),
            pl.col("listened_at").dt.epoch("s").alias("time"),
            pl.col("count"),
            LEVEL_IDS[self.level]().alias("id"),
            *[pl.col(c).alias(f"name_{c}") for c in (*self.names, *self.extra)],
            *TRACK_KEY_COLUMNS,  # what tracks are keyed and described by (spill_tracks)
            *(dedup_key() if self.keep else ()),
        )
        for part in range(self.parts):
            (self.folder / f"p{part}").mkdir(exist_ok=self.keep)
        with progress_bar(self.console) as progress:
            task = progress and progress.add_task("spilling listens", total=max(expected, 1))
            for batch in columns.collect_batches(chunk_size=self.batch_rows):
                self._spill_batch(self.batches, batch)  # numbered across calls (appends)
                self.batches += 1
                if progress:
                    progress.update(task, completed=self.rows, total=max(expected, self.rows))

    def _spill_batch(self, number: int, batch: pl.DataFrame) -> None:
        n = batch.height
        if not n:
            return
        combo = self._combo_columns()
        batch = batch.with_columns(
            pl.col("user").is_not_null().alias("user_known"),
            pl.int_range(self.rows, self.rows + n, dtype=pl.Int64).alias("row"),
            pl.col("count").clip(1, _U32).cast(pl.UInt32).alias("clipped"),
        ).with_columns(
            pl.struct(combo).hash(11).alias("combo"),
            pl.struct(combo).hash(97).alias("check"),
            pl.struct(TRACK_KEY_COLUMNS).hash(41).alias("track"),
            pl.struct(TRACK_KEY_COLUMNS).hash(73).alias("check_track"),
            (pl.col("user").hash(23) % self.parts).alias("part"),
        )
        self.has_time |= batch.get_column("time").null_count() < n
        counts = batch.get_column("clipped")
        self.single &= counts.min() == 1 and counts.max() == 1
        self.tracks.add(batch)
        kept = ("ms", "msid") if self.keep else ()
        runs = batch.select("part", "user", "time", "count", "combo", "track", "row", *kept)
        for (part,), piece in runs.partition_by("part", as_dict=True).items():
            path = self.folder / f"p{part}" / f"{self.prefix}{number}.parquet"
            piece.drop("part").write_parquet(path, compression="zstd")
        if self.keep:  # the track combinations, for the next append (``_keep`` merges them)
            (self.folder / "tracks").mkdir(exist_ok=True)
            tracks = batch.select("track", "check_track", *TRACK_KEY_COLUMNS)
            tracks = tracks.unique(["track", "check_track"], keep="first", maintain_order=True)
            tracks.write_parquet(self.folder / "tracks" / f"{self.prefix}{number}.parquet")
        self._combos.append(self._aggregate(batch.select("combo", "check", *combo, "count", "row")))
        if len(self._combos) >= 4:
            self._combos = [self._aggregate(pl.concat(self._combos))]
        self.rows += n

    def _aggregate(self, frame: pl.DataFrame) -> pl.DataFrame:
        """One row per combination hash: its columns, listens, last row, and the least and
        greatest of a second, independent hash (they differ only if two combinations
        collided on the first). Grouping by the integer hash alone: no string hashing."""
        first = "count" in frame.columns
        listens = pl.col("count" if first else "listens").cast(pl.Int64).sum()
        check = [pl.col("check").min().alias("check_lo"), pl.col("check").max().alias("check_hi")]
        if not first:
            check = [pl.col("check_lo").min(), pl.col("check_hi").max()]
        return frame.group_by("combo").agg(
            *[pl.col(c).first() for c in self._combo_columns()],
            listens.alias("listens"),
            pl.col("row" if first else "last_row").max().alias("last_row"),
            *check,
        )

    # -- 2. items --------------------------------------------------------------------------
    def _items(self) -> dict:
        """The global item keys, metadata and identity report, from the combinations."""
        combos = self._aggregate(pl.concat(self._combos)) if self._combos else None
        self._combos = []
        if self.keep and combos is not None:  # for the next append
            combos.sort("last_row").write_parquet(self.folder / "items.parquet")
        if combos is None or combos.is_empty():
            empty = pl.DataFrame(
                {c: pl.Series([], dtype=pl.Utf8) for c in self._combo_columns()[:-1]}
            ).with_columns(
                pl.lit(True).alias("user_known"),
                pl.lit(0, pl.UInt64).alias("combo"),
                pl.lit(0, pl.Int64).alias("listens"),
                pl.lit(0, pl.Int64).alias("last_row"),
                pl.lit(0, pl.UInt64).alias("check_lo"),
                pl.lit(0, pl.UInt64).alias("check_hi"),
            )
            combos = empty.clear()
        if (combos.get_column("check_lo") != combos.get_column("check_hi")).any():
            raise DataError(
                "two distinct item spellings hashed alike while spilling; ingest again with "
                "a larger --memory-limit (the in-memory path does not hash them)"
            )
        combos = combos.sort("last_row")

        def codes(column: str) -> tuple[np.ndarray, pl.Series]:
            return decode_categorical(combos.get_column(column).cast(new_categorical()))

        item, _, keys, metadata, report = encode_items(
            *codes("id"),
            [codes(f"name_{c}") for c in self.names],
            {c: codes(f"name_{c}") for c in self.extra},
            combos.get_column("listens").to_numpy(),
            combos.get_column("user_known").to_numpy(),
            self.level,
        )
        hashes = combos.get_column("combo").to_numpy()
        order = np.argsort(hashes)
        return {
            "hashes": hashes[order],
            "item": item[order],
            "keys": keys,
            "metadata": metadata,
            "identity": report,
        }

    def _users(self) -> pl.Series:
        frames = [
            pl.scan_parquet(self.folder / f"p{part}" / "*.parquet")
            .select(pl.col("user").unique())
            .collect()
            for part in range(self.parts)
            if any((self.folder / f"p{part}").iterdir())
        ]
        if not frames:
            return pl.Series("user", [], dtype=pl.Utf8)
        return pl.concat(frames).get_column("user").drop_nulls().sort()

    # -- 3. reduce -------------------------------------------------------------------------
    def reduce(self, filters: Filters, keep_events: bool) -> SpillResult:
        """Every partition reduced alone, then the pairs merged into an ``Interactions``."""
        if (filters.start is not None or filters.end is not None) and not self.has_time:
            raise UsageError("a date range needs timestamps, and this source has none")
        if filters.max_listens_per_day and not self.has_time:
            raise UsageError("the listens-per-day limit needs timestamps; this source has none")
        items = self._items()
        users = self._users()
        self._vocabularies = (Vocabulary(users), Vocabulary(items["keys"]))
        self._metadata = items["metadata"]
        n_users, n_items = len(users), len(items["keys"])
        # Users and items with a row: after the drop, the date range, the bot filter.
        self._present = [(np.zeros(n_users, bool), np.zeros(n_items, bool)) for _ in range(3)]
        self._removed = [0, 0]  # listens removed by the date range, by the bot filter
        self._listens = self._dropped = 0
        self.keep_events = keep_events and self.has_time
        with progress_bar(self.console) as progress:
            task = progress and progress.add_task("reducing partitions", total=self.parts)
            for part in range(self.parts):
                if any((self.folder / f"p{part}").iterdir()):
                    self._reduce_part(part, users, items, filters)
                if progress:
                    progress.advance(task)
        interactions = self._merge()
        steps = self._steps(filters)
        return SpillResult(interactions, self._listens, items["identity"], steps, self._dropped)

    def _reduce_part(self, part: int, users: pl.Series, items: dict, filters: Filters) -> None:
        folder = self.folder / f"p{part}"
        scan = pl.scan_parquet(folder / "*.parquet").select("user", "time", "count", "combo")
        runs = scan.collect().with_columns(pl.col("count").clip(1, _U32).cast(pl.UInt32))
        column = runs.drop_in_place("user").cast(new_categorical())
        user_codes, user_strings = decode_categorical(column)
        del column
        ranks = users.search_sorted(user_strings).to_numpy().astype(np.int32)
        rank = np.append(ranks, np.int32(-1))  # code -1: no user
        user = rank[user_codes]
        position = np.searchsorted(items["hashes"], runs.drop_in_place("combo").to_numpy())
        item = items["item"][position]
        time_column = runs.drop_in_place("time")
        time = time_column.fill_null(UNKNOWN_TIME).to_numpy() if self.has_time else None
        count = None if self.single else runs.drop_in_place("count").to_numpy()
        del runs, user_codes, position, time_column
        keep = (item >= 0) & (user >= 0)
        self._dropped += int(len(keep) - keep.sum())
        user, item, time, count = _rows(keep, user, item, time, count)
        self._listens += _listens(count, len(user))
        self._mark(0, user, item)
        if filters.start is not None or filters.end is not None:
            assert time is not None  # reduce checked
            keep = date_mask(time, filters.start, filters.end)
            self._removed[0] += _listens(
                None if count is None else count[~keep], int((~keep).sum())
            )
            user, item, time, count = _rows(keep, user, item, time, count)
        self._mark(1, user, item)
        if filters.max_listens_per_day:
            assert time is not None
            bots = busy_users(user, time, count, filters.max_listens_per_day)
            keep = ~np.isin(user, bots)
            self._removed[1] += _listens(
                None if count is None else count[~keep], int((~keep).sum())
            )
            user, item, time, count = _rows(keep, user, item, time, count)
        self._mark(2, user, item)
        user_vocab, item_vocab = self._vocabularies
        table = ListenTable(
            user, item, time, count, user_vocab, item_vocab, self._metadata, self.level
        )
        pairs = reduce_pairs(table)
        columns = {c: pairs.get_column(c).to_numpy() for c in pairs.columns}
        del pairs
        for name, values in columns.items():
            np.save(self.folder / f"pairs{part}.{name}.npy", values)
        del columns
        if self.keep_events:
            events = sorted_events(table, reuse_arrays=True)
            for name in ("user", "item", "timestamp"):
                np.save(self.folder / f"events{part}.{name}.npy", getattr(events, name))

    def _mark(self, stage: int, user: np.ndarray, item: np.ndarray) -> None:
        users, items = self._present[stage]
        users[user] = True
        items[item] = True

    def _steps(self, filters: Filters) -> list[FilterStep]:
        """The per-listen filters' steps, as ``filters.filter_table`` reports them."""
        steps = []
        counts = [(int(u.sum()), int(i.sum())) for u, i in self._present]
        if filters.start is not None or filters.end is not None:
            setting = f"{filters.start or '…'} to {filters.end or '…'}"
            users, items = counts[0][0] - counts[1][0], counts[0][1] - counts[1][1]
            steps.append(FilterStep("date range", setting, self._removed[0], users, items))
        if filters.max_listens_per_day:
            setting = f"> {filters.max_listens_per_day:,} listens a day"
            users, items = counts[1][0] - counts[2][0], counts[1][1] - counts[2][1]
            steps.append(FilterStep("bots", setting, self._removed[1], users, items))
        return steps

    # -- 4. merge --------------------------------------------------------------------------
    def _merge(self) -> Interactions:
        users_kept, items_kept = self._present[2]
        self._user_map = (np.cumsum(users_kept) - 1).astype(np.int64)
        self._item_map = (np.cumsum(items_kept) - 1).astype(np.int64)
        self._user_map[~users_kept] = -1
        self._item_map[~items_kept] = -1
        names = ["user", "item", "count"] + (["time"] if self.has_time else [])
        parts = [p for p in range(self.parts) if (self.folder / f"pairs{p}.user.npy").exists()]
        merged = {
            name: np.concatenate(
                [np.load(self.folder / f"pairs{p}.{name}.npy") for p in parts]
                or [np.zeros(0, np.int64)]
            )
            for name in names
        }
        user = self._user_map[merged.pop("user")]
        order = np.argsort(user, kind="stable")  # each user's pairs come from one partition
        user = user[order]
        item = self._item_map[merged.pop("item")[order]]
        indptr = np.zeros(int(users_kept.sum()) + 1, dtype=np.int64)
        np.cumsum(np.bincount(user, minlength=len(indptr) - 1), out=indptr[1:])
        del user
        shape = (len(indptr) - 1, int(items_kept.sum()))
        counts = merged.pop("count")[order].astype(np.float32)
        matrix = sp.csr_matrix((counts, item.astype(np.int32), indptr), shape=shape)
        last = merged.pop("time")[order].astype(np.int64) if self.has_time else None
        user_vocab, item_vocab = self._vocabularies
        kept = np.flatnonzero(items_kept)
        return Interactions(
            matrix,
            Vocabulary(user_vocab.ids.gather(np.flatnonzero(users_kept))),
            Vocabulary(item_vocab.ids.gather(kept)),
            self._metadata[kept],
            level=self.level,
            last_listened=last,
        )

    def restrict(self, users: np.ndarray, items: np.ndarray) -> None:
        """Keep only these of the merged users and items in the events (the k-core's masks)."""
        user_map = np.where(users, np.cumsum(users) - 1, -1)
        item_map = np.where(items, np.cumsum(items) - 1, -1)
        self._user_map = np.where(self._user_map >= 0, user_map[self._user_map], -1)
        self._item_map = np.where(self._item_map >= 0, item_map[self._item_map], -1)

    def write_events(self, path: Path) -> None:
        """The events of every partition, in (user, time, item) order, into ``path``."""
        if not self.keep_events:
            return
        parts = [p for p in range(self.parts) if (self.folder / f"events{p}.user.npy").exists()]
        load = {
            name: [np.load(self.folder / f"events{p}.{name}.npy", mmap_mode="r") for p in parts]
            for name in ("user", "item", "timestamp")
        }
        per_user = np.zeros(len(self._user_map) + 1, dtype=np.int64)
        kept = 0
        for user, item in zip(load["user"], load["item"], strict=True):
            for lo in range(0, len(user), EVENT_BLOCK):
                u, i = user[lo : lo + EVENT_BLOCK], item[lo : lo + EVENT_BLOCK]
                per_user[1:] += np.bincount(u, minlength=len(per_user) - 1)
                kept += int(((self._user_map[u] >= 0) & (self._item_map[i] >= 0)).sum())
        blocks = _blocks(np.cumsum(per_user))
        # Per block of users, each partition's events of those users: a contiguous slice.
        slices = [
            [(int(np.searchsorted(u, lo)), int(np.searchsorted(u, hi))) for u in load["user"]]
            for lo, hi in blocks
        ]
        with progress_bar(self.console) as progress:
            task = progress and progress.add_task("writing events", total=3 * len(blocks))

            def column(name: str, dtype: Any) -> Iterator[np.ndarray]:
                for bounds in slices:
                    users = [u[a:b] for u, (a, b) in zip(load["user"], bounds, strict=True)]
                    values = [v[a:b] for v, (a, b) in zip(load[name], bounds, strict=True)]
                    user = np.concatenate(users)
                    order = np.argsort(user, kind="stable")
                    chunk = np.concatenate(values)[order]
                    user = user[order]
                    item = np.concatenate(
                        [v[a:b] for v, (a, b) in zip(load["item"], bounds, strict=True)]
                    )[order]
                    keep = (self._user_map[user] >= 0) & (self._item_map[item] >= 0)
                    if name == "user":
                        chunk = self._user_map[user[keep]]
                    elif name == "item":
                        chunk = self._item_map[item[keep]]
                    else:
                        chunk = chunk[keep]
                    if progress:
                        progress.advance(task)
                    yield chunk.astype(dtype)

            stream_arrays(
                path,
                {
                    "user": (np.dtype(np.int32), kept, column("user", np.int32)),
                    "item": (np.dtype(np.int32), kept, column("item", np.int32)),
                    "timestamp": (np.dtype(np.int64), kept, column("timestamp", np.int64)),
                },
            )

    def attach_tracks(self, interactions: Interactions) -> Interactions:
        """``top_tracks.attach_tracks`` over the runs, a partition at a time."""
        folders = [self.folder / f"p{p}" for p in range(self.parts)]
        folders = [f for f in folders if f.exists() and any(f.iterdir())]
        return self.tracks.attach(folders, interactions, self.console)

    def close(self) -> None:
        """Remove the runs (also done with the output's temporary folder on any error), or
        keep them as the output's ``runs/`` (``keep``)."""
        if self.keep:
            self.on_close(self)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)


def dedup_key() -> list[pl.Expr]:
    """The ListenBrainz dedup key of a canonical listen beside its user: the time in ms and
    a hash of ``recording_msid`` (null where it is null, as a null never matches)."""
    msid = pl.col("recording_msid")
    return [
        pl.col("listened_at").dt.epoch("ms").alias("ms"),
        pl.when(msid.is_not_null()).then(msid.hash(MSID_SEED)).alias("msid"),
    ]


def _rows(
    keep: np.ndarray,
    user: np.ndarray,
    item: np.ndarray,
    time: np.ndarray | None,
    count: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    if keep.all():
        return user, item, time, count
    return (
        user[keep],
        item[keep],
        None if time is None else time[keep],
        None if count is None else count[keep],
    )


def _listens(count: np.ndarray | None, rows: int) -> int:
    return rows if count is None else int(count.sum(dtype=np.int64))


def _blocks(cumulative: np.ndarray) -> list[tuple[int, int]]:
    """Ranges of users holding about ``EVENT_BLOCK`` events each (``cumulative[u]``: the
    events of the users before ``u``)."""
    users = len(cumulative) - 1
    bounds = [0]
    while bounds[-1] < users:
        target = cumulative[bounds[-1]] + EVENT_BLOCK
        bounds.append(
            max(int(np.searchsorted(cumulative, target, side="right")) - 1, bounds[-1] + 1)
        )
        bounds[-1] = min(bounds[-1], users)
    return list(zip(bounds[:-1], bounds[1:], strict=True)) or [(0, 0)]


__all__ = [
    "MEMORY_FRACTION",
    "PEAK_BYTES_PER_LISTEN",
    "Spill",
    "SpillResult",
    "dedup_key",
    "default_memory_limit",
    "estimate_listens",
    "machine_memory",
    "parse_size",
    "spill_partitions",
]

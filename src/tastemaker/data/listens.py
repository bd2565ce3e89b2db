"""The reduction of canonical listens to ``Interactions``.

The canonical table itself (``LISTENS_SCHEMA``, ``conform``) is ``tastemaker.data.schema``.

Reduction to ``Interactions`` (``encode_listens`` then ``interactions_from_table``): one
streaming pass turns every string into a categorical code as the rows go by; item keys,
vocabularies, play counts, last-listened times and per-listen events are then computed on
integer arrays. Item keys per level (the rule: ``tastemaker.data.identity``, docs/identity.md):

* artist: ``artist_id``, else ``artist_mbid``, else the normalized first credited artist;
* release: ``release_mbid``, else normalized "artist | release";
* recording: ``recording_mbid``, else normalized "artist | title";

and a row keyed by names joins the id's item when its names belong to exactly one id in the
data (names of several ids stay on their name key and are reported as ambiguous).

Rows whose item cannot be keyed (no id and a missing name) are dropped and counted
(``ListenTable.rows_without_item``). Item metadata comes from the item's last row in input
order that has names: its artist name, the level's own name, and MBIDs (the key itself when
the key is an MBID, and the artist MBID at release / recording level).

Asked to (``tracks``), the same pass also hands over what the top-track tables need as
integer codes (``TrackCodes``: recording keys by the rule at recording level, and the title,
artist, release and recording MBID columns), so they never re-read a listen
(``tastemaker.data.top_tracks``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from tastemaker.data import identity
from tastemaker.data.interactions import (
    LEVELS,
    METADATA_COLUMNS,
    UNKNOWN_TIME,
    Interactions,
    Vocabulary,
)
from tastemaker.data.pairs import CHUNK_ROWS, ListenTable, interactions_from_table
from tastemaker.data.schema import LEVEL_IDS, LEVEL_NAMES, MBID_PATTERN

_LEVEL_MBID = {"artist": "artist_mbid", "release": "release_mbid", "recording": "recording_mbid"}


def new_categorical() -> pl.Categorical:
    # A private mapping per column: codes are dense from 0, and polars frees the mapping
    # together with the last frame that uses it.
    return pl.Categorical(pl.Categories.random())


def decode_categorical(column: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """A categorical column as int32 codes (-1 for null) and its strings, indexed by code
    (null for a code no row uses)."""
    # polars' uint32 codes read as int32 (there are fewer than 2**31), null as 2**32 - 1,
    # which reads as -1; without nulls, no copy at all.
    physical = column.to_physical()
    if physical.null_count():
        physical = physical.fill_null(np.iinfo(np.uint32).max)
    codes = physical.to_numpy().view(np.int32)
    # A row of each code, then those rows' strings: no hashing, and no Python loop over the
    # mapping (``Categories.to_series`` is one).
    size = int(codes.max()) + 1 if len(codes) else 0
    row = np.full(size + 1, -1, dtype=np.int64)  # code -1 marks the spare last slot
    for start in range(0, len(codes), CHUNK_ROWS):  # in chunks: no row-sized index arrays
        stop = min(start + CHUNK_ROWS, len(codes))
        row[codes[start:stop]] = np.arange(start, stop, dtype=np.int64)
    index = pl.Series(row[:size])
    strings = column.gather(index.set(index < 0, None)).cast(pl.Utf8).rename("s")
    return codes, strings


def gather_strings(strings: pl.Series, codes: np.ndarray) -> pl.Series:
    """``strings[codes]`` with code -1 giving null (a null index: no copy of ``strings``)."""
    index = pl.Series(codes)
    return strings.gather(index.set(pl.Series(codes < 0), None))


@dataclass
class _NameRule:
    """The identity rule over one level's decoded columns: the name-only rows, the name
    group of each (-1: a name is missing), each group's artist (and title) strings, and
    what the rule decided per group (``identity.reconcile_codes``)."""

    fallback_rows: np.ndarray
    fallback_group: np.ndarray
    artists: pl.Series
    titles: pl.Series | None
    rule: identity.Reconciliation


def _name_rule(
    id_codes: np.ndarray,
    names: list[tuple[np.ndarray, pl.Series]],
    count: np.ndarray | None,
    level: str,
    forms: pl.DataFrame | None = None,
) -> _NameRule:
    """The rule as ingest applies it: once per distinct name group, integer work per row.
    ``count`` only weighs the report's listens (None: one per row); ``forms``: the artist
    names' ``identity.name_forms`` where already computed."""
    fallback_rows = np.flatnonzero(id_codes < 0)
    group, n_groups, artists, titles, lo, hi = identity.name_groups(names, id_codes, fallback_rows)
    fallback_group = group if len(names) > 1 else group[fallback_rows]
    weights = None if count is None else count[fallback_rows]
    used = fallback_group >= 0
    name_listens = np.bincount(
        fallback_group[used],
        weights=None if weights is None else weights[used],
        minlength=n_groups,
    ).astype(np.int64)
    rule = identity.reconcile_codes(artists, titles, lo, hi, name_listens, level, forms)
    return _NameRule(fallback_rows, fallback_group, artists, titles, rule)


def _item_codes(
    id_codes: np.ndarray,
    id_strings: pl.Series,
    names: list[tuple[np.ndarray, pl.Series]],
    count: np.ndarray | None,
    level: str,
    forms: pl.DataFrame | None = None,
) -> tuple[np.ndarray, pl.Series, np.ndarray, dict]:
    """Per row its item index (-1: no key), the sorted item keys, the name-only rows that
    should not name their item (they joined an id's item, or carry a guest credit), and the
    identity report. Work per row is integer only: the rule
    runs once per distinct name group (``identity.reconcile_codes``)."""
    named = _name_rule(id_codes, names, count, level, forms)
    rule, fallback_rows, fallback_group = named.rule, named.fallback_rows, named.fallback_group
    # The item keys: the ids and the name keys of groups that joined no id, sorted and
    # distinct; each one's position is its dense rank (one sort, no joins).
    name_keys = pl.select(pl.when(pl.Series(rule.target < 0)).then(rule.keys)).to_series()
    candidates = pl.concat([id_strings.rename("key"), name_keys.rename("key")])
    rank = (candidates.rank("dense") - 1).fill_null(-1).cast(pl.Int32).to_numpy()
    ranked = rank >= 0
    first = np.zeros(int(rank.max()) + 1 if ranked.any() else 0, dtype=np.int64)
    first[rank[ranked]] = np.flatnonzero(ranked)
    keys = candidates.gather(first)
    # int32 throughout: np.append of a Python -1 would widen the row-sized array to int64.
    id_position = np.append(rank[: len(id_strings)], np.int32(-1))
    group_item = np.where(
        rule.target >= 0, id_position[rule.target], rank[len(id_strings) :]
    ).astype(np.int32)
    item = id_position[id_codes]
    fallback_item = np.append(group_item, np.int32(-1))[fallback_group]
    item[fallback_rows] = fallback_item
    secondary = np.append((rule.target >= 0) | rule.credited, False)[fallback_group]
    return item, keys, fallback_rows[secondary], rule.report


def _name_key_table(
    id_strings: pl.Series, named: _NameRule, level: str, column: str
) -> pl.DataFrame:
    """Per name group that has name-only rows, its raw names and the item key the rule gives
    it (the id's own key where it joined one, else its name key)."""
    rule = named.rule
    joined = rule.target >= 0
    key = rule.keys
    if joined.any():
        ids = id_strings.gather(np.where(joined, rule.target, 0))
        key = pl.select(pl.when(pl.Series(joined)).then(ids).otherwise(key)).to_series()
    columns = {LEVEL_NAMES[level][0]: named.artists}
    if named.titles is not None:
        columns[LEVEL_NAMES[level][1]] = named.titles
    frame = pl.DataFrame({**columns, column: key.cast(pl.Utf8)})
    return frame.filter(pl.col(column).is_not_null())


def key_listens(
    listens: pl.LazyFrame, levels: tuple[str, ...] = ("artist", "recording")
) -> pl.LazyFrame:
    """``listens`` with a column ``{level}_key`` per level: each listen's item key exactly
    as ``encode_listens`` keys it (the identity rule, decided over these same listens), so
    the keys are the ids of the vocabulary an ingest of ``listens`` builds. Null where the
    listen has no key. Row order is not kept.

    One streaming pass encodes the id and name columns; the rule runs per distinct name
    group (``_name_rule``, shared with ``encode_listens``) and yields a small table of raw
    names -> key, which the returned frame joins lazily: nothing per row but the join.
    """
    levels = tuple(dict.fromkeys(levels))
    for level in levels:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    name_columns = list(dict.fromkeys(c for level in levels for c in LEVEL_NAMES[level]))
    frame = listens.select(
        *[LEVEL_IDS[level]().cast(new_categorical()).alias(f"id_{level}") for level in levels],
        *[pl.col(c).cast(new_categorical()).alias(f"name_{c}") for c in name_columns],
    ).collect(engine="streaming")
    decoded = {c: decode_categorical(frame.drop_in_place(f"name_{c}")) for c in name_columns}
    # Folding the artist names is the rule's costliest step: done once for every level.
    forms = identity.name_forms(decoded["artist_name"][1]) if len(levels) > 1 else None
    tables = {}
    for level in levels:
        id_codes, id_strings = decode_categorical(frame.drop_in_place(f"id_{level}"))
        names = [decoded[c] for c in LEVEL_NAMES[level]]
        # count=None: the weights only feed the report, never which key a name gets.
        named = _name_rule(id_codes, names, None, level, forms)
        tables[level] = _name_key_table(id_strings, named, level, f"_{level}_by_name")
        del id_codes, id_strings, named
    del frame, decoded
    keyed = listens
    for level, table in tables.items():
        by_name = f"_{level}_by_name"
        keyed = keyed.join(table.lazy(), on=list(LEVEL_NAMES[level]), how="left").with_columns(
            pl.coalesce(LEVEL_IDS[level](), pl.col(by_name)).alias(f"{level}_key")
        )
        keyed = keyed.drop(by_name)
    return keyed


@dataclass
class TrackCodes:
    """What the top-track tables (``data.top_tracks``) need of every listen, in the source's
    order, as integer codes into sorted vocabularies (-1: none): the user, the item and the
    recording (each keyed by the identity rule, as ingest keys them), the described columns
    (``TRACK_DESCRIPTION``: codes and their strings), epoch seconds (``UNKNOWN_TIME`` where
    unknown, None when no row has one) and play counts (None when every row is one play)."""

    user: np.ndarray
    users: pl.Series
    item: np.ndarray
    items: pl.Series
    recording: np.ndarray
    recordings: pl.Series
    described: dict[str, tuple[np.ndarray, pl.Series]]
    time: np.ndarray | None
    count: np.ndarray | None


# Track table column -> the canonical column it is taken from.
TRACK_DESCRIPTION = {
    "title": "recording_name",
    "artist": "artist_name",
    "release": "release_name",
    "recording_mbid": "recording_mbid",
}


def _track_codes(
    level: str,
    columns: dict[str, tuple[np.ndarray, pl.Series]],
    user: tuple[np.ndarray, pl.Series],
    item: tuple[np.ndarray, pl.Series],
    time: np.ndarray | None,
    count: np.ndarray | None,
    forms: pl.DataFrame | None,
) -> TrackCodes:
    """``TrackCodes`` from decoded columns (canonical name -> codes, strings): below
    recording level the recording keys come from the rule at recording level (the same
    artist ``forms``), at recording level they are the items."""
    recording = item
    if level != "recording":
        id_codes, id_strings = columns["recording_mbid"]
        names = [columns["artist_name"], columns["recording_name"]]
        # count=None: the weights only feed the report, never which key a name gets.
        codes, keys, _, _ = _item_codes(id_codes, id_strings, names, None, "recording", forms)
        recording = (codes, keys)
    described = {column: columns[source] for column, source in TRACK_DESCRIPTION.items()}
    return TrackCodes(*user, *item, *recording, described, time, count)


def _time_and_count(frame: pl.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Epoch seconds (``UNKNOWN_TIME`` where unknown; None when no row has one) and play
    counts (None when every row is one play), taken out of ``frame``."""
    n = frame.height
    time_column = frame.drop_in_place("time")
    time = None
    if time_column.null_count() < n:
        time = time_column.fill_null(UNKNOWN_TIME).to_numpy()
    del time_column
    count_column = frame.drop_in_place("count")
    count = None
    if n and not (count_column.min() == 1 and count_column.max() == 1):
        count = count_column.to_numpy()
    return time, count


def _sorted_users(codes: np.ndarray, strings: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Users in sorted id order: per row its index (-1: no user), and the sorted ids."""
    order = strings.arg_sort().to_numpy()
    rank = np.empty(len(strings) + 1, dtype=np.int32)
    rank[order] = np.arange(len(strings), dtype=np.int32)
    rank[-1] = -1  # code -1: no user
    return rank[codes], strings.gather(order)


def encode_listens(
    listens: pl.LazyFrame,
    level: str = "artist",
    keys: str | None = None,
    tracks: Callable[[TrackCodes], None] | None = None,
) -> ListenTable:
    """Reduce canonical listens to a ``ListenTable``: one streaming pass, then integer work.

    Strings are hashed once, into categorical codes, while the source streams by; item keys
    are built over the distinct codes only, so per-listen work never touches a string again.
    ``keys`` names a column that already holds every row's item key (the Spark engine's).
    ``tracks`` is handed the listens' ``TrackCodes`` (from the same pass) before the rows
    without a key or a user are dropped.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    names = LEVEL_NAMES[level]
    extra = ("artist_mbid",) if level != "artist" else ()
    # The recording id is the id column at recording level (unless keys replace it).
    level_id = "recording_mbid" if level == "recording" and keys is None else None
    needed = () if tracks is None else tuple(TRACK_DESCRIPTION.values())
    track_only = tuple(c for c in needed if c not in (*names, *extra, level_id))
    frame = listens.select(
        pl.col("user").cast(new_categorical()).alias("user"),
        pl.col("listened_at").dt.epoch("s").alias("time"),
        pl.col("count").clip(1, np.iinfo(np.uint32).max).cast(pl.UInt32).alias("count"),
        (pl.col(keys) if keys else LEVEL_IDS[level]()).cast(new_categorical()).alias("id"),
        *[
            pl.col(c).cast(new_categorical()).alias(f"name_{c}")
            for c in (*names, *extra, *track_only)
        ],
    ).collect(engine="streaming")
    n = frame.height
    # Column by column, dropping each from the frame once decoded: memory stays near one
    # copy of the codes.
    user_codes, user_strings = decode_categorical(frame.drop_in_place("user"))
    id_codes, id_strings = decode_categorical(frame.drop_in_place("id"))
    name_codes = [decode_categorical(frame.drop_in_place(f"name_{c}")) for c in names]
    extra_codes = {c: decode_categorical(frame.drop_in_place(f"name_{c}")) for c in extra}
    columns = {c: decode_categorical(frame.drop_in_place(f"name_{c}")) for c in track_only}
    time, count = _time_and_count(frame)
    del frame
    user, users = _sorted_users(user_codes, user_strings)
    del user_codes

    # Folding the artist names is the rule's costliest step: done once for both levels.
    forms = None
    if tracks is not None and level != "recording":
        forms = identity.name_forms(name_codes[0][1])
    item, keep, item_keys, metadata, identity_report = encode_items(
        id_codes, id_strings, name_codes, extra_codes, count, user >= 0, level, forms
    )
    if tracks is not None:
        columns |= dict(zip(names, name_codes, strict=True)) | extra_codes
        if level_id:
            columns[level_id] = (id_codes, id_strings)
        tracks(_track_codes(level, columns, (user, users), (item, item_keys), time, count, forms))
    del id_codes, columns, forms

    table = ListenTable(
        user=user,
        item=item,
        time=time,
        count=count,
        users=Vocabulary(users),
        items=Vocabulary(item_keys),
        item_metadata=metadata,
        level=level,
        identity=identity_report,
    )
    dropped = int(n - keep.sum())
    if dropped:
        table = table.subset(keep)
        table.rows_without_item = dropped
    return table


def encode_items(
    id_codes: np.ndarray,
    id_strings: pl.Series,
    name_codes: list[tuple[np.ndarray, pl.Series]],
    extra_codes: dict[str, tuple[np.ndarray, pl.Series]],
    count: np.ndarray | None,
    user_known: np.ndarray,
    level: str,
    forms: pl.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray, pl.Series, pl.DataFrame, dict]:
    """Item index per row (-1: no key), the rows kept (keyed, with a user), the sorted item
    keys, their metadata and the identity report, from the decoded id and name columns in
    input order.

    The rows may also be the distinct (id, names, user known) combinations of a larger
    input, in the order of each one's last row, with ``count`` the listens each stands for:
    the keys, metadata and report are then those of the whole input (``data.spill``).
    ``forms``: the artist names' ``identity.name_forms`` where already computed.
    """
    # Item keys: the id where known, else the name key, which joins the id's item when the
    # names belong to exactly one id in the data (tastemaker.data.identity).
    item, item_keys, secondary_rows, identity_report = _item_codes(
        id_codes, id_strings, name_codes, count, level, forms
    )

    # Metadata from each item's last row in input order, preferring rows that have names.
    # Rows that joined an id's item by their names do not name it: its own rows do; nor do
    # rows with a guest credit ("A feat. B") name A's item unless nothing else does.
    n = len(id_codes)
    keep = (item >= 0) & user_known
    eligible = keep
    if len(secondary_rows):
        eligible = keep.copy()
        eligible[secondary_rows] = False
        secondary_rows = secondary_rows[keep[secondary_rows]]
    representative = np.full(len(item_keys), -1, dtype=np.int64)
    for start in range(0, n, CHUNK_ROWS):  # in chunks: no row-sized index arrays
        stop = min(start + CHUNK_ROWS, n)
        rows = np.arange(start, stop, dtype=np.int64)
        kept = eligible[start:stop]
        named = kept & np.logical_and.reduce([c[start:stop] >= 0 for c, _ in name_codes])
        if named.all():  # the usual chunk: every row kept and named, one plain scatter
            representative[item[start:stop]] = rows
            continue
        representative[item[start:stop][kept]] = rows[kept]
        representative[item[start:stop][named]] = rows[named]
    if len(secondary_rows):  # items named only by guest-credited rows: the last of those
        unnamed = np.flatnonzero((representative < 0)[item[secondary_rows]])
        representative[item[secondary_rows[unnamed]]] = secondary_rows[unnamed]
    del secondary_rows
    metadata = _item_metadata(level, item_keys, representative, name_codes, extra_codes)

    return item, keep, item_keys, metadata, identity_report


def _item_metadata(
    level: str,
    keys: pl.Series,
    representative: np.ndarray,
    name_codes: list[tuple[np.ndarray, pl.Series]],
    extra_codes: dict[str, tuple[np.ndarray, pl.Series]],
) -> pl.DataFrame:
    def column(codes_strings: tuple[np.ndarray, pl.Series]) -> pl.Series:
        codes, strings = codes_strings
        return gather_strings(strings, np.where(representative >= 0, codes[representative], -1))

    columns = {"artist_name": column(name_codes[0])}
    if level != "artist":
        columns[f"{level}_name"] = column(name_codes[1])
        columns["artist_mbid"] = column(extra_codes["artist_mbid"])
    frame = pl.DataFrame({"item": keys, **columns})
    if level == "artist":
        name = pl.col("artist_name")
    else:
        name = pl.concat_str(
            [pl.col("artist_name").fill_null("?"), pl.col(f"{level}_name").fill_null("?")],
            separator=" – ",
        )
    is_mbid = pl.col("item").str.contains(MBID_PATTERN)
    frame = frame.with_columns(
        name.fill_null(pl.col("item")).alias("name"),
        pl.when(is_mbid).then(pl.col("item")).alias(_LEVEL_MBID[level]),
    )
    return frame.select(
        [
            (pl.col(c) if c in frame.columns else pl.lit(None, dtype=dtype).alias(c)).cast(dtype)
            for c, dtype in METADATA_COLUMNS.items()
        ]
    )


def interactions_from_listens(
    listens: pl.LazyFrame,
    level: str = "artist",
    keep_events: bool = True,
    source: dict | None = None,
    keys: str | None = None,
) -> Interactions:
    """Reduce canonical listens to an ``Interactions`` at the given level.

    Users and items are indexed in sorted id order, so the result is deterministic whatever
    the order of the input files. ``keep_events`` keeps the individual timestamped listens;
    ``keys``: see ``encode_listens``.
    """
    table = encode_listens(listens, level, keys)
    info = dict(source or {})
    if table.rows_without_item:
        info.setdefault("rows_without_item", table.rows_without_item)
    if table.identity is not None:
        info.setdefault("identity", table.identity)
    return interactions_from_table(table, keep_events=keep_events, source=info)

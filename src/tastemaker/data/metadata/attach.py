"""Join metadata sources to a catalogue and put the result on its ``Interactions``.

Every row is matched to an item by ``matching.match_items`` (id, else unique folded name).
Rows that name a tagger (HetRec) become ``Interactions.tags`` assignments (merged with any
the listening source brought, each (user, item, tag) once), so that models can leave a user's
own tags out of that user's scores; rows without one are summed into ``ItemMetadata.item_tags``.
Facts take the first source that has a value. What each source matched is recorded in
``Interactions.source["metadata"]`` for ``inspect``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions, TagAssignments, Vocabulary
from tastemaker.data.metadata import FACT_COLUMNS, ItemMetadata
from tastemaker.data.metadata.matching import match_items, name_index
from tastemaker.data.metadata.readers import MetadataRows, read_metadata, tag_name
from tastemaker.data.readers import ReaderOptions

# Joins the parts of a row's key; marks a missing part (cleaned text holds neither).
SEPARATOR, NULL_MARK = "\x1f", "\x1e"


def distinct_codes(values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(position of the first row of each distinct value, each row's distinct index), in
    order of first appearance, from integer codes (polars' categorical encoding) in linear
    passes: no hash join of strings, no sort (10 M rows naming 1 M items)."""
    if not isinstance(values.dtype, pl.Enum):  # an Enum's values are codes already
        # A mapping of its own, so codes run 0.. over these values (not the process's others).
        values = values.cast(pl.Categorical(pl.Categories.random()))
    codes = values.to_physical().to_numpy().astype(np.int64)
    if len(codes) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # The first row of each code, then codes renumbered 0.. by that first row.
    first_row = np.full(int(codes.max()) + 1, len(codes), np.int64)
    np.minimum.at(first_row, codes, np.arange(len(codes)))
    first = np.sort(first_row[first_row < len(codes)])
    dense = np.empty(len(first_row), np.int64)
    dense[codes[first]] = np.arange(len(first))
    return first, dense[codes].astype(np.int32)


def _match(
    rows: pl.DataFrame, interactions: Interactions, names: pl.DataFrame
) -> tuple[np.ndarray, int, int]:
    """Item index of each row (-1: none), the number of ambiguous names and of distinct
    items named; the distinct (id, artist, title) are matched once."""
    if rows.height == 0:
        return np.zeros(0, np.int64), 0, 0
    if rows["artist"].null_count() == rows["title"].null_count() == rows.height:
        key = rows["id"].fill_null(NULL_MARK)  # the id is the whole key (a CSV)
    else:
        parts = [pl.col(c).fill_null(NULL_MARK) for c in ("id", "artist", "title")]
        key = rows.select(pl.concat_str(parts, separator=SEPARATOR).alias("key"))["key"]
    first, inverse = distinct_codes(key)
    distinct = rows.select("id", "artist", "title")[first].select(
        # A row without a name (a CSV's item) is named by its id.
        "id",
        pl.coalesce("artist", "id").alias("artist"),
        "title",
    )
    titles = distinct["title"] if interactions.level != "artist" else None
    matched = match_items(
        interactions.item_metadata,
        interactions.level,
        distinct["id"],
        distinct["artist"],
        titles,
        names=names,
    )
    return matched.item[inverse], int(matched.ambiguous.sum()), len(distinct)


def attach_metadata(
    interactions: Interactions,
    paths: Sequence[str | Path],
    format: str | None = None,
    options: ReaderOptions | None = None,
) -> Interactions:
    """``interactions`` with the metadata of ``paths`` (read, matched and merged)."""
    # One source at a time: each is read, matched and reduced before the next is read.
    return attach_rows(interactions, (read_metadata(p, format, options) for p in paths))


def attach_rows(interactions: Interactions, sources: Iterable[MetadataRows]) -> Interactions:
    """``attach_metadata`` for sources read (or being read: any iterable)."""
    n_items = interactions.n_items
    report: list[dict[str, Any]] = []
    anonymous, personal, facts = [], [], []
    names = name_index(interactions.item_metadata, interactions.level)
    for source in sources:
        item, ambiguous, distinct = _match(source.tags, interactions, names)
        # Only what the matrix and the assignments need is kept of each row.
        tags = source.tags.select(
            pl.Series("_item", item, dtype=pl.Int32), "tag", "weight", "genre", "user"
        ).filter(pl.col("_item") >= 0)
        matched_items = int(np.count_nonzero(np.bincount(tags["_item"].to_numpy(), minlength=1)))
        fact_item, _, _ = _match(source.facts, interactions, names)
        facts.append(
            source.facts.with_columns(_item=pl.Series(fact_item)).filter(pl.col("_item") >= 0)
        )
        if tags["user"].null_count() == tags.height:  # no tagger named (MusicBrainz, CSV)
            anonymous.append(_summed(tags, n_items))
        else:
            anonymous.append(_summed(tags.filter(pl.col("user").is_null()), n_items))
            personal.append(tags.filter(pl.col("user").is_not_null()))
        report.append(
            {
                "path": source.path,
                "format": source.format,
                "tag_rows": source.tags.height,
                "tag_rows_matched": tags.height,
                "items_named": distinct,
                "items_matched": matched_items,
                "ambiguous_names": ambiguous,
                "skipped_rows": int(source.stats.get("skipped_rows", 0)),
            }
        )
        del source, tags  # the next source is read with this one's rows freed
    metadata = _item_metadata(anonymous, pl.concat(facts), n_items)
    empty = pl.DataFrame(schema={"_item": pl.Int32, "tag": pl.Utf8, "user": pl.Utf8})
    assignments = _merge_assignments(interactions, pl.concat(personal) if personal else empty)
    info = {**interactions.source, "metadata": report}
    return dataclasses.replace(interactions, metadata=metadata, tags=assignments, source=info)


def _summed(rows: pl.DataFrame, n_items: int) -> tuple[sp.coo_matrix, list[str], np.ndarray]:
    """Items x the rows' own tags (duplicates summed when converted), the tag names, a genre
    flag per tag."""
    if rows.height == 0:
        return sp.coo_matrix((n_items, 0), dtype=np.float32), [], np.zeros(0, bool)
    first, tag_index = distinct_codes(rows["tag"])
    n_tags = len(first)
    matrix = sp.coo_matrix(
        (rows["weight"].to_numpy().astype(np.float32), (rows["_item"].to_numpy(), tag_index)),
        shape=(n_items, n_tags),
    )
    genre = np.bincount(tag_index, weights=rows["genre"].to_numpy(), minlength=n_tags) > 0
    return matrix, rows["tag"].gather(first).to_list(), genre


def _item_metadata(
    parts: list[tuple[sp.coo_matrix, list[str], np.ndarray]], facts: pl.DataFrame, n_items: int
) -> ItemMetadata:
    """The sources' matrices over one sorted vocabulary, summed; the facts per item."""
    vocabulary = sorted({tag for _, tags, _ in parts for tag in tags})
    column = pl.DataFrame(
        {"tag": pl.Series(vocabulary, dtype=pl.Utf8), "column": np.arange(len(vocabulary))}
    )
    genre = np.zeros(len(vocabulary), bool)
    rows, cols = [np.zeros(0, np.int32)], [np.zeros(0, np.int32)]
    weights = [np.zeros(0, np.float32)]
    for part, tags, flags in parts:
        joined = pl.DataFrame({"tag": pl.Series(tags, dtype=pl.Utf8)}).join(
            column, on="tag", maintain_order="left"
        )
        remap = joined["column"].to_numpy().astype(np.int32)
        rows.append(part.row)
        cols.append(remap[part.col] if len(remap) else part.col)
        weights.append(part.data)
        genre[remap] |= flags
    # One conversion for every source (duplicates summed), not one sum of matrices per source.
    matrix = sp.coo_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, len(vocabulary)),
        dtype=np.float32,
    ).tocsr()
    matrix.sort_indices()
    first = (
        facts.select("_item", *FACT_COLUMNS)
        .group_by("_item", maintain_order=True)
        .agg(pl.col(c).drop_nulls().first() for c in FACT_COLUMNS)
    )
    table = pl.DataFrame({"_item": np.arange(n_items, dtype=np.int64)}).join(
        first.with_columns(pl.col("_item").cast(pl.Int64)), on="_item", how="left"
    )
    table = table.sort("_item").select(pl.col(c).cast(t) for c, t in FACT_COLUMNS.items())
    return ItemMetadata(matrix, vocabulary, genre, table)


def _merge_assignments(interactions: Interactions, rows: pl.DataFrame) -> TagAssignments | None:
    """The listening source's assignments plus the personal rows, each (user, item, tag) once."""
    existing = interactions.tags
    if rows.height == 0:
        return existing
    frames = [
        pl.DataFrame(
            {
                "user_index": interactions.users.indices(rows["user"]).astype(np.int32),
                "item": rows["_item"].to_numpy().astype(np.int32),
                "tag": rows["tag"],
            }
        )
    ]
    if existing is not None:
        frames.append(
            pl.DataFrame(
                {
                    "user_index": existing.user,
                    "item": existing.item,
                    "tag": existing.tags.ids.gather(existing.tag),
                }
            ).with_columns(tag_name("tag"))
        )
    merged = pl.concat(frames).unique(maintain_order=True)
    vocab = Vocabulary(merged["tag"].unique().sort())
    return TagAssignments(
        user=merged["user_index"].to_numpy().astype(np.int32),
        item=merged["item"].to_numpy().astype(np.int32),
        tag=vocab.indices(merged["tag"]).astype(np.int32),
        tags=vocab,
    )

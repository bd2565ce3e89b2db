"""Every tag an item has, from every source, in one tag vocabulary: what content models read.

``combined_tags`` merges the anonymous weights of ``ItemMetadata.item_tags`` (MusicBrainz,
CSV) with the per-user assignments of ``Interactions.tags`` (HetRec), keeping the assignments
per user so that a model can still leave a user's own out. ``catalogue_with_assignment_tags``
is the catalogue a fitted model keeps: assignments reduced to each item's top tag counts.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions, TagAssignments, Vocabulary
from tastemaker.data.metadata import ItemMetadata


def combined_tags(interactions: Interactions) -> tuple[TagAssignments, sp.csr_matrix]:
    """(per-user assignments, anonymous item x tag weights), both over one vocabulary: the
    sorted union of both sources' tag names."""
    names: list[str] = []
    meta, tags = interactions.metadata, interactions.tags
    if meta is not None:
        names += meta.tags
    if tags is not None:
        names += tags.tags.to_list()
    vocab = Vocabulary(pl.Series(names, dtype=pl.Utf8).unique().sort())
    n_items, n_tags = interactions.n_items, len(vocab)
    if tags is not None and len(tags.item):
        remap = vocab.indices(tags.tags.ids).astype(np.int32)
        assignments = TagAssignments(tags.user, tags.item, remap[tags.tag], vocab)
    else:
        empty = np.zeros(0, np.int32)
        assignments = TagAssignments(empty, empty, empty, vocab)
    base = sp.csr_matrix((n_items, n_tags), dtype=np.float32)
    if meta is not None and meta.item_tags.nnz:
        m = sp.coo_matrix(meta.item_tags)
        columns = vocab.indices(pl.Series(meta.tags, dtype=pl.Utf8))[m.col]
        base = sp.csr_matrix((m.data, (m.row, columns)), shape=(n_items, n_tags), dtype=np.float32)
        base.sum_duplicates()
    return assignments, base


# Tags per item a model's catalogue keeps of the per-user assignments (heaviest first): enough
# for what the service shows (top three) and for tag search, bounded whatever the data's size.
CATALOGUE_TAGS_PER_ITEM = 20


def catalogue_with_assignment_tags(
    interactions: Interactions, per_item: int = CATALOGUE_TAGS_PER_ITEM
) -> Interactions:
    """``interactions`` as a fitted model carries it (``Recommender.interactions_``): without
    events and per-user assignments (who tagged what is training data, and unbounded), but
    with each item's ``per_item`` most used assignment tags counted into its metadata tags, so
    that the service shows tags whatever model it loads."""
    tags = interactions.tags
    lean = dataclasses.replace(interactions, events=None, tags=None, friends=None)
    if tags is None or not len(tags.item):
        return lean
    n_items = interactions.n_items
    counts = tags.item_tag_matrix(n_items).tocoo()
    kept = (
        pl.DataFrame(
            {
                "item": counts.row.astype(np.int64),
                "tag": tags.tags.ids.gather(counts.col),
                "weight": counts.data.astype(np.float32),
            }
        )
        .sort(["item", "weight", "tag"], descending=[False, True, False])
        .filter(pl.int_range(pl.len()).over("item") < per_item)
    )
    meta = interactions.metadata or ItemMetadata.empty(n_items)
    vocabulary = pl.concat([pl.Series(meta.tags, dtype=pl.Utf8), kept["tag"]]).unique().sort()
    vocab = Vocabulary(vocabulary)
    own = sp.coo_matrix(meta.item_tags)
    rows = np.concatenate([own.row, kept["item"].to_numpy()])
    columns = np.concatenate(
        [
            vocab.indices(pl.Series(meta.tags, dtype=pl.Utf8))[own.col],
            vocab.indices(kept["tag"]),
        ]
    )
    weights = np.concatenate([own.data, kept["weight"].to_numpy()]).astype(np.float32)
    matrix = sp.csr_matrix((weights, (rows, columns)), shape=(n_items, len(vocab)))
    matrix.sum_duplicates()
    matrix.sort_indices()
    genre = np.zeros(len(vocab), bool)
    if len(meta.tags):
        genre[vocab.indices(pl.Series(meta.tags, dtype=pl.Utf8))] = meta.genre
    merged = ItemMetadata(matrix, vocabulary.to_list(), genre, meta.facts)
    return dataclasses.replace(lean, metadata=merged)

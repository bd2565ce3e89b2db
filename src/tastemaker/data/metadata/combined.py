"""Every tag an item has, from every source, in one tag vocabulary: what content models read.

``combined_tags`` merges the anonymous weights of ``ItemMetadata.item_tags`` (MusicBrainz,
CSV) with the per-user assignments of ``Interactions.tags`` (HetRec), keeping the assignments
per user so that a model can still leave a user's own out.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions, TagAssignments, Vocabulary


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

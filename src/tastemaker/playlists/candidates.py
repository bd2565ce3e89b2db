"""Candidate artists for a personal playlist: the listener's own, ranked, and new ones.

Exactly (``exact_known_and_new``): the model scores the whole catalogue once and both pools
are cut from that row. On a large catalogue that dense row is most of a playlist's cost, so a
``Library`` given an approximate index (``ItemSearch``: the service's, or ``TieredSearch``
built here over ``models.ann.build_tiers``) ranks the artists the listener knows exactly from
the item vectors (a few hundred dot products) and asks the index for the best new ones
(``indexed_known_and_new``). Both return the same kind of lists, best first, ties to the
lower item index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from tastemaker.models.ann import IndexSettings, build_tiers, search_tiers
from tastemaker.models.base import FactorModel
from tastemaker.ranking import mask_columns, mask_rows, top_n

if TYPE_CHECKING:
    from tastemaker.playlists.library import Library, Listener

Ranked = tuple[np.ndarray, np.ndarray]  # item indices, their scores; best first
# The index over-fetches one item per excluded one: past this many (a listener of thousands
# of artists) a dense scoring is no slower, as for the service's own lists (MAX_ANN_FETCH).
MAX_INDEX_FETCH = 4096


class ItemSearch(Protocol):
    """An approximate top-n over a factor model's item vectors (the service's index is one)."""

    def search(self, query: np.ndarray, heard: np.ndarray, n: int) -> Ranked:
        """Top-n items for one query vector, none of ``heard``, padded with -1 / -inf."""
        ...


class TieredSearch:
    """The service's norm-ranged index (``build_tiers``), for a ``Library`` given none."""

    def __init__(self, model: FactorModel, settings: IndexSettings | None = None) -> None:
        settings = settings or IndexSettings()
        self.tiers = build_tiers(model, settings.head_items, settings.hnsw_m,
                                 settings.ef_construction, settings.threads)  # fmt: skip
        if self.tiers.tail is not None:
            self.tiers.tail.hnsw.efSearch = settings.ef_search

    def search(self, query: np.ndarray, heard: np.ndarray, n: int) -> Ranked:
        # faiss only for the approximate path (loaded by build_tiers already).
        import faiss

        faiss.omp_set_num_threads(1)  # per calling thread: a request searches on its own
        return search_tiers(self.tiers, query, heard, n)


def known_and_new(library: Library, listener: Listener, n: int) -> tuple[Ranked, Ranked]:
    """The model's top ``n`` among the artists the listener has played, and among those they
    never played; through the library's index where it has one."""
    if library.search is not None and n + len(listener.history.indices) <= MAX_INDEX_FETCH:
        return indexed_known_and_new(library, listener, n)
    return exact_known_and_new(library, listener, n)


def exact_known_and_new(library: Library, listener: Listener, n: int) -> tuple[Ranked, Ranked]:
    """Both pools from one dense scoring of the catalogue (half the cost of two ``recommend``
    calls)."""
    model = library.model
    if listener.user is not None:
        scores = model.score(np.asarray([listener.user]))
    else:
        scores = model.score_history(listener.history)
    known = library.items_of_artists(listener.known)
    known_scores = np.full_like(scores, -np.inf)
    known_scores[:, known] = scores[:, known]
    mask_rows(scores, listener.history)
    mask_columns(scores, known)
    out = []
    for block in (known_scores, scores):
        ids, best = top_n(block, n)
        keep = ids[0] >= 0
        out.append((ids[0][keep], best[0][keep]))
    return out[0], out[1]


def indexed_known_and_new(library: Library, listener: Listener, n: int) -> tuple[Ranked, Ranked]:
    """Known artists scored exactly from the item vectors; new ones from the index, which
    leaves out every item of a known artist (the heard items among them)."""
    if library.search is None or library.item_vectors is None:
        raise TypeError("this library has no index to search")
    query = library.query_vector(listener)
    known = library.items_of_artists(listener.known)
    scores = library.item_vectors[known] @ query
    order = np.lexsort((known, -scores))[:n]
    ids, best = library.search.search(query, known, n)
    keep = ids >= 0
    return (known[order], scores[order].astype(np.float32)), (ids[keep], best[keep])

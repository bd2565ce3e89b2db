"""EASE's sparse approximate form, for catalogues too large for the dense inverse.

Column ``j`` of EASE's weights is a ridge regression of item ``j``'s column on all the other
items: ``B[-j, j] = (G[-j, -j] + lambda I)^-1 G[-j, j]`` with ``G = X'X`` (the closed form
``-P[:, j] / P[j, j]`` of Steck 2019 is the same thing). Here the regressors are restricted to
item ``j``'s ``k`` nearest items (shrunk cosine, computed in bounded blocks by
``knn.shrunk_cosine_neighbours``), so each column is a ``k x k`` solve on exact Gram entries
and the weights have ``k`` non-zeros per column; with every item as a neighbour it is exact
EASE. This is the neighbourhood-restricted regression of SLIM-style models (Ning & Karypis
2011) with EASE's L2 penalty and no constraints.

Items are solved in groups that share neighbours (an unsolved item with its unsolved
neighbours), so the dense Gram block each group needs stays a few hundred items wide.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tastemaker.models.base import single_blas_thread
from tastemaker.models.knn import shrunk_cosine_neighbours

# Items solved together: one stacked solve of GROUP x k x k float32 (32 x 100 x 100: 1.3 MB).
# CPU time barely moves between 16 and 64 (50,000 synthetic artists: 15.9-18.5 s).
GROUP = 32
# Shrinkage of the cosine that picks each item's neighbours: pairs resting on a handful of
# shared listeners rank lower (HetRec 2K: 10 gives 0.2245 NDCG@10 at k = 100, 0 gives 0.2239).
CANDIDATE_SHRINKAGE = 10.0

_console = Console(stderr=True)


def solve_groups(neighbours: sp.csr_matrix, size: int = GROUP) -> Iterator[np.ndarray]:
    """Items in groups of at most ``size``: an unsolved item, its unsolved neighbours, then
    theirs, until the group is full.

    Neighbours of one item mostly share their own neighbours, so a group's union of
    neighbourhoods stays small; every item lands in exactly one group.
    """
    done = np.zeros(neighbours.shape[0], dtype=bool)
    indptr, indices = neighbours.indptr, neighbours.indices
    for item in range(neighbours.shape[0]):
        if done[item]:
            continue
        done[item] = True
        members, frontier, count = [np.asarray([item])], np.asarray([item]), 1
        while count < size and len(frontier):
            near = np.concatenate([indices[indptr[i] : indptr[i + 1]] for i in frontier])
            fresh = near[~done[near]]
            fresh = fresh[np.sort(np.unique(fresh, return_index=True)[1])][: size - count]
            done[fresh] = True
            members.append(fresh)
            frontier, count = fresh, count + len(fresh)
        yield np.concatenate(members).astype(np.int64)


def _padded_neighbours(neighbours: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
    """``(len(items), k)`` neighbour indices of each item, padded with -1."""
    rows = neighbours[items]
    lengths = np.diff(rows.indptr)
    out = np.full((len(items), max(int(lengths.max(initial=0)), 1)), -1, np.int64)
    position = np.arange(rows.nnz) - np.repeat(rows.indptr[:-1], lengths)
    out[np.repeat(np.arange(len(items)), lengths), position] = rows.indices
    return out


def _solve_group(
    columns: sp.csc_matrix, items: np.ndarray, near: np.ndarray, regularization: float
) -> np.ndarray:
    """Ridge weights ``(len(items), k)``: column ``items[g]`` on its neighbours ``near[g]``."""
    valid = near >= 0
    union, inverse = np.unique(np.concatenate([items, near[valid]]), return_inverse=True)
    local = np.zeros_like(near)
    local[valid] = inverse[len(items) :]
    block = columns[:, union]
    gram = (block.T @ block).toarray().astype(np.float32, copy=False)
    systems = gram[local[:, :, None], local[:, None, :]]
    systems *= valid[:, :, None] & valid[:, None, :]
    diagonal = np.arange(near.shape[1])
    # Padding solves 1 * b = 0: a zero weight that is dropped afterwards.
    systems[:, diagonal, diagonal] += np.where(valid, np.float32(regularization), 1.0)
    targets = gram[local, inverse[: len(items), None]] * valid
    return np.linalg.solve(systems, targets[:, :, None])[:, :, 0]


@contextlib.contextmanager
def _group_progress(total: int):
    progress = Progress(
        TextColumn("[bold]EASE (sparse)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console,
        transient=True,
        disable=not _console.is_terminal,
    )
    with progress:
        task = progress.add_task("items", total=total)
        yield lambda n: progress.update(task, advance=n)


def sparse_ease_weights(
    columns: sp.spmatrix, regularization: float, neighbours: int
) -> sp.csr_matrix:
    """Items x items CSR: ``W[i, j]`` is how much item i predicts item j (``k`` per column).

    ``columns`` is the weighted users x items matrix of the items to model.
    """
    x = sp.csr_matrix(columns, dtype=np.float32)
    n_items = x.shape[1]
    candidates = shrunk_cosine_neighbours(x, int(neighbours), CANDIDATE_SHRINKAGE)
    by_column = sp.csc_matrix(x)
    sources, targets, values = [], [], []
    # Small stacked solves: one BLAS thread (threads fighting over two cores are ~20x slower).
    with _group_progress(n_items) as advance, single_blas_thread():
        for items in solve_groups(candidates):
            near = _padded_neighbours(candidates, items)
            weights = _solve_group(by_column, items, near, regularization)
            keep = (near >= 0) & (weights != 0)
            sources.append(near[keep])
            targets.append(np.broadcast_to(items[:, None], near.shape)[keep])
            values.append(weights[keep].astype(np.float32))
            advance(len(items))
    if not sources:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    result = sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(sources), np.concatenate(targets))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    result.sort_indices()
    return result

"""Top-n selection and masks over score matrices: the one place every layer ranks items.

Models, evaluation, tuning, the hybrid, serving and playlists all turn dense score rows into
ranked item lists here, so that ties, padding and masking behave the same everywhere.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n columns per row, best first; ``-inf`` scores are padded as index -1.

    Ties are broken by the lower item index so that results are reproducible.
    """
    rows, n_items = scores.shape
    n_eff = min(n, n_items)
    if n_eff <= 0:
        return np.full((rows, n), -1, np.int64), np.full((rows, n), -np.inf, np.float32)
    if n_eff < n_items:
        part = np.argpartition(-scores, n_eff - 1, axis=1)[:, :n_eff]
    else:
        part = np.tile(np.arange(n_items), (rows, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    best = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    ids[~np.isfinite(best)] = -1
    if n_eff < n:
        ids = np.pad(ids, ((0, 0), (0, n - n_eff)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, n - n_eff)), constant_values=-np.inf)
    return ids, best


def mask_rows(scores: np.ndarray, rows: sp.csr_matrix) -> None:
    """Set the scores of the items present in each CSR row to ``-inf`` (in place)."""
    r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    scores[r, rows.indices] = -np.inf


def restrict_columns(scores: np.ndarray, items: np.ndarray) -> None:
    """Keep only the scores of the columns in ``items`` (a candidate set); the rest become
    ``-inf`` (in place)."""
    keep = np.zeros(scores.shape[1], dtype=bool)
    keep[items] = True
    scores[:, ~keep] = -np.inf


def mask_columns(scores: np.ndarray, items: np.ndarray) -> None:
    """Set the scores of the columns in ``items`` to ``-inf`` for every row (in place)."""
    scores[:, items] = -np.inf

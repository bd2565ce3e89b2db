"""The original study's classification view, shown beside the ranking metrics, never instead.

The study thresholded predictions on the whole user x item matrix and reported 99.8 %
accuracy. On a matrix that is 99.7 % zeros, "always predict no" scores about as well; ranking
metrics on held-out data are what tell models apart. This module reproduces that view honestly:

- positives are the held-out test items of each test user; negatives are items the user never
  listened to, each drawn with probability ``ratio * |test| / |unheard|`` (so about ``ratio``
  negatives per positive: 1:1 and 1:100 by default);
- a model score becomes a probability through a documented monotone map: first the item's
  *normalised rank* among the user's candidate items (share of non-history items scoring below
  it, ties counting one half -- raw scores are not comparable across users), then a logistic
  (Platt) fit ``p = 1 / (1 + exp(-(a * rank + b)))`` of that rank to the labels, cross-fitted
  over two halves of the test users (each half is scored by the map fitted on the other), per
  ratio, since the prior differs;
- reported per ratio: accuracy at p >= 0.5, log loss, precision, recall, ROC AUC, the realised
  ratio, the accuracy of "always predict no" on the same pairs, and ROC curve points;
- plus the accuracy of "always predict no" on the full matrix of the test users' candidate
  cells (the 99.7 %-zeros trap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from tastemaker.evaluation.metrics import batch_rows, count_below_many, score_users
from tastemaker.evaluation.splits import Split
from tastemaker.models.base import Recommender

RATIOS = (1, 100)
EPS = 1e-15
ROC_POINTS = 200
PLATT_SAMPLE = 200_000


def _sorted_candidates(scores: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
    """Each row's scores sorted ascending, history items (NaN) last."""
    hist_rows = np.repeat(np.arange(scores.shape[0]), np.diff(history.indptr))
    candidates = scores.astype(np.float32, copy=True)
    candidates[hist_rows, history.indices] = np.nan
    candidates.sort(axis=1)
    return candidates


def _normalised_ranks(
    scores: np.ndarray,
    candidates: np.ndarray,
    history: sp.csr_matrix,
    rows: np.ndarray,
    cols: np.ndarray,
) -> np.ndarray:
    """Share of each user's candidate (non-history) items scoring below the given cells."""
    width = scores.shape[1]
    values = scores[rows, cols].astype(np.float32)
    below, not_above = count_below_many(candidates, rows, values)
    # NaN (history) entries sort after every finite value, so they are never counted.
    # The cell itself is a candidate: leave it out of its own count.
    n_candidates = width - np.diff(history.indptr)
    others = np.maximum(n_candidates[rows] - 1, 1)
    return (below + 0.5 * (not_above - below - 1)) / others


def _sample_pairs(
    split: Split, users: np.ndarray, ratio: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row in block, item, label) pairs: every test item plus ~ratio unheard items each."""
    history = split.history(users)
    test = split.test[users]
    n_items = test.shape[1]
    heard = np.zeros((len(users), n_items), bool)
    for m in (history, test):
        heard[np.repeat(np.arange(len(users)), np.diff(m.indptr)), m.indices] = True
    unheard = n_items - heard.sum(axis=1)
    want = ratio * np.diff(test.indptr)
    probability = np.minimum(want / np.maximum(unheard, 1), 1.0)
    draw = (rng.random((len(users), n_items), dtype=np.float32) < probability[:, None]) & ~heard
    neg_rows, neg_cols = np.nonzero(draw)
    pos_rows = np.repeat(np.arange(len(users)), np.diff(test.indptr))
    rows = np.concatenate([pos_rows, neg_rows])
    cols = np.concatenate([test.indices.astype(np.int64), neg_cols])
    labels = np.concatenate([np.ones(len(pos_rows)), np.zeros(len(neg_rows))])
    return rows, cols, labels


def _fit_platt(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Logistic regression of labels on one feature (maximum likelihood, Newton's method with
    a little ridge for separable data); two parameters need no more than ``PLATT_SAMPLE``
    points, drawn at random."""
    if len(x) > PLATT_SAMPLE:
        pick = np.random.default_rng(seed).choice(len(x), PLATT_SAMPLE, replace=False)
        x, y = x[pick], y[pick]
    if len(np.unique(y)) < 2:
        return 0.0, float(np.log((y.mean() + EPS) / (1 - y.mean() + EPS)))
    design = np.column_stack([x, np.ones_like(x)])
    prior = y.mean()
    theta = np.array([0.0, np.log(prior / (1 - prior))])
    for _ in range(50):
        p = expit(design @ theta)  # the logistic, without overflow for large |x|
        gradient = design.T @ (p - y) + 1e-6 * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(theta[0]), float(theta[1])


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """False- and true-positive rates over all thresholds, and the area (ties count half)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    distinct = np.flatnonzero(np.diff(s)) if len(s) else np.empty(0, np.int64)
    ends = np.concatenate([distinct, [len(s) - 1]]) if len(s) else np.empty(0, np.int64)
    tp = np.cumsum(y)[ends]
    fp = np.cumsum(1 - y)[ends]
    pos, neg = max(y.sum(), 1), max((1 - y).sum(), 1)
    tpr = np.concatenate([[0.0], tp / pos])
    fpr = np.concatenate([[0.0], fp / neg])
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def _thin(fpr: np.ndarray, tpr: np.ndarray, points: int = ROC_POINTS) -> tuple[list, list]:
    if len(fpr) > points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, points).round().astype(np.int64))
        fpr, tpr = fpr[keep], tpr[keep]
    return [round(float(v), 5) for v in fpr], [round(float(v), 5) for v in tpr]


def classification_view(
    model: Recommender,
    split: Split,
    ratios: Sequence[int] = RATIOS,
    seed: int = 0,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Accuracy, log loss, precision, recall and ROC AUC at each negative ratio (see module)."""
    users = split.test_users
    rng = np.random.default_rng([seed, 7])
    half = rng.random(len(users)) < 0.5  # the two halves of the cross-fit
    # per ratio: rank feature, label, half
    collected: dict[int, tuple[list, list, list]] = {r: ([], [], []) for r in ratios}
    step = batch_rows(split.train.n_items, batch_size)
    full_cells = full_positives = 0
    for start in range(0, len(users), step):
        block = users[start : start + step]
        scores = score_users(model, split, block)
        history = split.history(block)
        full_cells += int((split.train.n_items - np.diff(history.indptr)).sum())
        full_positives += int(split.test[block].nnz)
        candidates = _sorted_candidates(scores, history)
        for ratio in ratios:
            rows, cols, labels = _sample_pairs(split, block, ratio, rng)
            feature = _normalised_ranks(scores, candidates, history, rows, cols)
            collected[ratio][0].append(feature)
            collected[ratio][1].append(labels)
            collected[ratio][2].append(half[start + rows])
        if progress:
            progress(len(block))
    out: dict[str, Any] = {
        "always_no_accuracy_full_matrix": 1.0 - full_positives / max(full_cells, 1),
        "probability_map": "logistic fit of the per-user normalised rank, cross-fitted "
        "over two halves of the test users",
    }
    for ratio in ratios:
        x = np.concatenate(collected[ratio][0]) if collected[ratio][0] else np.empty(0)
        y = np.concatenate(collected[ratio][1]) if collected[ratio][1] else np.empty(0)
        h = np.concatenate(collected[ratio][2]) if collected[ratio][2] else np.empty(0, bool)
        out[f"1:{ratio}"] = _summarise(x, y, h)
    return out


def _summarise(x: np.ndarray, y: np.ndarray, half: np.ndarray) -> dict[str, Any]:
    p = np.empty_like(x)
    for part in (True, False):
        fit_on = half != part
        a, b = _fit_platt(x[fit_on], y[fit_on]) if fit_on.any() else (0.0, 0.0)
        p[half == part] = expit(a * x[half == part] + b)
    predicted = p >= 0.5
    positives = y == 1
    tp = int((predicted & positives).sum())
    fpr, tpr, auc = roc_curve(y, x)
    clipped = np.clip(p, EPS, 1 - EPS)
    n = max(len(y), 1)
    roc_fpr, roc_tpr = _thin(fpr, tpr)
    return {
        "positives": int(positives.sum()),
        "negatives": int((~positives).sum()),
        "accuracy": float((predicted == positives).sum() / n),
        "always_no_accuracy": float((~positives).sum() / n),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
        if len(y)
        else float("nan"),
        "precision": tp / max(int(predicted.sum()), 1),
        "recall": tp / max(int(positives.sum()), 1),
        "roc_auc": auc,
        "roc": {"fpr": roc_fpr, "tpr": roc_tpr},
    }

"""One trial's work: validation folds carved from training, the model fitted and scored on
each, and the pruning monitor that reports checkpoint scores to Optuna."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tastemaker.data.interactions import Interactions
from tastemaker.errors import UsageError
from tastemaker.evaluation.metrics import (
    batch_rows,
    hits_of,
    per_user_metrics,
    ranking_metrics,
    score_users,
)
from tastemaker.evaluation.splits import random_split, user_kfold
from tastemaker.models import create_model, model_class
from tastemaker.ranking import mask_rows, top_n
from tastemaker.tuning.config import parse_metric

# Iterations (or epochs) at which the first validation fold is scored for pruning.
CHECKPOINTS = frozenset(2**i for i in range(2, 16))


# Checkpoint scores (for pruning only) use at most this many validation users, a fixed sample:
# scoring every user at every checkpoint would cost more than pruning saves.
PRUNING_USERS = 500


def validation_folds(train: Interactions, folds: int = 1, seed: int = 0, repeats: int = 1) -> list:
    """Validation splits carved from ``train`` (the outer training part) only.

    ``folds == 1``: ``repeats`` independent ``random_split`` splits (20 % of each user's items;
    seeds ``seed + 1``, ``seed + 1001``, ...: never the outer split's seed 0, and spaced so
    that one ``seed``'s repeats are not another's first split); ``folds >= 2``: user K-fold
    inside training.
    """
    if folds == 1:
        return [
            random_split(train, test_fraction=0.2, min_items=5, seed=seed + 1 + 1000 * repeat)
            for repeat in range(repeats)
        ]
    return user_kfold(train, folds=folds, test_fraction=0.2, min_items=5, seed=seed + 1)


def score_metric(model: Any, split: Any, metric: str, users: np.ndarray | None = None) -> float:
    """One metric of a fitted model on a split's held-out part (over ``users``, default all
    test users).

    Per-user metrics use the evaluation module's top-k building blocks directly (no AUC sort
    of every score row, which is most of the cost); AUC goes through ``ranking_metrics``.
    """
    name, k = parse_metric(metric)
    if name == "auc" or split.sampled:
        key = "auc" if name == "auc" else metric
        return float(ranking_metrics(model, split, ks=(k,), users=users)[key])
    users = split.test_users if users is None else users
    if len(users) == 0:
        raise UsageError("the validation split has no users with held-out items")
    total = 0.0
    step = batch_rows(split.train.n_items)
    for start in range(0, len(users), step):
        block = users[start : start + step]
        scores = score_users(model, split, block)
        mask_rows(scores, split.history(block))
        top, _ = top_n(scores, k)
        relevant = split.test[block]
        values = per_user_metrics(hits_of(top, relevant), np.diff(relevant.indptr), k)[name]
        total += float(values.sum())
    return total / len(users)


class PruningMonitor:
    """Fit callback: scores the first fold at checkpoint iterations and asks Optuna to prune."""

    def __init__(self, trial: Any, split: Any, metric: str) -> None:
        self.trial = trial
        self.split = split
        self.metric = metric
        self.pruned_at: int | None = None
        self.last_iteration = 0
        users = split.test_users
        if len(users) > PRUNING_USERS:
            rng = np.random.default_rng(len(users))
            users = np.sort(rng.choice(users, PRUNING_USERS, replace=False))
        self.users = users

    def __call__(self, iteration: int, model: Any) -> bool:
        self.last_iteration = iteration
        if iteration not in CHECKPOINTS:
            return False
        self.trial.report(score_metric(model, self.split, self.metric, self.users), iteration)
        if self.trial.should_prune():
            self.pruned_at = iteration
            return True  # the model stops training; the objective raises TrialPruned
        return False


def with_seed(model: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """``params`` plus ``seed`` when the model takes one and the space did not set it."""
    if "seed" in model_class(model).param_names() and "seed" not in params:
        return {**params, "seed": seed}
    return dict(params)


def evaluate_params(
    model: str,
    params: dict[str, Any],
    folds: Sequence[Any],
    metric: str,
    trial: Any = None,
) -> list[float]:
    """Fit ``model(**params)`` on each fold's training part; the metric per fold.

    With an Optuna ``trial``, the first fold reports intermediate values at checkpoint
    iterations and raises ``optuna.TrialPruned`` when the pruner says so.
    """
    import optuna

    values = []
    for index, split in enumerate(folds):
        recommender = create_model(model, **params)
        monitor = PruningMonitor(trial, split, metric) if trial is not None and index == 0 else None
        recommender.fit(split.train, callback=monitor)
        if monitor is not None and monitor.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at iteration {monitor.pruned_at}")
        value = score_metric(recommender, split, metric)
        if monitor is not None and monitor.last_iteration not in CHECKPOINTS | {0}:
            trial.report(value, monitor.last_iteration)  # helps prune others at this step
        if not math.isfinite(value):
            raise ValueError(f"the metric came out as {value}")
        values.append(value)
    return values

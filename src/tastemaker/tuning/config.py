"""What a search is: the model, its space, the metric, the budget (``SearchConfig``)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from tastemaker.errors import UsageError
from tastemaker.models import model_class
from tastemaker.tuning.spaces import SearchSpace

SEARCHES = ("optuna", "grid", "random")


DEFAULT_TRIALS = 50


# Random validation splits averaged per trial (with folds == 1). On HetRec 2K one split's
# NDCG@10 has a standard error of ~0.004 while a search's best trials lie within ~0.002 of
# each other, so which one wins depends on the items the split held out; two splits halve
# that variance for twice the fitting.
DEFAULT_REPEATS = 2


# Metrics a search may maximise: per-user ranking quality (``name@k``) or full-ranking AUC.
TUNABLE_METRICS = ("ndcg", "recall", "precision", "map", "hit_rate", "mrr")


def parse_metric(metric: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ``"auc"`` -> ``("auc", 10)``. UsageError otherwise."""
    text = metric.strip().lower()
    if text == "auc":
        return "auc", 10
    match = re.fullmatch(r"([a-z_]+)@(\d+)", text)
    if not match or match.group(1) not in TUNABLE_METRICS or int(match.group(2)) < 1:
        raise UsageError(
            f"--metric {metric!r} is not a tunable metric; use NAME@K with NAME one of "
            f"{', '.join(TUNABLE_METRICS)} (e.g. ndcg@10), or auc"
        )
    return match.group(1), int(match.group(2))


@dataclass(frozen=True)
class SearchConfig:
    """What to search, how, and where to keep the study."""

    model: str
    space: SearchSpace
    search: str = "optuna"
    trials: int | None = None  # None: 50 for optuna/random, every point for grid
    metric: str = "ndcg@10"
    folds: int = 1  # 1: inner random split(s); K >= 2: user K-fold inside training
    repeats: int | None = None  # random splits averaged when folds == 1 (None: DEFAULT_REPEATS)
    seed: int = 0
    storage: str | None = None  # an Optuna storage URL (sqlite:///tune.db) or a .db path
    study_name: str | None = None
    timeout: float | None = None  # seconds for the search (the final evaluation comes after)
    n_jobs: int = 1
    threads: int | None = None  # threads per trial (BLAS, OpenMP, torch); None: cores // n_jobs
    prune: bool = True

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise UsageError(f"--search must be one of {', '.join(SEARCHES)}; got {self.search!r}")
        if self.trials is not None and self.trials < 1:
            raise UsageError(f"--trials must be at least 1; got {self.trials}")
        if self.folds < 1:
            raise UsageError(
                f"--folds must be 1 (random validation splits) or K >= 2; got {self.folds}"
            )
        if self.repeats is not None and self.repeats < 1:
            raise UsageError(f"--repeats must be at least 1; got {self.repeats}")
        if self.folds > 1 and (self.repeats or 1) > 1:
            raise UsageError(
                "--repeats applies to the random validation split (--folds 1); K-fold "
                f"already averages {self.folds} folds"
            )
        if self.n_jobs < 1:
            raise UsageError(f"--jobs must be at least 1; got {self.n_jobs}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be at least 1; got {self.threads}")
        if self.timeout is not None and not self.timeout > 0:
            raise UsageError(f"--timeout must be a positive number of seconds; got {self.timeout}")
        parse_metric(self.metric)
        self.space.check_model(self.model, None)
        self.space.check_model(self.model, model_class(self.model).param_names())
        if self.search == "grid":
            self.space.grid_size()  # fails early on floats without a step

    @property
    def metric_name(self) -> str:
        name, k = parse_metric(self.metric)
        return "auc" if name == "auc" else f"{name}@{k}"

    @property
    def validation_repeats(self) -> int:
        """Random validation splits per trial: ``repeats``, else the default (K-fold: 1)."""
        if self.folds > 1:
            return 1
        return self.repeats if self.repeats is not None else DEFAULT_REPEATS

    def threads_per_trial(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.n_jobs)

    def target_trials(self) -> int:
        if self.search == "grid":
            size = self.space.grid_size()
            return min(self.trials or size, size)
        return self.trials or DEFAULT_TRIALS

    def default_study_name(self) -> str:
        """``--study-name``, else MODEL-SEARCH, plus the space's name when it is not the
        model's default space (``als-grid-seed``)."""
        if self.study_name:
            return self.study_name
        suffix = f"-{self.space.name}" if self.space.name not in (None, self.model) else ""
        return f"{self.model}-{self.search}{suffix}"

    def identity(self, data_fingerprint: str) -> dict[str, Any]:
        """What a stored study must match to be resumed by this configuration."""
        return json.loads(
            json.dumps(
                {
                    "model": self.model,
                    "search": self.search,
                    "metric": self.metric_name,
                    "folds": self.folds,
                    "repeats": self.validation_repeats,
                    "seed": self.seed,
                    "space": self.space.to_dict(),
                    "data": data_fingerprint,
                }
            )
        )

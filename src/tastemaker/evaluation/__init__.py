"""Offline evaluation: leak-free splits, vectorised ranking metrics, the classification view
of the original study, the evaluation protocol over several models, and the HTML report."""

from tastemaker.evaluation.metrics import metric_names, ranking_metrics
from tastemaker.evaluation.splits import (
    SPLITS,
    Split,
    leave_last_out,
    make_split,
    make_splits,
    random_split,
    sampled_split,
    temporal_split,
    user_kfold,
)

__all__ = [
    "SPLITS",
    "Split",
    "leave_last_out",
    "make_split",
    "make_splits",
    "metric_names",
    "random_split",
    "ranking_metrics",
    "sampled_split",
    "temporal_split",
    "user_kfold",
]

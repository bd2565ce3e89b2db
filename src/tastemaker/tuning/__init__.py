"""Hyperparameter search: spaces as TOML files, grid / random / Optuna TPE search on validation
carved from the training part, one final look at the test split, and a report.

``tastemaker tune`` (``cli/tune_cmd.py``) is the command; ``tune(interactions, config)`` the
library entry point.
"""

from tastemaker.tuning.config import SEARCHES, SearchConfig
from tastemaker.tuning.search import TuneResult, tune, write_best
from tastemaker.tuning.spaces import SearchSpace, load_space, load_space_text, shipped_spaces

__all__ = [
    "SEARCHES",
    "SearchConfig",
    "SearchSpace",
    "TuneResult",
    "load_space",
    "load_space_text",
    "shipped_spaces",
    "tune",
    "write_best",
]

"""The evaluation protocol: split once, fit every model on the same training data, rank.

``evaluate`` returns a JSON-ready dict::

    {"split": {...}, "k": [10], "data": {...},
     "results": [{"model": "als", "params": {...}, "metrics": {"ndcg@10": ...},
                  "fit_seconds": ..., "evaluate_seconds": ...}, ...],
     "warnings": ["only 2 test users: ..."]}     # only when there is something to warn of

With user K-fold (``folds``) each result's ``metrics`` is the mean over folds, ``std`` the
sample standard deviation and ``folds`` the per-fold metrics. With ``curves=True`` results
also carry precision / recall at several cut-offs and the popularity of recommended items;
with ``classification=True`` the original study's classification view (see
``classification.py``). Models and their hyperparameters come from ``models.registry``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tastemaker.artifacts import atomic_write_json
from tastemaker.data.interactions import Interactions
from tastemaker.errors import UsageError
from tastemaker.evaluation.classification import classification_view
from tastemaker.evaluation.metrics import metric_names, ranking_metrics
from tastemaker.evaluation.splits import Split, make_splits, short_history_split
from tastemaker.models.base import Recommender, recorded_params
from tastemaker.models.registry import ModelFactory, ModelSpec, check_specs, fit_model

CURVE_KS = (1, 2, 5, 10, 20, 50, 100)
# Below this many test users one user's taste moves a metric by a few percent or more: the
# numbers are not worth comparing (a warning in the result, not an error).
MIN_TEST_USERS = 50


# -- the protocol ----------------------------------------------------------------------------


def progress_bar(enabled: bool):
    """The evaluation's rich progress bar, or a no-op context when ``enabled`` is false."""
    if not enabled:
        return nullcontext(None)
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _popularity_profile(train: Interactions, top: np.ndarray) -> dict[str, Any]:
    """How popular (training listeners) the recommended items are, against the catalogue."""
    listeners = np.bincount(train.user_items.indices, minlength=train.n_items)
    recommended = listeners[top[top >= 0]]
    edges = np.unique(np.concatenate([[0], np.geomspace(1, max(listeners.max(), 1) + 1, 25)]))
    edges = np.unique(np.floor(edges)).astype(np.int64)
    return {
        "bin_edges": edges.tolist(),
        "recommended": np.histogram(recommended, edges)[0].tolist(),
        "catalogue": np.histogram(listeners, edges)[0].tolist(),
        "recommended_median_listeners": float(np.median(recommended)) if len(recommended) else 0,
        "catalogue_median_listeners": float(np.median(listeners)),
    }


def evaluate_split(
    spec: ModelSpec,
    split: Split,
    ks: Sequence[int],
    *,
    curves: bool = False,
    classification: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
    model: Recommender | None = None,
    factory: ModelFactory | None = None,
) -> dict[str, Any]:
    """Fit one model on ``split.train`` (unless ``model`` is given fitted) and evaluate it."""
    name, params = spec
    task: Any = None  # a TaskID wherever progress is given
    if progress is not None:
        task = progress.add_task(f"fit {name}", total=None)
    started = time.perf_counter()
    if model is None:
        model = fit_model(name, params, split.train, factory)
    fit_seconds = time.perf_counter() - started
    users = split.test_users
    if progress is not None:
        progress.update(task, description=f"evaluate {name}", total=len(users), completed=0)

    def advance(n: int) -> None:
        if progress is not None:
            progress.advance(task, n)

    started = time.perf_counter()
    all_ks = sorted(set(ks) | (set(CURVE_KS) if curves else set()))
    metrics = ranking_metrics(model, split, ks=all_ks, progress=advance, collect_top=max(ks))
    evaluate_seconds = time.perf_counter() - started
    top = metrics.pop("_top")
    result: dict[str, Any] = {
        "model": name,
        "params": recorded_params(model.get_params()),
        "metrics": {key: metrics[key] for key in metric_names(ks)},
        "fit_seconds": fit_seconds,
        "evaluate_seconds": evaluate_seconds,
    }
    if curves:
        result["curves"] = {
            "k": list(all_ks),
            "precision": [metrics[f"precision@{k}"] for k in all_ks],
            "recall": [metrics[f"recall@{k}"] for k in all_ks],
            "ndcg": [metrics[f"ndcg@{k}"] for k in all_ks],
        }
        result["popularity"] = _popularity_profile(split.train, top)
    if classification:
        if progress is not None:
            progress.update(task, description=f"classify {name}", completed=0)
        result["classification"] = classification_view(model, split, seed=seed, progress=advance)
    if progress is not None:
        progress.remove_task(task)
    return result


def _aggregate(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over folds; curves averaged; classification and the popularity
    profile from the first fold."""
    first = dict(per_fold[0])
    keys = list(first["metrics"])
    values = {k: np.array([fold["metrics"][k] for fold in per_fold]) for k in keys}
    first["metrics"] = {k: float(v.mean()) for k, v in values.items()}
    first["std"] = {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()}
    first["folds"] = [fold["metrics"] for fold in per_fold]
    first["fit_seconds"] = float(np.mean([f["fit_seconds"] for f in per_fold]))
    first["evaluate_seconds"] = float(np.mean([f["evaluate_seconds"] for f in per_fold]))
    if "curves" in first:
        for key in ("precision", "recall", "ndcg"):
            first["curves"][key] = np.mean([f["curves"][key] for f in per_fold], axis=0).tolist()
    return first


def evaluate(
    interactions: Interactions,
    models: Sequence[ModelSpec],
    split: str = "random",
    ks: Sequence[int] = (10,),
    seed: int = 0,
    folds: int | None = None,
    split_params: dict[str, Any] | None = None,
    curves: bool = False,
    classification: bool = False,
    progress: bool = True,
    splits: Sequence[Split] | None = None,
    factory: ModelFactory | None = None,
) -> dict[str, Any]:
    """Split ``interactions`` (or use the given ``splits``), fit and evaluate each model.

    ``models`` is a list of ``(name, params)``; ``split`` a name from ``splits.SPLITS`` with
    ``split_params``; ``folds`` turns on user K-fold. Returns the JSON-ready dict above.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise UsageError(f"cut-offs must be positive integers; got {ks}")
    models = [(name, dict(params)) for name, params in models]
    check_specs(models)  # unknown models or parameters fail before any work
    if splits is None:
        params = {"seed": seed, **(split_params or {})}
        splits = make_splits(interactions, split, folds=folds, **params)
    splits = list(splits)
    for fold in splits:
        if len(fold.test_users) == 0:
            raise UsageError(f"nothing to evaluate: {fold.label}")
    results = []
    with progress_bar(progress) as bar:
        overall = None
        if bar is not None and len(splits) > 1:
            overall = bar.add_task("folds", total=len(splits) * len(models))
        for spec in models:
            per_fold = []
            for index, fold in enumerate(splits):
                per_fold.append(
                    evaluate_split(
                        spec,
                        fold,
                        ks,
                        curves=curves,
                        # An illustration, not a measurement: the first fold shows it.
                        classification=classification and index == 0,
                        seed=seed,
                        progress=bar,
                        factory=factory,
                    )
                )
                if overall is not None:
                    bar.advance(overall)
            results.append(per_fold[0] if len(per_fold) == 1 else _aggregate(per_fold))
    description = splits[0].describe()
    if len(splits) > 1:
        description["params"] = {k: v for k, v in description["params"].items() if k != "fold"}
        description["label"] = (
            f"user {len(splits)}-fold: held-out users folded in from part of their history; "
            "mean and standard deviation over folds"
        )
        description["test_users"] = int(sum(len(s.test_users) for s in splits))
        description["test_items"] = int(sum(s.test.nnz for s in splits))
        description.pop("train_interactions", None)  # differs per fold
    result = {
        "split": description,
        "k": ks,
        "data": data_summary(interactions),
        "results": results,
    }
    warnings = result_warnings(description)
    if warnings:
        result["warnings"] = warnings
    return result


def evaluate_short_histories(
    interactions: Interactions,
    models: Sequence[ModelSpec],
    fold_in_ks: Sequence[int] = (1, 3, 5, 10),
    ks: Sequence[int] = (10,),
    seed: int = 0,
    split_params: dict[str, Any] | None = None,
    progress: bool = True,
    factory: ModelFactory | None = None,
    **options: Any,
) -> dict[str, Any]:
    """One ``short`` split per fold-in size k: the same held-out users and training part for
    every k (each model is fitted once), nested fold-ins. One result row per model and k,
    labelled ``MODEL k=K`` and carrying ``fold_in_k``; ``options`` (curves,
    classification) as for ``evaluate``."""
    fold_in_ks = sorted({int(k) for k in fold_in_ks})
    ks = sorted({int(k) for k in ks})
    if not fold_in_ks:
        raise UsageError("--fold-in-k: give at least one size")
    base = {"seed": seed, **(split_params or {})}
    splits = [short_history_split(interactions, **base, fold_in_k=k) for k in fold_in_ks]
    check_specs(models)
    rows = []
    with progress_bar(progress) as bar:
        for spec in models:
            started = time.perf_counter()
            model = fit_model(*spec, splits[0].train, factory)
            fit_seconds = time.perf_counter() - started
            for size, split in zip(fold_in_ks, splits, strict=True):
                row = evaluate_split(
                    spec, split, ks, seed=seed, progress=bar, model=model, **options
                )
                row["fit_seconds"] = fit_seconds if size == fold_in_ks[0] else 0.0
                rows.append({**row, "fold_in_k": size, "label": f"{spec[0]} k={size}"})
    description = splits[0].describe()
    description["params"]["fold_in_k"] = fold_in_ks
    description["label"] = (
        f"short histories: {base.get('heldout_fraction', 0.2):.0%} of users held out, folded in "
        f"from their first {', '.join(map(str, fold_in_ks))} item(s) (seed {seed}), ranked "
        f"for all their other items; {description['test_users']} test users"
    )
    result = {
        "split": description,
        "k": ks,
        "data": data_summary(interactions),
        "results": rows,
    }
    warnings = result_warnings(description)
    if warnings:
        result["warnings"] = warnings
    return result


def result_warnings(split: dict[str, Any]) -> list[str]:
    """What makes a result unfit to compare models with (the CLI prints these on stderr,
    reports show them): for now, too few test users."""
    users = int(split.get("test_users", 0))
    if users < MIN_TEST_USERS:
        return [
            f"only {users:,} test user{'s' if users != 1 else ''}: with fewer than "
            f"{MIN_TEST_USERS} the metrics are mostly noise; use more data or a larger test share"
        ]
    return []


def data_summary(interactions: Interactions) -> dict[str, Any]:
    """What a result file says about the data it was measured on."""
    return {
        "name": data_name(interactions.source),
        "users": interactions.n_users,
        "items": interactions.n_items,
        "interactions": interactions.nnz,
        "fingerprint": interactions.fingerprint,
        "level": interactions.level,
    }


def data_name(source: dict[str, Any]) -> str:
    """What to call the data in titles: the data set's own name when known, else the name of
    the source it was read from (an ingested directory's own folder, often just "data", says
    nothing), with its format: "hetrec2011-lastfm-2k (hetrec)"."""
    name = source.get("dataset")
    paths = source.get("paths") or []
    if not name and paths:
        name = Path(str(paths[0])).name
        if len(paths) > 1:
            name += f" and {len(paths) - 1} more"
    fmt = source.get("format")
    if not name:
        return str(fmt or "unnamed data")
    return f"{name} ({fmt})" if fmt and fmt != name else name


# The kind a results file (--json) says it is: a later --json may replace it, nothing else.
RESULTS_KIND = "results"


def write_json(result: dict[str, Any], path: str | Path, force: bool = False) -> None:
    """Write an evaluation result atomically; it replaces only a results file tastemaker
    wrote, unless ``force`` (see ``tastemaker.artifacts.check_output``)."""
    atomic_write_json(path, result, RESULTS_KIND, force=force)

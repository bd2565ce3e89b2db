"""The original study, redone: its ALS configurations beside the corrected pipeline.

Everything runs on one split (the default ``random`` protocol), so the rows are comparable:

- ``original``: ALS with 8 factors, regularization 0.2, 75 iterations, alpha 10 on RAW play
  counts (``weighting="counts"``) -- confidence ``1 + 10 * plays`` with plays up to 350,000;
- ``orientation``: the same, with the user x item matrix handed to code that expects item x
  user (implicit's API before 0.5): the factors come out swapped, so user ``u`` is scored with
  the factors learned for item ``u`` against those learned for the users;
- the study's grid (factors 8-15, regularization 0.15-0.3, iterations 60-85, alpha 10), here
  its corners (2 x 2 x 2 = 8 configurations, ``GRID``) selected by AUC *on the test split* as
  the study did, and -- the correct way -- by AUC on a validation split carved from training;
- the study's neural network, trained as it was (``ncf-seed``: binary classification over
  the whole matrix), where installed;
- ``corrected``: the registered models with their defaults (ALS, EASE, item-KNN, RP3beta and,
  where installed, Mult-VAE and NeuMF), on the same split;
- beside the ranking metrics, the study's classification view (accuracy at 1:1 and 1:100,
  and the accuracy of "always no" on the full matrix).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions, empty_metadata
from tastemaker.errors import UsageError
from tastemaker.evaluation.metrics import ranking_metrics
from tastemaker.evaluation.protocol import data_summary, evaluate_split, progress_bar
from tastemaker.evaluation.splits import Split, random_split
from tastemaker.models import create_model, model_class
from tastemaker.models.base import Recommender

ORIGINAL = {
    "factors": 8,
    "regularization": 0.2,
    "iterations": 75,
    "alpha": 10.0,
    "weighting": "counts",
}
GRID: dict[str, Sequence] = {
    "factors": (8, 15),
    "regularization": (0.15, 0.3),
    "iterations": (60, 85),
}
# The field's strong baselines beside the study's two families: RP3beta (random walk) and
# Mult-VAE (the neural model the reproducibility studies found strongest) next to ALS, EASE
# (exact here; its sparse form takes over above 15,000 kept items), item-KNN and NeuMF.
CORRECTED = ("als", "ease", "itemknn", "rp3beta", "multvae", "neumf")
# The study's own network (another part of tastemaker reproduces it as ``ncf-seed``).
ORIGINAL_NCF = "ncf-seed"


class SwappedOrientation(Recommender):
    """ALS fitted on the transposed matrix and read as if it were not (the orientation trap).

    Scores user ``u`` with the model's "user" ``u`` -- really item ``u`` -- against its
    "items" -- really the users; columns beyond the number of users cannot be scored (-inf).
    For evaluation only: never registered, never saved.
    """

    name = "als-swapped-orientation"

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params = params

    def _fit(self, interactions: Interactions) -> None:
        flipped = Interactions(
            interactions.user_items.T.tocsr(),
            interactions.items,
            interactions.users,
            empty_metadata(interactions.users.to_list()),
            level=interactions.level,
        )
        self.inner_ = create_model("als", **(self.params or {})).fit(flipped)
        self.n_rows_ = flipped.n_users

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        if users is None:
            raise UsageError("the swapped-orientation model has no fold-in")
        out = np.full((len(users), self.n_items_), -np.inf, np.float32)
        valid = users < self.n_rows_
        if valid.any():
            scores = self.inner_.score(users[valid])  # columns are really users
            width = min(scores.shape[1], self.n_items_)
            out[np.flatnonzero(valid), :width] = scores[:, :width]
        return out

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.zeros((len(items), self.n_items_), np.float32)


def _available(name: str) -> bool:
    try:
        model_class(name)
    except UsageError:
        return False
    return True


def grid_configurations(grid: dict[str, Sequence] | None = None) -> list[dict[str, Any]]:
    grid = grid or GRID
    keys = list(grid)
    return [
        {**ORIGINAL, **dict(zip(keys, values, strict=True))}
        for values in itertools.product(*(grid[k] for k in keys))
    ]


def _auc(model: Recommender, split: Split) -> tuple[float, float]:
    metrics = ranking_metrics(model, split, ks=(10,))
    return metrics["auc"], metrics["ndcg@10"]


def run_grid(
    split: Split, seed: int = 0, grid: dict[str, Sequence] | None = None, progress=None
) -> tuple[list[dict[str, Any]], list[Recommender]]:
    """Each grid point: AUC and NDCG@10 on the test split (fit on training), and AUC on a
    validation split carved from training (fit on what remains). Also returns the models
    fitted on training, in grid order."""
    inner = random_split(split.train, seed=seed + 1)
    task = progress.add_task("grid", total=None) if progress is not None else None
    configs = grid_configurations(grid)
    if progress is not None:
        progress.update(task, total=len(configs))
    rows, models = [], []
    for params in configs:
        on_train = _timed_fit(create_model("als", **params), split.train)
        models.append(on_train)
        test_auc, test_ndcg = _auc(on_train, split)
        on_inner = create_model("als", **params).fit(inner.train)
        valid_auc, valid_ndcg = _auc(on_inner, inner)
        rows.append(
            {
                "params": params,
                "auc": test_auc,
                "ndcg": test_ndcg,
                "validation_auc": valid_auc,
                "validation_ndcg": valid_ndcg,
                "fit_seconds": on_train.fit_seconds_,
            }
        )
        if progress is not None:
            progress.advance(task)
    if progress is not None:
        progress.remove_task(task)
    return rows, models


def _describe(params: dict[str, Any]) -> str:
    return (
        f"{params['factors']} factors, reg {params['regularization']}, "
        f"{params['iterations']} it, alpha {params['alpha']:g}, {params['weighting']}"
    )


def replicate(
    interactions: Interactions,
    corrected: Sequence[str] = CORRECTED,
    grid: bool = True,
    ks: Sequence[int] = (10,),
    seed: int = 0,
    classification: bool = True,
    curves: bool = False,
    progress: bool = True,
    grid_values: dict[str, Sequence] | None = None,
    orientation: bool = True,
    original_ncf: bool = True,
) -> dict[str, Any]:
    """Run the original configurations and the corrected pipeline on one random split.

    Returns the JSON shape of ``protocol.evaluate`` plus, per result, ``label`` and ``group``
    (``original`` / ``corrected``), and ``grid`` / ``selection`` when the grid ran.
    Corrected models that are not installed are skipped with a note.
    """
    ks = sorted({int(k) for k in ks})
    split = random_split(interactions, seed=seed)
    runnable, notes = _runnable(corrected)
    if original_ncf and not _available(ORIGINAL_NCF):
        notes.append(f"model {ORIGINAL_NCF!r} (the study's network) is not available; skipped")
        original_ncf = False
    results = []
    grid_rows: list[dict[str, Any]] = []
    selection: dict[str, Any] = {}
    options = {"curves": curves, "classification": classification, "seed": seed}
    with progress_bar(progress) as bar:

        def run(label, group, spec, model=None):
            row = evaluate_split(spec, split, ks, progress=bar, model=model, **options)
            row.update(label=label, group=group)
            results.append(row)
            return row

        run(f"ALS original ({_describe(ORIGINAL)})", "original", ("als", dict(ORIGINAL)))
        if orientation:
            trap = _timed_fit(SwappedOrientation(dict(ORIGINAL)), split.train)
            row = run(
                "ALS original, user x item read as item x user",
                "original",
                ("als", dict(ORIGINAL)),
                model=trap,
            )
            row["fit_seconds"] = trap.fit_seconds_
            row["params"] = dict(ORIGINAL)
        if grid:
            grid_rows, grid_models = run_grid(split, seed=seed, grid=grid_values, progress=bar)
            best, selection = _grid_selection(grid_rows)
            on_test = grid_rows[best]
            row = run(
                f"ALS original grid, best test AUC ({_describe(on_test['params'])})",
                "original",
                ("als", dict(on_test["params"])),
                model=grid_models[best],
            )
            row["fit_seconds"] = on_test["fit_seconds"]
        if original_ncf:
            run("NCF, the study's network and training (ncf-seed)", "original", (ORIGINAL_NCF, {}))
        for name in runnable:
            run(f"{name} (tastemaker defaults)", "corrected", (name, {}))
    out: dict[str, Any] = {
        "split": split.describe(),
        "k": ks,
        "data": data_summary(interactions),
        "results": results,
        "notes": notes,
    }
    if grid:
        out["grid"] = grid_rows
        out["grid_covers"] = {k: list(v) for k, v in (grid_values or GRID).items()}
        out["selection"] = selection
    return out


def _runnable(corrected: Sequence[str]) -> tuple[list[str], list[str]]:
    """The corrected models installed here, and a note for each that is not."""
    runnable, notes = [], []
    for name in corrected:
        if _available(name):
            runnable.append(name)
        else:
            notes.append(f"model {name!r} is not available here; skipped")
    return runnable, notes


def _grid_selection(grid_rows: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """The grid point best on test (the study's selection) against the one best on
    validation: the index of the first, and what each choice gives on test."""
    best = int(np.argmax([g["auc"] for g in grid_rows]))
    on_test = grid_rows[best]
    on_valid = max(grid_rows, key=lambda g: g["validation_auc"])
    return best, {
        "selected_on_test": on_test["params"],
        "selected_on_test_auc": on_test["auc"],
        "selected_on_validation": on_valid["params"],
        "selected_on_validation_test_auc": on_valid["auc"],
        "optimism": on_test["auc"] - on_valid["auc"],
    }


def _timed_fit(model: Recommender, train: Interactions) -> Recommender:
    import time

    started = time.perf_counter()
    model.fit(train)
    model.fit_seconds_ = time.perf_counter() - started
    return model

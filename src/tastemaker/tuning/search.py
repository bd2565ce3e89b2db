"""Hyperparameter search (grid, random, Optuna TPE) on validation carved from training only.

The flow of ``tune``:

1. the outer split is the default protocol (``random_split``, seed 0): its test part is put
   aside and touched once, at the end;
2. validation folds are carved from the outer *training* part only: ``repeats`` inner
   ``random_split`` splits (two by default; seeds ``seed + 1``, ``seed + 1001``, ...), or user
   K-fold inside training (``folds >= 2``);
3. every trial fits the model on each fold's training part and scores the metric on the fold's
   held-out part (mean over folds). Iterative models call back after each iteration/epoch; at
   iterations 4, 8, 16, ... the first fold is scored and reported to Optuna, whose
   ``MedianPruner`` stops trials that trail the median of earlier trials at the same iteration;
4. the best parameters and the model's defaults are then each fitted on the whole outer
   training part and evaluated once on the test split, so validation and test sit side by side
   (a search that overfits its validation split shows up as a gap the defaults do not have).

All three searches run through an Optuna study, so every one of them can be stored in SQLite
and resumed: ``grid`` enqueues the grid points that are not done yet, ``random`` samples
uniformly (``RandomSampler``), ``optuna`` uses a seeded multivariate TPE sampler. The model's
defaults are enqueued as trial 0 of a fresh random or TPE study when they lie inside the
space, so the search starts from them instead of from nothing.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tastemaker.artifacts import atomic_write_json
from tastemaker.data.interactions import Interactions
from tastemaker.errors import TastemakerError
from tastemaker.evaluation.protocol import evaluate_split
from tastemaker.evaluation.splits import random_split
from tastemaker.models import create_model
from tastemaker.tuning.config import SearchConfig, parse_metric
from tastemaker.tuning.study import (
    enqueue_pending,
    finished,
    open_study,
    quiet_optuna,
    study_lock,
    thread_limits,
)
from tastemaker.tuning.trials import evaluate_params, validation_folds, with_seed

# The kind best.json says it is (so a later tune may replace it, and nothing else).
BEST_KIND = "tuning-result"
# A search stops after this many failed trials in a row (every combination failing).
MAX_FAILURES_IN_ROW = 10
# Errors that fail one trial (bad parameter combination, numerical trouble) but not the search.
TRIAL_ERRORS: tuple[type[BaseException], ...] = (
    TastemakerError,
    ValueError,
    ArithmeticError,
    np.linalg.LinAlgError,
)


# -- the search ------------------------------------------------------------------------------


class TrialProgress:
    """A rich progress bar over trials showing the best value so far (an Optuna callback)."""

    def __init__(
        self,
        total: int,
        done: int,
        metric: str,
        best: float | None = None,
        best_number: int | None = None,
    ) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.metric = metric
        self.progress = Progress(
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[best]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task(
            "trials", total=total, completed=done, best=self._best_text(best, best_number)
        )

    def _best_text(self, best: float | None, number: int | None) -> str:
        if best is None:
            return f"best {self.metric}: -"
        return f"best {self.metric}: {best:.4f} (trial {number})"

    def __enter__(self) -> TrialProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        if trial.state == TrialState.FAIL:
            reason = trial.user_attrs.get("error", "interrupted")
            self.progress.console.print(f"trial {trial.number} failed: {reason}")
            return
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            return
        try:
            best = study.best_trial
            text = self._best_text(best.value, best.number)
        except ValueError:  # nothing completed yet (only pruned trials)
            text = self._best_text(None, None)
        self.progress.update(self.task, advance=1, best=text)


def run_search(
    train: Interactions,
    config: SearchConfig,
    folds: Sequence[Any] | None = None,
    progress: bool = False,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
) -> Any:
    """Run (or resume) the search on ``train``; returns the Optuna study.

    ``folds`` defaults to ``validation_folds`` of ``train`` per ``config``. Stops when
    the study holds ``config.target_trials()`` completed or pruned trials, or at the timeout.
    ``callbacks`` are Optuna trial callbacks (``callback(study, frozen_trial)``).
    """
    import optuna
    from optuna.trial import TrialState

    if folds is None:
        folds = validation_folds(train, config.folds, config.seed, config.validation_repeats)
    folds = list(folds)
    defaults = create_model(config.model, **with_seed(config.model, {}, config.seed)).get_params()
    metric = config.metric_name

    with quiet_optuna():
        with study_lock(config):
            study = open_study(config, train.fingerprint)
            run = study.user_attrs["tastemaker_runs"]
            remaining = enqueue_pending(study, config, defaults)
        target = config.target_trials()
        # Runs that share the study stop together once it holds the target.
        enough = optuna.study.MaxTrialsCallback(
            target, states=(TrialState.COMPLETE, TrialState.PRUNED)
        )
        bar = TrialProgress(target, target - remaining, metric, *_best(study))
        objective = _objective(config, folds, metric, run)
        given = [enough, *([bar] if progress else []), *callbacks]
        threads = thread_limits(config.threads_per_trial())
        with bar if progress else contextlib.nullcontext(), threads:
            _optimize(study, objective, config, remaining, defaults, given)
    return study


def _objective(
    config: SearchConfig, folds: list[Any], metric: str, run: int
) -> Callable[[Any], float]:
    """One trial: the suggested parameters fitted and scored on every fold (mean)."""

    def objective(trial: Any) -> float:
        params = with_seed(config.model, config.space.suggest(trial), config.seed)
        started = time.perf_counter()
        try:
            values = evaluate_params(
                config.model, params, folds, metric, trial if config.prune else None
            )
        except TRIAL_ERRORS as exc:
            # Kept with the trial (the report's table shows it); the search goes on.
            trial.set_user_attr("error", (str(exc).strip().splitlines() or [repr(exc)])[0])
            raise
        trial.set_user_attr("fold_values", values)
        trial.set_user_attr("run", run)  # which run of a shared or resumed study made it
        trial.set_user_attr("fit_eval_seconds", time.perf_counter() - started)
        return float(np.mean(values))

    return objective


def _optimize(
    study: Any,
    objective: Callable[[Any], float],
    config: SearchConfig,
    remaining: int,
    defaults: dict[str, Any],
    callbacks: list[Any],
) -> None:
    """Run trials until the study holds its target, the timeout, or too many failures."""
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    # Trials that fail (a bad combination) do not count; run again for the shortfall,
    # but give up after MAX_FAILURES_IN_ROW failures without a finished trial.
    failures_in_row = 0
    target = config.target_trials()
    while remaining > 0:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            break
        before = len(finished(study))
        attempted = len(study.trials)
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=timeout,
            n_jobs=config.n_jobs,
            catch=TRIAL_ERRORS,
            callbacks=callbacks,
        )
        after = len(finished(study))
        failures_in_row = 0 if after > before else failures_in_row + (len(study.trials) - attempted)
        if failures_in_row >= MAX_FAILURES_IN_ROW or len(study.trials) == attempted:
            break  # every trial fails, or the timeout ended the pass before any began
        remaining = target - after
        if config.search == "grid":
            with study_lock(config):
                remaining = enqueue_pending(study, config, defaults)


def _best(study: Any) -> tuple[float | None, int | None]:
    try:
        best = study.best_trial
    except ValueError:
        return None, None
    return best.value, best.number


# -- tune: search, then the one look at the test split ---------------------------------------


@dataclass
class TuneResult:
    """The search's outcome and the final, single evaluation on the test split."""

    config: SearchConfig
    study: Any
    params: dict[str, Any]
    validation: float
    test: float
    test_metrics: dict[str, float]
    default_params: dict[str, Any]
    default_validation: float
    default_test: float
    default_test_metrics: dict[str, float]
    best_trial: int
    split: dict[str, Any]
    validation_split: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    def trial_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.study.get_trials(deepcopy=False):
            state = trial.state.name.lower()
            counts[state] = counts.get(state, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        """best.json: ``model`` and ``params`` feed ``evaluate`` / ``train --params-file``."""
        counts = self.trial_counts()
        return {
            "model": self.config.model,
            "params": self.params,
            "metric": self.config.metric_name,
            "validation": self.validation,
            "test": self.test,
            "defaults": {
                "params": self.default_params,
                "validation": self.default_validation,
                "test": self.default_test,
                "test_metrics": self.default_test_metrics,
            },
            "trials": counts.get("complete", 0) + counts.get("pruned", 0),
            "search": self.config.search,
            "trial_states": counts,
            "best_trial": self.best_trial,
            "test_metrics": self.test_metrics,
            "improvement_over_defaults": {
                "validation": _relative(self.validation, self.default_validation),
                "test": _relative(self.test, self.default_test),
            },
            "study": {
                "name": self.config.default_study_name(),
                "storage": self.config.storage,
                "seed": self.config.seed,
                "folds": self.config.folds,
                "repeats": self.config.validation_repeats,
                "space": self.config.space.to_dict(),
                "space_source": self.config.space.source,
            },
            "split": self.split,
            "validation_split": self.validation_split,
            "seconds": self.seconds,
        }


def _relative(new: float, old: float) -> float | None:
    return (new - old) / old if old else None


def _replayable_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters best.json carries: only values JSON holds exactly (plain values and
    lists of them), so that ``--params-file best.json`` rebuilds the same model; others are
    left out (unlike ``recorded_params``, which writes them as strings)."""
    plain = (str, int, float, bool, type(None))
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, list | tuple) and all(isinstance(v, plain) for v in value):
            out[name] = list(value)
        elif isinstance(value, plain):
            out[name] = value
    return out


def _test_evaluation(model: str, params: dict[str, Any], split: Any, metric: str) -> dict:
    """Fit on the outer training part, evaluate on its test part (the evaluation protocol)."""
    _, k = parse_metric(metric)
    result = evaluate_split((model, params), split, ks=sorted({k, 10}))
    return dict(result["metrics"])


def tune(
    interactions: Interactions,
    config: SearchConfig,
    progress: bool = False,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
) -> TuneResult:
    """Search on validation carved from the default protocol's training part, then evaluate
    the best parameters and the defaults once on its test part."""
    started = time.perf_counter()
    outer = random_split(interactions)  # the default protocol, exactly (seed 0)
    folds = validation_folds(outer.train, config.folds, config.seed, config.validation_repeats)
    study = run_search(outer.train, config, folds=folds, progress=progress, callbacks=callbacks)
    searched = time.perf_counter()
    try:
        best = study.best_trial
    except ValueError:
        states = ", ".join(sorted({t.state.name.lower() for t in study.trials})) or "none"
        raise TastemakerError(
            f"no trial completed ({len(study.trials)} trials: {states}); "
            "see the trials in the study storage for the errors"
        ) from None
    metric = config.metric_name
    best_params = with_seed(
        config.model, {**config.space.fixed, **config.space.decode(best.params)}, config.seed
    )
    default_params = with_seed(config.model, {}, config.seed)
    with thread_limits(config.threads or os.cpu_count() or 1):
        default_validation = float(
            np.mean(evaluate_params(config.model, default_params, folds, metric))
        )
        tested = _test_evaluation(config.model, best_params, outer, metric)
        default_tested = _test_evaluation(config.model, default_params, outer, metric)
    full = create_model(config.model, **best_params).get_params()
    full_defaults = create_model(config.model, **default_params).get_params()
    return TuneResult(
        config=config,
        study=study,
        params=_replayable_params(full),
        validation=float(best.value),
        test=float(tested[metric]),
        test_metrics=tested,
        default_params=_replayable_params(full_defaults),
        default_validation=default_validation,
        default_test=float(default_tested[metric]),
        default_test_metrics=default_tested,
        best_trial=best.number,
        split=outer.describe(),
        validation_split=folds[0].describe(),
        seconds={
            "search": searched - started,
            "final_evaluation": time.perf_counter() - searched,
        },
    )


def write_best(path: str | Path, result: TuneResult, force: bool = False) -> Path:
    """Write best.json atomically; it replaces only a best.json tastemaker wrote, unless
    ``force`` (see ``tastemaker.artifacts.check_output``)."""
    path = Path(path)
    atomic_write_json(path, result.to_json(), BEST_KIND, force=force)
    return path

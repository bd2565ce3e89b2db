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
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tastemaker.data.interactions import Interactions
from tastemaker.errors import TastemakerError, UsageError
from tastemaker.tuning.spaces import SearchSpace

SEARCHES = ("optuna", "grid", "random")
# The kind best.json says it is (so a later tune may replace it, and nothing else).
BEST_KIND = "tuning-result"
DEFAULT_TRIALS = 50
# Random validation splits averaged per trial (with folds == 1). On HetRec 2K one split's
# NDCG@10 has a standard error of ~0.004 while a search's best trials lie within ~0.002 of
# each other, so which one wins depends on the items the split held out; two splits halve
# that variance for twice the fitting.
DEFAULT_REPEATS = 2
# Metrics a search may maximise: per-user ranking quality (``name@k``) or full-ranking AUC.
TUNABLE_METRICS = ("ndcg", "recall", "precision", "map", "hit_rate", "mrr")
# Iterations (or epochs) at which the first validation fold is scored for pruning.
CHECKPOINTS = frozenset(2**i for i in range(2, 16))
# Checkpoint scores (for pruning only) use at most this many validation users, a fixed sample:
# scoring every user at every checkpoint would cost more than pruning saves.
PRUNING_USERS = 500
# A stored trial whose process stopped sending heartbeats for GRACE_S is marked failed.
HEARTBEAT_S = 10
GRACE_S = 30
# A search stops after this many failed trials in a row (every combination failing).
MAX_FAILURES_IN_ROW = 10
# Errors that fail one trial (bad parameter combination, numerical trouble) but not the search.
TRIAL_ERRORS: tuple[type[BaseException], ...] = (
    TastemakerError,
    ValueError,
    ArithmeticError,
    np.linalg.LinAlgError,
)


# -- configuration ---------------------------------------------------------------------------


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
        from tastemaker.models import model_class

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


# -- validation folds and scoring ------------------------------------------------------------


def validation_folds(train: Interactions, folds: int = 1, seed: int = 0, repeats: int = 1) -> list:
    """Validation splits carved from ``train`` (the outer training part) only.

    ``folds == 1``: ``repeats`` independent ``random_split`` splits (20 % of each user's items;
    seeds ``seed + 1``, ``seed + 1001``, ...: never the outer split's seed 0, and spaced so
    that one ``seed``'s repeats are not another's first split); ``folds >= 2``: user K-fold
    inside training.
    """
    from tastemaker.evaluation.splits import random_split, user_kfold

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
    from tastemaker.evaluation.metrics import (
        batch_rows,
        hits_of,
        per_user_metrics,
        ranking_metrics,
        score_users,
    )
    from tastemaker.ranking import mask_rows, top_n

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


class _PruningMonitor:
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
    from tastemaker.models import model_class

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

    from tastemaker.models import create_model

    values = []
    for index, split in enumerate(folds):
        recommender = create_model(model, **params)
        monitor = (
            _PruningMonitor(trial, split, metric) if trial is not None and index == 0 else None
        )
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


# -- the study -------------------------------------------------------------------------------


def storage_path(url: str | None) -> Path | None:
    """The SQLite file of a study storage (a path, or ``sqlite:///PATH``); None for the
    in-memory storage and database servers."""
    if url is None:
        return None
    if "://" not in url:
        return Path(url).expanduser()
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?")[0]
        return Path(path) if path and path != ":memory:" else None
    return None


@contextlib.contextmanager
def study_lock(config: SearchConfig) -> Iterator[None]:
    """Let one run at a time open the study (create it, record its configuration, queue its
    first trials) where the storage is a SQLite file, so that runs started together join
    one study instead of racing; a database server's transactions are left to it."""
    from tastemaker.artifacts import file_lock

    path = storage_path(config.storage)
    if path is None:
        yield
        return
    with file_lock(path, wait=120.0, doing="opening the study"):
        yield


def _storage(url: str | None) -> Any:
    import optuna

    if url is None:
        return optuna.storages.InMemoryStorage()
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as exc:  # sqlalchemy raises many kinds; the user gets one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--storage {url}: cannot open the study storage ({first})") from None


def _sampler(config: SearchConfig, offset: int) -> Any:
    import optuna

    # A resumed study re-seeds with an offset, so it does not replay the first run's draws.
    seed = config.seed + offset
    if config.search == "optuna":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=10,
                multivariate=True,
                group=True,  # conditional parameters (weighting-specific ones) need groups
                constant_liar=config.n_jobs > 1,
            )
    return optuna.samplers.RandomSampler(seed=seed)


def _pruner(config: SearchConfig) -> Any:
    import optuna

    if config.prune and config.search != "grid":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def _differs(name: str, config: SearchConfig, stored: Any, identity: dict) -> UsageError:
    differs = sorted(k for k in identity if (stored or {}).get(k) != identity[k])
    return UsageError(
        f"study {name!r} in {config.storage} was made with another {', '.join(differs)}; "
        "pass --study-name NEW to start a separate study"
    )


def open_study(config: SearchConfig, data_fingerprint: str) -> Any:
    """Create the study, or load it to resume it or to join a run in progress (call it under
    ``study_lock``); UsageError when a stored study was made with another configuration.

    Every run that opens a study is counted (``tastemaker_runs``), and the count shifts the
    sampler's seed, so two runs on one study never draw the same sequence.
    """
    import optuna

    storage = _storage(config.storage)
    name = config.default_study_name()
    identity = config.identity(data_fingerprint)
    try:
        existing = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        existing = None
    stored, runs, offset = None, 0, 0
    if existing is not None:
        stored = existing.user_attrs.get("tastemaker")
        count = existing.user_attrs.get("tastemaker_runs", 0)
        runs = count if isinstance(count, int) else 0
        if stored is None and existing.trials:
            raise UsageError(
                f"study {name!r} in {config.storage} has trials but was not made by tastemaker "
                "tune; pass --study-name NEW to start a separate study"
            )
        if stored is not None and stored != identity:
            raise _differs(name, config, stored, identity)
        offset = len(existing.trials) + runs
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=_sampler(config, offset),
        pruner=_pruner(config),
        direction="maximize",
        load_if_exists=True,
    )
    if stored is None:
        # A fresh study (or one whose creator has not recorded it yet, on a database server).
        study.set_user_attr("tastemaker", identity)
        stored = study.user_attrs.get("tastemaker")  # read back: another run may have won
        if stored != identity:
            raise _differs(name, config, stored, identity)
    study.set_user_attr("tastemaker_runs", runs + 1)
    return study


def _key(params: dict[str, Any]) -> tuple:
    return tuple(
        sorted((k, round(v, 12) if isinstance(v, float) else v) for k, v in params.items())
    )


def finished(study: Any) -> list:
    """Trials that count towards the requested number: completed and pruned ones."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _enqueue(study: Any, config: SearchConfig, defaults: dict[str, Any]) -> int:
    """Queue grid points still to run (grid), or the defaults as trial 0 (fresh study).

    Returns how many trials the search still has to finish.
    """
    from optuna.trial import TrialState

    target = config.target_trials()
    done = finished(study)
    remaining = target - len(done)
    if remaining <= 0:
        return 0
    if config.search == "grid":
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        taken = {_key(t.params) for t in done}
        taken |= {_key(t.system_attrs.get("fixed_params", {})) for t in waiting}
        todo = remaining - len(waiting)
        for point in config.space.grid():
            if todo <= 0:
                break
            searched = config.space.encode(
                {k: v for k, v in point.items() if k not in config.space.fixed}
            )
            if _key(searched) not in taken:
                study.enqueue_trial(searched, user_attrs={"origin": "grid"})
                taken.add(_key(searched))
                todo -= 1
        queued = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        return min(remaining, queued)
    if not study.trials:
        start = config.space.searched_subset(defaults)
        if start is not None:
            study.enqueue_trial(config.space.encode(start), user_attrs={"origin": "defaults"})
    return remaining


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    verbosity = optuna.logging.get_verbosity()
    # Failed trials are reported in one line each (TrialProgress) and kept in the study,
    # not as Optuna's warning with a traceback.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            yield
        finally:
            optuna.logging.set_verbosity(verbosity)


@contextlib.contextmanager
def thread_limits(threads: int) -> Iterator[None]:
    """Cap BLAS, OpenMP (implicit's loops) and torch at ``threads`` threads meanwhile.

    Parallel trials must not each spawn a thread per core; and on a busy machine, OpenMP
    threads that spin-wait for a core make small fits many times slower than one thread.
    """
    import sys

    import tastemaker.threads as thread_policy

    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    try:
        with thread_policy.limited(threads):  # fits inside keep this count
            if torch is not None:
                torch.set_num_threads(threads)
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)


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

    from tastemaker.models import create_model

    if folds is None:
        folds = validation_folds(train, config.folds, config.seed, config.validation_repeats)
    folds = list(folds)
    defaults = create_model(config.model, **with_seed(config.model, {}, config.seed)).get_params()
    metric = config.metric_name

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

    with _quiet_optuna():
        with study_lock(config):
            study = open_study(config, train.fingerprint)
            run = study.user_attrs["tastemaker_runs"]
            remaining = _enqueue(study, config, defaults)
        target = config.target_trials()
        # Runs that share the study stop together once it holds the target.
        enough = optuna.study.MaxTrialsCallback(
            target, states=(TrialState.COMPLETE, TrialState.PRUNED)
        )
        deadline = None if config.timeout is None else time.monotonic() + config.timeout
        bar = TrialProgress(target, target - remaining, metric, *_best(study))
        threads = thread_limits(config.threads_per_trial())
        with bar if progress else contextlib.nullcontext(), threads:
            # Trials that fail (a bad combination) do not count; run again for the shortfall,
            # but give up after MAX_FAILURES_IN_ROW failures without a finished trial.
            failures_in_row = 0
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
                    callbacks=[enough, *([bar] if progress else []), *callbacks],
                )
                after = len(finished(study))
                failures_in_row = (
                    0 if after > before else failures_in_row + (len(study.trials) - attempted)
                )
                if failures_in_row >= MAX_FAILURES_IN_ROW or len(study.trials) == attempted:
                    break  # every trial fails, or the timeout ended the pass before any began
                remaining = target - after
                if config.search == "grid":
                    with study_lock(config):
                        remaining = _enqueue(study, config, defaults)
    return study


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
    from tastemaker.evaluation.protocol import evaluate_split

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
    from tastemaker.evaluation.splits import random_split
    from tastemaker.models import create_model

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
    from tastemaker.artifacts import atomic_write_json

    path = Path(path)
    atomic_write_json(path, result.to_json(), BEST_KIND, force=force)
    return path

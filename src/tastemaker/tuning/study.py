"""The Optuna study a search runs in: storage (SQLite, resumable), its lock, sampler and
pruner, the identity check of a resumed study, the trials to enqueue, thread limits."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tastemaker.threads as thread_policy
from tastemaker.artifacts import file_lock
from tastemaker.errors import UsageError
from tastemaker.tuning.config import SearchConfig

# A stored trial whose process stopped sending heartbeats for GRACE_S is marked failed.
HEARTBEAT_S = 10


GRACE_S = 30


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


def enqueue_pending(study: Any, config: SearchConfig, defaults: dict[str, Any]) -> int:
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
def quiet_optuna() -> Iterator[None]:
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

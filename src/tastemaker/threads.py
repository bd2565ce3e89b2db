"""BLAS and OpenMP thread counts that degrade gracefully when the machine is shared.

A team of BLAS or OpenMP threads as wide as the machine is the fastest choice on a quiet
machine and the slowest on a busy one: their threads spin at barriers waiting for a thread
that lost its core, so an EASE fit on 2 cores with one core taken by a neighbour took 19-30 s
with 2 BLAS threads against 2.2 s with one (issue 20). Here a team is as wide as the cores
this process may use (``os.sched_getaffinity``) that other processes are not running on now
(``/proc/loadavg``'s count of runnable tasks, sampled a few times), and one thread for small
problems, where a team costs more than it saves. ``--threads N`` on the commands, or
``TASTEMAKER_THREADS``, overrides the choice.
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator

from threadpoolctl import ThreadpoolController

# Below this many floating-point operations a thread team costs more than it saves.
SMALL_WORK = 5e7
ENV = "TASTEMAKER_THREADS"
_pinned: int | None = None  # set by pin(): the process runs with this many threads for good
_requested: int | None = None  # set by request(): the commands' --threads
_active = threading.local()  # the count of the innermost limited() in this thread


def controller() -> ThreadpoolController:
    """The native thread pools loaded now. Inspecting them costs about a millisecond, so the
    answer is kept until more modules are imported (which may load another BLAS or OpenMP)."""
    return _controller(len(sys.modules))


@functools.lru_cache(maxsize=1)
def _controller(modules: int) -> ThreadpoolController:
    return ThreadpoolController()


def allowed_cores() -> int:
    """Cores this process may run on (its affinity set, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def busy_cores(samples: int = 5, interval: float = 0.01) -> int:
    """Runnable tasks of other processes right now (the median of a few samples of the
    fourth field of /proc/loadavg, less this process's own thread); 0 where unknown."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(max(running - 1, 0))
        if i + 1 < samples:
            time.sleep(interval)
    return int(statistics.median(counts))


def pick(threads: int | None = None, work: float | None = None) -> int:
    """Threads for the next piece of work: ``threads`` if given, else ``TASTEMAKER_THREADS``,
    else one for ``work`` (floating-point operations) under ``SMALL_WORK``, else the free
    cores (at least one)."""
    if threads is not None:
        return max(1, threads)
    if _requested is not None:
        return _requested
    if os.environ.get(ENV, "").strip().isdigit():
        return max(1, int(os.environ[ENV]))
    if _pinned is not None:
        return _pinned
    outer = getattr(_active, "count", None)
    if outer is not None:  # inside a limit chosen by the caller (a tuning trial, a bench)
        return outer
    if work is not None and work < SMALL_WORK:
        return 1
    allowed = allowed_cores()
    return max(1, min(allowed, allowed - busy_cores()))


@contextlib.contextmanager
def limited(threads: int | None = None, work: float | None = None) -> Iterator[int]:
    """BLAS and OpenMP pools limited to ``pick(threads, work)`` inside; yields the count."""
    count = pick(threads, work)
    outer = getattr(_active, "count", None)
    _active.count = count
    try:
        with controller().limit(limits=count):
            yield count
    finally:
        _active.count = outer


def request(threads: int | None) -> None:
    """The commands' ``--threads``: every later ``pick`` answers this (None: choose again)."""
    global _requested
    _requested = None if threads is None else max(1, threads)


def pin(threads: int) -> None:
    """This process runs with ``threads`` BLAS / OpenMP threads from now on (the server:
    requests already run in parallel); ``single_blas_thread`` then costs nothing."""
    global _pinned
    controller().limit(limits=threads)
    _pinned = threads


def single_blas_thread():
    """Context manager: BLAS on one thread inside it (small per-request products, and
    implicit's solvers, which run their own threads). Free when the process is pinned to
    one thread: limiting and restoring costs tens of microseconds, per request."""
    if _pinned == 1:
        return contextlib.nullcontext()
    return controller().limit(limits=1, user_api="blas")

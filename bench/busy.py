"""The busy-machine mode every bench shares: a CPU-burning neighbour process on one core.

``--busy`` starts one process that spins on the last core this process may use (pinned, so
it takes exactly one core, as another tenant's job would) for the length of the measurement.
``load_average()`` is printed beside every figure, quiet or busy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

BURN = "import os, sys\nos.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True:\n    pass\n"


def add_busy_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--busy",
        action="store_true",
        help="also measure with a CPU-burning neighbour process on one core (bench/busy.py)",
    )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f}"


@contextlib.contextmanager
def neighbour(enabled: bool = True) -> Iterator[int | None]:
    """While inside, one process burns the last allowed core; yields that core (None: off)."""
    if not enabled:
        yield None
        return
    core = max(os.sched_getaffinity(0))
    proc = subprocess.Popen([sys.executable, "-c", BURN, str(core)])
    try:
        yield core
    finally:
        proc.kill()
        proc.wait()


def modes(busy: bool) -> list[bool]:
    """The runs a bench makes: quiet, and busy as well with ``--busy``."""
    return [False, True] if busy else [False]


def quiet_and_busy(label: str, fit, repeats: int, busy: bool) -> list[tuple[str, float, str]]:
    """Median seconds of ``fit()`` (which returns its own seconds): quiet; and with ``busy``
    also beside the neighbour, with the thread policy (tastemaker.threads) and with the team
    forced as wide as the machine (what BLAS and OpenMP do by default). Prints the rows and
    the busy / quiet ratio (target <= 2.5x); returns (what, seconds, load average) rows."""
    import statistics

    import tastemaker.threads as threads

    runs = [("quiet, threads chosen", False, None)]
    if busy:
        wide = threads.allowed_cores()
        runs += [("busy, threads chosen", True, None), (f"busy, {wide} threads forced", True, wide)]
    rows = []
    for what, with_neighbour, forced in runs:
        with neighbour(with_neighbour):
            threads.request(forced)
            try:
                chosen = threads.pick()
                seconds = statistics.median(fit() for _ in range(repeats))
            finally:
                threads.request(None)
            rows.append((f"{label}: {what} ({chosen})", seconds, load_average()))
    for what, seconds, load in rows:
        print(f"  {what:48s} {seconds:8.2f} s   {load}")
    if busy:
        quiet, chosen, forced = (r[1] for r in rows)
        print(
            f"  {label}: busy / quiet {chosen / quiet:.2f}x with the policy (target <= 2.5x), "
            f"{forced / quiet:.2f}x with the team forced wide"
        )
    return rows

"""py-spy over a benchmark's server: sample it during a load run, summarise the stacks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def start_profile(server, path: Path):
    """py-spy sampling the server's processes (collapsed stacks) while the load runs."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if spy is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(server.proc.pid), "--subprocesses", "--rate", "250",
         "--format", "raw", "--output", str(path), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)  # py-spy attaches
    return proc


def stop_profile(proc) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    proc.wait(timeout=60)


# py-spy shows a thread waiting in native code as its last Python frame.
IDLE_LEAVES = {"Runner.run", "Condition.wait", "Event.wait"}


def summarise_profile(path: Path, top: int = 25) -> None:
    """Print the functions with the most samples, inclusive and self (py-spy's raw format:
    one line per distinct stack, frames ``function (file:line)`` joined by ';', then a count)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")[1:]]  # the first is the process
        if frames and frames[-1].split(" ")[0] in IDLE_LEAVES:
            continue  # the event loop in epoll, an idle pool thread: not work
        total += int(count)
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)
    print(f"profile {path.name}: {total} samples (idle left out)")
    for title, table in (("inclusive", inclusive), ("self", own)):
        print(f"  top {top} {title}:")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {100 * count / max(total, 1):5.1f} %  {frame}")


def _frame(text: str) -> str:
    # "recommend_for_user (tastemaker/serving/routes.py:130)" -> function and file, no line
    name, _, where = text.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(where).parts
    return f"{name} ({'/'.join(parts[-2:])})"

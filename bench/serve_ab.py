"""Before / after in the same conditions: two servers, this checkout's and another source tree's
(e.g. ``git archive main src | tar -x -C /tmp/base``), driven by wrk in turns.

On a shared machine the CPU a request costs drifts with what else runs (caches, a core's
sibling); taking the two servers' figures in alternating short rounds, on the same model and
requests, makes their ratio the change that was made. Prints, per request kind and round,
each server's CPU per request and its ratio to its own floor route, and the load average.

    git archive main src | tar -x -C /tmp/base
    .venv/bin/python bench/serve_ab.py --baseline /tmp/base/src --out /tmp/serve-model
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from busy import load_average
from serve import Server, closed_loop_wrk, trained_model, workload

KINDS = ("floor", "user", "history")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the other source tree's src/")
    parser.add_argument("--out", type=Path, required=True, help="the model (made there if absent)")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--artists", type=int, default=200_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--wrk-connections", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def start(model_dir: Path, pythonpath: str | None) -> Server:
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        server = Server(model_dir, ann=True, workers=1)
    finally:
        if pythonpath is not None:
            if saved is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = saved
    server.wait_ready()
    return server


def cpu_per_request(server: Server, method: str, lines: list[str], args) -> tuple[float, float]:
    before = server.cpu_seconds()
    peak = closed_loop_wrk(server.url, method, lines, args.wrk_seconds, args.wrk_connections)
    if peak is None:
        raise SystemExit("needs wrk (apt-get install -y wrk)")
    if peak["errors"]:
        raise SystemExit(f"{peak['errors']} errors")
    return 1000 * (server.cpu_seconds() - before) / max(peak["requests"], 1), peak["rps"]


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir, data = trained_model(args)
    lines = {}
    for kind in KINDS:
        _, lines[kind] = workload(data, kind, 3000, seed=args.seed + 1, history_len=args.history)
    servers = {"baseline": start(model_dir, str(args.baseline.resolve())), "this": None}
    try:
        servers["this"] = start(model_dir, None)
        cpu: dict[tuple[str, str], list[float]] = {}
        print(f"start: {load_average()}")
        for round_ in range(args.rounds):
            for kind in KINDS:
                for name, server in servers.items():
                    method = "POST" if kind == "history" else "GET"
                    ms, rps = cpu_per_request(server, method, lines[kind], args)
                    cpu.setdefault((name, kind), []).append(ms)
                    print(
                        f"round {round_ + 1} {name:8s} {kind:7s}: {ms:.3f} ms CPU/request, "
                        f"{rps:,.0f} req/s; {load_average()}",
                        flush=True,
                    )
    finally:
        for server in servers.values():
            if server is not None:
                server.stop()
    print("\n| request | baseline CPU ms (x floor) | this CPU ms (x floor) | this / baseline |")
    print("|---|---|---|---|")
    for kind in KINDS:
        med = {name: statistics.median(cpu[(name, kind)]) for name in servers}
        floor = {name: statistics.median(cpu[(name, "floor")]) for name in servers}
        print(
            f"| {kind} | {med['baseline']:.3f} ({med['baseline'] / floor['baseline']:.2f}x) "
            f"| {med['this']:.3f} ({med['this'] / floor['this']:.2f}x) "
            f"| {med['this'] / med['baseline']:.2f} |"
        )
    print(f"medians of {args.rounds} rounds of {args.wrk_seconds} s; end: {load_average()}")


if __name__ == "__main__":
    main()

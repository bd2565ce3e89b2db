"""Serving benchmark: ALS on a synthetic 200,000-artist catalogue, served by ``tastemaker serve``
(uvicorn, a subprocess) and driven from other processes over loopback.

For exact retrieval (the model scores all items: the reference) and the ANN index, and for
the floor route (serving.floor: the same stack answering a precomputed list of the same size),
user recommendations (GET) and posted 50-item histories (POST, fold-in), it measures:

* latency at a fixed offered rate (open loop, default 330 requests/s), from a client process
  (bench/loadgen.py: aiohttp on uvloop, each request's latency counted from its intended send
  time, the client's own CPU per request and send lag reported beside it);
* peak throughput with ``wrk`` (closed loop, a few connections; apt-get install -y wrk);
* server CPU per request (from /proc), and its ratio to the floor's;
* memory per server process (RSS, PSS, private).

It prints the load average beside every figure, the ANN index's recall@10 against exact
scoring and the issue's targets. ``--busy`` repeats every run beside a CPU-burning neighbour
on one core (bench/busy.py); ``--profile DIR`` samples the server with py-spy during wrk.
Everything stays on 127.0.0.1.

    .venv/bin/python bench/serve.py                  # the full run (about 5-10 minutes)
    .venv/bin/python bench/serve.py --out /tmp/serve-full --retrieval ann --busy   # reruns
    .venv/bin/python bench/serve.py --artists 60000 --users 5000 --requests 2000   # quicker
    .venv/bin/python bench/serve.py --playlists      # 50-track playlists at 100 requests/s
    .venv/bin/python bench/serve.py --out /tmp/serve-full --workers 2 --memory-only  # PSS
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from busy import add_busy_argument, load_average, modes, neighbour
from loadgen import h2load_open_loop, open_loop
from pyspy import start_profile, stop_profile, summarise_profile

TARGET_P99_MS = 10.0
TARGET_P99_BUSY_MS = 25.0
TARGET_RPS = 300.0
TARGET_CLOSED_RPS = 1000.0
TARGET_RECALL = 0.95
TARGET_USER_X = 1.5  # server CPU per request over the floor route's
TARGET_HISTORY_X = 2.5


# -- data and model ----------------------------------------------------------------------------
def synthetic_catalogue(users: int, artists: int, per_user: int = 185, seed: int = 0):
    """Users x artists play counts with taste structure, built in a few seconds.

    300 genres; artist popularity Zipf(0.9); each user has three favourite genres and draws
    80 % of their artists from them (by popularity), 20 % from everything; distinct artists per
    user log-normal around ``per_user`` (the DESIGN's 20 k x 200 k, 3.7 M pairs, in shape).
    """
    from tastemaker.data.interactions import Interactions, Vocabulary, empty_metadata

    rng = np.random.default_rng(seed)
    genres = 300
    genre = rng.integers(0, genres, artists)
    popularity = 1.0 / np.arange(1, artists + 1) ** 0.9
    popularity = popularity[rng.permutation(artists)]
    order = np.argsort(genre, kind="stable")
    cumulative = np.cumsum(popularity[order])
    bounds = np.searchsorted(genre[order], np.arange(genres + 1))
    padded = np.concatenate([[0.0], cumulative])
    lo, hi = padded[bounds[:-1]], padded[bounds[1:]]
    k = np.clip(rng.lognormal(np.log(per_user) - 0.5, 1.0, users).astype(np.int64), 5, 5000)
    favourite = rng.integers(0, genres, (users, 3))
    rows = np.repeat(np.arange(users), k)
    g = favourite[rows, rng.integers(0, 3, len(rows))]
    in_genre = rng.random(len(rows)) < 0.8
    u = rng.random(len(rows))
    draw = np.where(in_genre, lo[g] + u * (hi[g] - lo[g]), u * cumulative[-1])
    cols = order[np.minimum(np.searchsorted(cumulative, draw), artists - 1)]
    counts = rng.zipf(1.8, len(rows)).clip(1, 10_000).astype(np.float32)
    matrix = sp.csr_matrix((counts, (rows, cols)), shape=(users, artists))
    matrix.sum_duplicates()
    # Keep only artists somebody listened to, as an ingested catalogue would.
    heard = np.flatnonzero(matrix.getnnz(axis=0))
    matrix = matrix[:, heard]
    item_ids = [f"a{i}" for i in heard]
    names = [f"Artist {i:06d}" for i in heard]
    return Interactions(
        matrix,
        Vocabulary([f"u{i}" for i in range(users)]),
        Vocabulary(item_ids),
        empty_metadata(item_ids, names),
    )


def train(args, out: Path) -> tuple[Path, object]:
    from threadpoolctl import threadpool_limits

    from tastemaker.models import create_model

    started = time.perf_counter()
    data = synthetic_catalogue(args.users, args.artists, seed=args.seed)
    print(
        f"data: {data.n_users:,} users x {data.n_items:,} artists, {data.nnz:,} pairs "
        f"({time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    started = time.perf_counter()
    with threadpool_limits(1, "blas"):  # as implicit advises
        model = create_model("als", factors=args.factors, iterations=args.iterations, seed=0)
        model.fit(data)
    print(
        f"ALS: {args.factors} factors, {args.iterations} iterations, "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return model.save(out / "model"), data


def plain_hnsw_recall(model_dir: Path) -> None:
    """Recall@10 of a single HNSW inner-product graph (what the exact head tier avoids)."""
    from tastemaker.models import load_model
    from tastemaker.serving.retrieval import AnnSettings, FactorIndex

    model = load_model(model_dir)
    started = time.perf_counter()
    index = FactorIndex(model, AnnSettings(head_items=1))
    recall = index.measure_recall(500)
    print(
        f"plain HNSW-IP (M {index.settings.hnsw_m}, efSearch {index.settings.ef_search}) over "
        f"all items: recall@10 {recall:.4f} ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )


# -- the server --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tastemaker serve`` in a subprocess (its own session, so it can be stopped whole)."""

    def __init__(self, model_dir: Path, ann: bool, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "TASTEMAKER_ANN_THRESHOLD": "50000" if ann else str(10**9),
            "TASTEMAKER_BENCH_FLOOR": "1",  # the floor route (serving.floor)
        }
        cmd = [
            sys.executable, "-c", "from tastemaker.cli import main; main()", "serve",
            str(model_dir), "--port", str(self.port), "--workers", str(workers),
            "--no-access-log",
        ]  # fmt: skip
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 900) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit("server exited:\n" + self.log.read().decode()[-3000:])
            try:
                r = httpx.get(self.url + "/healthz", timeout=5)
                if r.status_code == 200:
                    return r.json()
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise SystemExit("server did not start in time")

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the server's processes (all workers), from /proc."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        try:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == self.proc.pid:  # process group = the server's session
                    total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            return None
        return total / tick

    def memory(self) -> list[tuple[int, dict[str, float]]]:
        """Per process of the server (supervisor and workers): RSS, PSS (shared pages split
        between the processes sharing them) and USS (private pages), in MiB."""
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getpgid(int(entry.name)) != self.proc.pid:
                    continue
                rollup = (entry / "smaps_rollup").read_text().splitlines()
            except OSError:
                continue
            kb = {}
            for line in rollup[1:]:
                key, _, value = line.partition(":")
                kb[key] = int(value.split()[0]) if value.split() else 0
            private = kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)
            out.append(
                (int(entry.name), {"rss": kb.get("Rss", 0) / 1024, "pss": kb.get("Pss", 0) / 1024,
                                   "uss": private / 1024})
            )  # fmt: skip
        return sorted(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# -- load generators (run in other processes) --------------------------------------------------
WRK_SCRIPT = r"""
local lines = {}
local method = "GET"
init = function(args)
  method = args[1]
  for line in io.lines(args[2]) do lines[#lines + 1] = line end
end
request = function()
  local line = lines[math.random(#lines)]
  if method == "GET" then
    return wrk.format("GET", line)
  end
  return wrk.format("POST", "/v1/recommendations?n=10",
                    {["Content-Type"] = "application/json"}, line)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def closed_loop_wrk(url: str, method: str, lines: list[str], seconds: int, connections: int):
    """Peak throughput with wrk (None when wrk is not installed)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(WRK_SCRIPT)
        data = Path(tmp) / "lines.txt"
        data.write_text("\n".join(lines) + "\n")
        out = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url,
             "--", method, str(data)],
            capture_output=True, text=True, timeout=seconds + 60,
        )  # fmt: skip
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "requests": summary["requests"],
        "errors": summary["errors"],
        "rps": summary["requests"] / (summary["duration_us"] / 1e6),
        "p50": summary["p50_us"] / 1000,
        "p99": summary["p99_us"] / 1000,
    }


# -- the run -----------------------------------------------------------------------------------
def workload(data, kind: str, count: int, seed: int, history_len: int = 50):
    """``count`` requests: random users (GET), random ``history_len``-artist slices of real
    histories (POST), or the floor route for random users (GET, a precomputed answer)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, data.n_users, count)
    if kind in ("user", "floor"):
        prefix = "/v1/users/" if kind == "user" else "/v1/floor/"
        paths = [f"{prefix}{data.users.id(u)}/recommendations?n=10" for u in users]
        return [("GET", p, None) for p in paths], paths
    requests, lines = [], []
    for u in users:
        items = data.user_items[u].indices
        pick = rng.choice(items, min(history_len, len(items)), replace=False)
        body = {"history": [{"item": data.items.id(i), "count": 1} for i in pick]}
        requests.append(("POST", "/v1/recommendations?n=10", body))
        lines.append(json.dumps(body))
    return requests, lines


def response_size(url: str, method: str, path: str, body) -> int:
    import httpx

    return len(httpx.request(method, url + path, json=body, timeout=30).content)


def measure(server: Server, data, kind: str, count: int, args, spawn, profile: Path | None):
    """One workload against a running server: open loop at the offered rate, then wrk."""
    requests, lines = workload(data, kind, count, seed=args.seed + 1, history_len=args.history)
    size = response_size(server.url, *requests[0])
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        cpu = server.cpu_seconds()
        fixed = pool.submit(open_loop, server.url, requests, args.rate, args.in_flight).result()
        if cpu is not None:
            # Warm-up requests included: a slight overestimate.
            fixed["cpu_ms"] = 1000 * (server.cpu_seconds() - cpu) / (count + 50)
    fixed["load"] = os.getloadavg()[0]
    fixed["bytes"] = size
    h2 = None
    if kind != "history":  # h2load posts one body for all requests: GET routes only
        cpu = server.cpu_seconds()
        h2 = h2load_open_loop(server.url, [path for _, path, _ in requests], args.rate)
        if h2 is not None:
            h2["load"] = os.getloadavg()[0]
            if cpu is not None:
                h2["cpu_ms"] = 1000 * (server.cpu_seconds() - cpu) / (count + 50)
    spy = start_profile(server, profile) if profile else None
    cpu = server.cpu_seconds()
    peak = closed_loop_wrk(
        server.url, "POST" if kind == "history" else "GET", lines,
        args.wrk_seconds, args.wrk_connections,
    )  # fmt: skip
    if spy is not None:
        stop_profile(spy)
        summarise_profile(profile)
    if peak:
        peak["load"] = os.getloadavg()[0]
        if cpu is not None:
            peak["cpu_ms"] = 1000 * (server.cpu_seconds() - cpu) / max(peak["requests"], 1)
    return fixed, h2, peak


def trained_model(args):
    """Train (or, with ``--out`` holding one already, reuse) the benchmark's model."""
    data = None
    if args.out is not None and (args.out / "model" / "manifest.json").exists():
        data = synthetic_catalogue(args.users, args.artists, seed=args.seed)
        print(f"reusing {args.out / 'model'} (same --users/--artists/--seed)", flush=True)
        return args.out / "model", data
    return train(args, args.out)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--artists", type=int, default=200_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--requests", type=int, default=10_000, help="ANN user run; others 1/3")
    # Offered 10 % above the target: the rate that counts is the one achieved (completed
    # requests over the run's wall time, tail included), which trails the offered rate.
    parser.add_argument("--rate", type=float, default=1.1 * TARGET_RPS, help="offered requests/s")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--history", type=int, default=50, help="items per posted history")
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--wrk-connections", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the model here (and reuse it next time)"
    )
    parser.add_argument(
        "--retrieval", default="exact,ann", help="comma-separated: exact, ann (default both)"
    )
    parser.add_argument(
        "--profile", type=Path, default=None,
        help="folder: py-spy samples the server during each wrk run (collapsed stacks)",
    )  # fmt: skip
    parser.add_argument(
        "--plain-hnsw",
        action="store_true",
        help="also measure one HNSW-IP graph over all items (no exact head), for comparison",
    )
    parser.add_argument("--playlists", action="store_true", help="the playlist workload only")
    parser.add_argument(
        "--playlist-rates", type=float, nargs="*", default=[],
        help="with --playlists: more offered rates to run after 100 requests/s",
    )  # fmt: skip
    parser.add_argument("--playlist-requests", type=int, default=3000, help="timed, per rate")
    parser.add_argument("--playlist-warmup", type=int, default=300, help="untimed, per rate")
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="start the server, print each process's memory, stop (no load)",
    )
    add_busy_argument(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.playlists:
        playlist_benchmark(args)
        return
    print(f"machine: {os.cpu_count()} CPUs; server workers: {args.workers}; {load_average()}")
    if shutil.which("wrk") is None:
        print("wrk is not installed: no closed-loop figures (apt-get install -y wrk)")
    if shutil.which("h2load") is None:
        print("h2load is not installed: no C open-loop figures (apt-get install -y nghttp2-client)")
    tmp = Path(tempfile.mkdtemp(prefix="tastemaker-bench-serve-"))
    args.out = args.out or tmp
    results = []
    recall = float("nan")
    spawn = multiprocessing.get_context("spawn")
    try:
        model_dir, data = trained_model(args)
        if args.plain_hnsw:
            plain_hnsw_recall(model_dir)
        for mode in args.retrieval.split(","):
            server = Server(model_dir, mode == "ann", args.workers)
            try:
                started = time.perf_counter()
                retrieval = server.wait_ready()["model"]["retrieval"]
                print(
                    f"\n[{mode}] server ready in {time.perf_counter() - started:.1f} s: "
                    f"{json.dumps(retrieval)}",
                    flush=True,
                )
                if mode == "ann":
                    recall = retrieval["recall_at_10"]
                for pid, mib in server.memory():
                    print(
                        f"[{mode}] process {pid}: RSS {mib['rss']:.0f} MiB, PSS {mib['pss']:.0f} "
                        f"MiB, private {mib['uss']:.0f} MiB",
                        flush=True,
                    )
                if args.memory_only:
                    total = sum(mib["pss"] for _, mib in server.memory())
                    print(f"[{mode}] PSS of all {args.workers} worker(s) and the supervisor: "
                          f"{total:.0f} MiB; {load_average()}", flush=True)  # fmt: skip
                    continue
                for busy in modes(args.busy):
                    with neighbour(busy):
                        time.sleep(2 if busy else 0)
                        for kind in ("floor", "user", "history"):
                            label = f"{mode}{' busy' if busy else ''}"
                            full = mode == "ann" and kind != "history"
                            count = args.requests if full else args.requests // 3
                            profile = (
                                args.profile / f"{mode}-{kind}{'-busy' if busy else ''}.txt"
                                if args.profile
                                else None
                            )
                            fixed, h2, peak = measure(
                                server, data, kind, count, args, spawn, profile
                            )
                            results.append((label, kind, fixed, h2, peak))
                            print(
                                f"[{label}] {kind}: at {args.rate:.0f}/s offered: {_fmt(fixed)}"
                                + (f" | h2load: {_fmt(h2)}" if h2 else "")
                                + (f" | peak (wrk): {_fmt(peak)}" if peak else ""),
                                flush=True,
                            )
            finally:
                server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.memory_only:
        report(results, recall, args)


def _fmt(r: dict) -> str:
    cpu = f", server CPU {r['cpu_ms']:.2f} ms/request" if "cpu_ms" in r else ""
    client = (
        f", client CPU {r['client_cpu_ms']:.2f} ms/request, send lag p99 {r['lag_p99']:.1f} ms"
        if "client_cpu_ms" in r
        else ""
    )
    sent = f" (from send: p99 {r['sent_p99']:.2f} ms)" if "sent_p99" in r else ""
    return (
        f"p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms{sent}, {r['rps']:.0f} req/s, "
        f"{r['requests']:,} requests, {r['errors']} errors{cpu}{client}"
    )


def _cpu(r: dict) -> str:
    return f"{r['cpu_ms']:.2f}" if "cpu_ms" in r else "-"


def _open_cols(r: dict | None, ratio: float | None) -> str:
    if r is None:
        return "- | - | - | - | -"
    return (
        f"{r['p50']:.2f} / {r['p99']:.2f} | {r['rps']:.0f} | {r['client_cpu_ms']:.2f}, lag p99 "
        f"{r['lag_p99']:.1f} | {_cpu(r)} | {_x(ratio)}"
    )


def report(results, recall: float, args) -> None:
    """The table (both open-loop clients, then wrk, each with server CPU and its ratio to the
    floor's in the same mode), the recall and the issue's targets."""
    print(
        "\n| retrieval | request | errors | loadgen p50 / p99 ms | req/s | client CPU ms, lag ms "
        "| server CPU ms | x floor | h2load p50 / p99 ms | req/s | client CPU ms, lag ms "
        "| server CPU ms | x floor | wrk req/s | wrk p50 / p99 ms | wrk CPU ms | x floor "
        "| load avg |"
    )
    print("|---" * 19 + "|")
    by = {(label, kind): (fixed, h2, peak) for label, kind, fixed, h2, peak in results}
    ratios = {}
    for label, kind, fixed, h2, peak in results:
        floors = by[(label, "floor")]
        ratio = [
            _ratio(r, f) if r else None for r, f in zip((fixed, h2, peak), floors, strict=True)
        ]
        ratios[(label, kind)] = ratio
        wrk_cols = (
            f"{peak['rps']:.0f} | {peak['p50']:.2f} / {peak['p99']:.2f} | {_cpu(peak)} "
            f"| {_x(ratio[2])}"
            if peak
            else "- | - | - | -"
        )
        errors = sum(r["errors"] for r in (fixed, h2, peak) if r)
        print(
            f"| {label} | {kind} | {errors} | {_open_cols(fixed, ratio[0])} "
            f"| {_open_cols(h2, ratio[1])} | {wrk_cols} | {fixed['load']:.1f} |"
        )
    print(f"\noffered {args.rate:.0f} req/s; wrk {args.wrk_connections} connections")
    print(f"ANN recall@10 against exact scoring: {recall:.4f}")
    for label, kind, fixed, _, _ in results:
        if fixed["errors"]:
            print(f"errors, {label} {kind}: {fixed['error_kinds']} (status code or exception)")
    if ("ann", "user") in by:
        _targets(by, ratios, recall, args)


def _targets(by: dict, ratios: dict, recall: float, args) -> None:
    checks = [(f"ANN recall@10 >= {TARGET_RECALL}", recall >= TARGET_RECALL)]
    for label, p99_target in (("ann", TARGET_P99_MS), ("ann busy", TARGET_P99_BUSY_MS)):
        if (label, "user") not in by:
            continue
        fixed, h2, peak = by[(label, "user")]
        for kind, target in (("user", TARGET_USER_X), ("history", TARGET_HISTORY_X)):
            for how, ratio in zip(
                ("330/s loadgen", "330/s h2load", "wrk"), ratios[(label, kind)], strict=True
            ):
                if ratio is not None:
                    checks.append(
                        (f"[{label}] {kind}: server CPU <= {target}x the floor's, {how} "
                         f"({_x(ratio)})", ratio <= target)
                    )  # fmt: skip
        for client, r in (("loadgen", fixed), ("h2load", h2)):
            if r is not None:
                checks.append(
                    (f"[{label}] user p99 <= {p99_target:.0f} ms at {args.rate:.0f}/s offered, "
                     f"{client} ({r['p99']:.1f} ms, {r['rps']:.0f} achieved)",
                     r["p99"] <= p99_target and r["rps"] >= TARGET_RPS)
                )  # fmt: skip
        checks.append(
            (
                f"[{label}] zero errors (user, history, open and closed loop)",
                not any(r["errors"] for k in ("user", "history") for r in by[(label, k)] if r),
            )
        )
        if label == "ann" and peak:
            checks.append(
                (
                    f"[ann] closed loop >= {TARGET_CLOSED_RPS:.0f} req/s ({peak['rps']:.0f})",
                    peak["rps"] >= TARGET_CLOSED_RPS,
                )
            )
    print(f"\ntargets (2 cores, measured in this run; {load_average()} at the end):")
    for text, ok in checks:
        print(f"  {'PASS' if ok else 'MISS'}  {text}")


def _ratio(r: dict | None, floor: dict | None) -> float | None:
    if r is None or floor is None or "cpu_ms" not in r or "cpu_ms" not in floor:
        return None
    return r["cpu_ms"] / floor["cpu_ms"]


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


# -- playlists (a workload of its own: ``--playlists``) ------------------------------------------
PLAYLIST_P99_MS = 20.0
PLAYLIST_RPS = 100.0


def synthetic_tracks(data, per_artist: int = 10):
    """Track tables for the synthetic catalogue: ``per_artist`` recordings per artist with
    Zipf-like plays (the catalogue has artists only), no favourites."""
    import polars as pl

    from tastemaker.data.tracks import TRACK_COLUMNS, TrackData

    item = np.repeat(np.arange(data.n_items, dtype=np.int32), per_artist)
    rank = np.tile(np.arange(per_artist), data.n_items)
    names = data.item_metadata["name"].to_numpy()
    frame = pl.DataFrame(
        {
            "item": item,
            "recording": [f"{data.items.id(int(i))}-{r}" for i, r in zip(item, rank, strict=True)],
            "title": [f"Track {r + 1}" for r in rank],
            "artist": names[item],
            "release": None,
            "recording_mbid": None,
            "plays": (1000 // (rank + 1)).astype(np.int64),
        }
    ).cast(TRACK_COLUMNS)
    return TrackData(frame)


def playlist_open_loop(url: str, paths: list[str], rate: float, max_in_flight: int) -> dict:
    """GET each path at ``rate`` per second; p50 / p99, errors (a 200 with no tracks too) and
    the client's own CPU per request (to tell a saturated client from a saturated server)."""
    import httpx

    async def run() -> dict:
        latencies: list[float] = []
        errors = 0
        gate = asyncio.Semaphore(max_in_flight)
        limits = httpx.Limits(max_connections=max_in_flight)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

            async def one(path: str, measure: bool) -> None:
                nonlocal errors
                async with gate:
                    t0 = time.perf_counter()
                    try:
                        r = await client.get(path)
                        ok = r.status_code == 200 and len(r.json()["tracks"]) == 50
                    except (httpx.HTTPError, ValueError, KeyError):
                        ok = False
                    if measure:
                        latencies.append(time.perf_counter() - t0)
                        errors += not ok

            await asyncio.gather(*(one(p, False) for p in paths[:30]))  # warm-up
            gc.collect()
            gc.disable()
            started, cpu = time.perf_counter(), time.process_time()
            tasks = []
            for i, path in enumerate(paths):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(path, True)))
            await asyncio.gather(*tasks)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            gc.enable()
        ms = np.asarray(latencies) * 1000
        return {
            "requests": len(latencies),
            "errors": errors,
            "rps": len(latencies) / elapsed,
            "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)),
            "client_cpu_ms": 1000 * cpu / max(len(latencies), 1),
        }

    return asyncio.run(run())


def playlist_model(args, data) -> Path:
    """The playlist benchmark's model folder: trained, or reused from ``--out`` (the folder
    bench/playlists.py keeps: same catalogue, model and track tables)."""
    from threadpoolctl import threadpool_limits

    from tastemaker.models import create_model

    folder = args.out / "model"
    if (folder / "manifest.json").exists():
        print(f"reusing {folder} (same --users/--artists/--seed)", flush=True)
        return folder
    with threadpool_limits(1, "blas"):
        model = create_model("als", factors=args.factors, iterations=args.iterations, seed=0)
        return model.fit(data).save(folder)


def playlist_run(
    server: Server, warm: list[str], paths: list[str], rate: float, args, spawn
) -> dict:
    """Untimed warm-up (``warm``, at ``rate``: every worker builds its Library and fills its
    caches, as a service that has been up a while has), then one open-loop run at ``rate``;
    the server's CPU per timed request from /proc (the open loop's own 30 untimed requests
    included: 1 % over) and the load average beside it."""
    profile = args.profile / f"playlists-{rate:.0f}.txt" if args.profile else None
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        pool.submit(playlist_open_loop, server.url, warm, rate, args.in_flight).result()
        spy = start_profile(server, profile) if profile else None
        cpu = server.cpu_seconds()
        result = pool.submit(playlist_open_loop, server.url, paths, rate, args.in_flight).result()
        used = server.cpu_seconds()
    if spy is not None:
        stop_profile(spy)
        summarise_profile(profile)
    if cpu is not None and used is not None:
        result["cpu_ms"] = 1000 * (used - cpu) / (len(paths) + 30)
    result["load"] = load_average()
    return result


def playlist_benchmark(args) -> None:
    """50-track mix playlists (GET /v1/users/{id}/playlist) on the same catalogue, served
    with the ANN index, at ``PLAYLIST_RPS`` offered (and at ``--playlist-rates``, if given);
    prints p50 / p99, server and client CPU per request, the load average and the target."""
    import dataclasses

    import httpx

    tmp = Path(tempfile.mkdtemp(prefix="tastemaker-bench-playlists-"))
    args.out = args.out or tmp
    try:
        data = synthetic_catalogue(args.users, args.artists, seed=args.seed)
        data = dataclasses.replace(data, tracks=synthetic_tracks(data))
        model_dir = playlist_model(args, data)
        print(f"playlists: {data.n_users:,} users x {data.n_items:,} artists", flush=True)
        server = Server(model_dir, True, args.workers)  # the ANN index, as served at this size
        rates = [PLAYLIST_RPS, *args.playlist_rates]
        results = []
        try:
            server.wait_ready()
            rng = np.random.default_rng(args.seed + 2)
            users = rng.integers(0, data.n_users, args.playlist_requests + args.playlist_warmup)
            query = "mode=mix&n=50&day=2025-01-"
            paths = [
                f"/v1/users/{data.users.id(int(u))}/playlist?{query}{1 + i % 28:02d}"
                for i, u in enumerate(users)
            ]
            warm, paths = paths[: args.playlist_warmup], paths[args.playlist_warmup :]
            with httpx.Client(base_url=server.url, timeout=300) as client:
                for path in warm[:5]:  # the first request builds the model's Library
                    client.get(path)
            print(
                f"each run: {len(warm):,} untimed warm-up requests at its rate (other users), "
                f"then {len(paths):,} timed", flush=True,
            )  # fmt: skip
            spawn = multiprocessing.get_context("spawn")
            for rate in rates:
                results.append(playlist_run(server, warm, paths, rate, args, spawn))
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for rate, r in zip(rates, results, strict=True):
        print(
            f"playlist (mix, 50 tracks) at {rate:.0f} req/s offered: p50 {r['p50']:.2f} ms, "
            f"p99 {r['p99']:.2f} ms, {r['rps']:.0f} req/s achieved, {r['requests']:,} requests, "
            f"{r['errors']} errors; server CPU {r.get('cpu_ms', float('nan')):.2f} ms/request, "
            f"client CPU {r['client_cpu_ms']:.2f} ms/request; {r['load']}"
        )
    first = results[0]
    ok = first["p99"] <= PLAYLIST_P99_MS and first["rps"] >= 0.95 * PLAYLIST_RPS
    print(
        f"  {'PASS' if ok and not first['errors'] else 'MISS'}  playlist p99 <= "
        f"{PLAYLIST_P99_MS:.0f} ms at {PLAYLIST_RPS:.0f} req/s, zero errors"
    )


if __name__ == "__main__":
    main()

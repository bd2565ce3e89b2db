"""Open-loop load generator: requests sent at fixed intended times, whatever the server does.

``open_loop(url, requests, rate)`` sends request i at ``start + i / rate`` from one client
process (aiohttp's client on uvloop, keep-alive connections, bodies serialised before the
clock starts) and measures each request's latency from that intended send time, not from when
the client got round to sending it: a stall (the server's or the client's) is counted for
every request it delays (coordinated omission). Each response is read whole and checked
(status 200 and a non-empty ``expect`` list, or one of exactly ``expect_len`` entries).

Besides p50 / p99 / p99.9 / max and the rate achieved (completed requests over the run's wall
time, tail included) it reports what the client itself cost: its CPU per request and how late
it sent (send lag p99 and max), so a figure limited by the client shows as such.

``--client httpx`` is the generator this replaced (httpx.AsyncClient on asyncio, the same
schedule): run as a script, this measures both against the floor route of a running
``tastemaker serve`` in alternating rounds (the proof the generator can offer the rate):

    .venv/bin/python bench/loadgen.py --out /tmp/serve-model        # model made there if absent
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

CLIENTS = ("aiohttp", "httpx")


def open_loop(
    url: str,
    requests: list,
    rate: float,
    max_in_flight: int = 64,
    expect: str = "items",
    expect_len: int | None = None,
    warmup: int = 50,
    client: str = "aiohttp",
) -> dict:
    """Send ``requests`` ((method, path, JSON body or None), ...) at ``rate`` per second.

    The first ``warmup`` requests (sent back to back, not measured) open the connections.
    Runs its own event loop: call it in a process of its own (a ProcessPoolExecutor with the
    spawn context), so that the client does not share an interpreter with anything else.
    """
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {CLIENTS}, not {client!r}")
    prepared = [
        (method, path, None if body is None else orjson.dumps(body))
        for method, path, body in requests
    ]
    check = (expect, expect_len)
    if client == "httpx":
        return asyncio.run(_httpx(url, prepared, rate, max_in_flight, check, warmup))
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_aiohttp(url, prepared, rate, max_in_flight, check, warmup))


def _ok(status: int, payload: bytes, check: tuple[str, int | None]) -> str | None:
    """None for a good answer, else what was wrong (the status code or the exception)."""
    if status != 200:
        return str(status)
    key, length = check
    try:
        got = len(orjson.loads(payload)[key])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return type(exc).__name__
    if (length is None and got == 0) or (length is not None and got != length):
        return f"{got} {key}"
    return None


async def _aiohttp(url, prepared, rate, max_in_flight, check, warmup) -> dict:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=max_in_flight, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        url,
        connector=connector,
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),  # no cookies to keep: skip the jar per request
        auto_decompress=False,
    ) as session:

        async def send(method: str, path: str, body: bytes | None) -> str | None:
            try:
                async with session.request(
                    method, path, data=body, headers=headers if body is not None else None
                ) as r:
                    return _ok(r.status, await r.read(), check)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return type(exc).__name__

        return await _schedule(send, prepared, rate, max_in_flight, warmup)


async def _httpx(url, prepared, rate, max_in_flight, check, warmup) -> dict:
    import httpx

    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as session:

        async def send(method: str, path: str, body: bytes | None) -> str | None:
            try:
                r = await session.request(
                    method, path, content=body, headers=headers if body is not None else None
                )
            except httpx.HTTPError as exc:
                return type(exc).__name__
            return _ok(r.status_code, r.content, check)

        return await _schedule(send, prepared, rate, max_in_flight, warmup)


async def _schedule(send, prepared, rate: float, max_in_flight: int, warmup: int) -> dict:
    """Request i goes at ``started + i / rate``; its latency counts from then."""
    gate = asyncio.Semaphore(max_in_flight)
    count = len(prepared)
    latency = np.zeros(count)
    lag = np.zeros(count)
    kinds: dict[str, int] = {}

    async def one(i: int, due: float) -> None:
        async with gate:  # waiting here for a free connection is part of the latency
            lag[i] = time.perf_counter() - due
            kind = await send(*prepared[i])
        latency[i] = time.perf_counter() - due
        if kind is not None:
            kinds[kind] = kinds.get(kind, 0) + 1

    for req in prepared[:warmup]:  # open connections, warm the server; not measured
        await send(*req)
    # The client's own garbage collection pauses would be counted as server latency.
    gc.collect()
    gc.disable()
    try:
        cpu = time.process_time()
        started = time.perf_counter()
        tasks = []
        for i in range(count):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        gc.enable()
    ms = latency * 1000
    return {
        "requests": count,
        "errors": sum(kinds.values()),
        "error_kinds": kinds,
        "offered": rate,
        "rps": count / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "p999": float(np.percentile(ms, 99.9)),
        "max": float(ms.max()),
        "client_cpu_ms": 1000 * cpu / count,
        "lag_p99": float(np.percentile(lag, 99) * 1000),
        "lag_max": float(lag.max() * 1000),
    }


def h2load_open_loop(
    url: str, paths: list[str], rate: float, max_in_flight: int = 64
) -> dict | None:
    """GET ``paths`` at ``rate`` per second with h2load (nghttp2's C client; ``apt-get install
    -y nghttp2-client``), None where it is not installed.

    One HTTP/1.1 connection, requests pipelined up to ``max_in_flight`` (``--rps`` works per
    connection and starts every connection at once, so several would send in bursts; its
    timing script drifts: each offset counts from when the previous request went). h2load
    times a request from when it sent it; from its log (send time and duration of every
    request) this also reports the latency from the intended send time (request i at
    ``start + i / rate``, the start taken as the least late request's), so that the client's
    own lateness counts (coordinated omission). Bodies are not checked, only the status.
    """
    exe = shutil.which("h2load")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory(prefix="tastemaker-h2load-") as tmp:
        script, log = Path(tmp) / "paths.txt", Path(tmp) / "log.tsv"
        script.write_text("".join(f"{url}{p}\n" for p in paths))
        warm = Path(tmp) / "warm.txt"
        warm.write_text("".join(f"{url}{p}\n" for p in paths[:50]))
        subprocess.run(
            [exe, "--h1", "-c1", "-n50", "-i", str(warm)], capture_output=True, timeout=120
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(
            [exe, "--h1", "-c1", f"-m{max_in_flight}", f"--rps={rate:g}", f"-n{len(paths)}",
             "-i", str(script), "--log-file", str(log)],
            capture_output=True, text=True, timeout=60 + 2 * len(paths) / rate,
        )  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        rows = np.loadtxt(log, dtype=np.int64, ndmin=2) if log.stat().st_size else np.zeros((0, 3))
    if len(rows) == 0:
        raise RuntimeError(f"h2load logged no requests: {out.stdout[-500:]} {out.stderr[-500:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return h2load_figures(rows, rate, len(paths), cpu)


def h2load_figures(rows: np.ndarray, rate: float, sent: int, cpu_seconds: float) -> dict:
    """The figures of an h2load log (rows: send time in us since the epoch, status, us to the
    end of the answer; one connection, so sent in order), as ``open_loop`` reports them:
    latency from the intended send time (request i due ``i / rate`` after the least late
    one's due time), from the actual send (``sent_*``), send lag; unlogged requests are
    errors."""
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    elapsed = ((rows[:, 0] + rows[:, 2]).max() - rows[0, 0]) / 1e6  # first send to last answer
    lag = rows[:, 0] - 1e6 * np.arange(len(rows)) / rate
    lag = (lag - lag.min()) / 1000  # ms late against the least late request
    service = rows[:, 2] / 1000
    intended = lag + service
    return {
        "requests": len(rows),
        "errors": int((rows[:, 1] != 200).sum()) + sent - len(rows),
        "error_kinds": {},
        "offered": rate,
        "rps": len(rows) / max(elapsed, 1e-9),
        "p50": float(np.percentile(intended, 50)),
        "p99": float(np.percentile(intended, 99)),
        "p999": float(np.percentile(intended, 99.9)),
        "max": float(intended.max()),
        "sent_p50": float(np.percentile(service, 50)),
        "sent_p99": float(np.percentile(service, 99)),
        "client_cpu_ms": 1000 * cpu_seconds / len(rows),
        "lag_p99": float(np.percentile(lag, 99)),
        "lag_max": float(lag.max()),
    }


def describe(r: dict) -> str:
    """One line: latency, the rate achieved, errors and what the client cost."""
    return (
        f"p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, p99.9 {r['p999']:.2f} ms, "
        f"max {r['max']:.1f} ms; {r['rps']:.1f} req/s of {r['offered']:.0f} offered "
        f"({r['rps'] / r['offered']:.3f}x), {r['requests']:,} requests, {r['errors']} errors; "
        f"client CPU {r['client_cpu_ms']:.3f} ms/request, send lag p99 {r['lag_p99']:.2f} ms "
        f"(max {r['lag_max']:.1f})"
    )


# -- the proof: both clients against the floor route, alternating -------------------------------
def main() -> None:
    import concurrent.futures
    import multiprocessing
    import statistics

    from busy import load_average, modes, neighbour
    from serve import Server, trained_model, workload

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=__import__("pathlib").Path, required=True)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--artists", type=int, default=200_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=330.0)
    parser.add_argument("--requests", type=int, default=5000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--kind", default="floor", choices=("floor", "user", "history"))
    parser.add_argument("--busy", action="store_true", help="beside a neighbour on one core")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir, data = trained_model(args)
    requests, _ = workload(data, args.kind, args.requests, seed=args.seed + 1)
    server = Server(model_dir, ann=args.kind != "floor", workers=1)
    spawn = multiprocessing.get_context("spawn")
    rows: dict[str, list[dict]] = {c: [] for c in args.clients.split(",")}
    try:
        server.wait_ready()
        print(f"{args.kind} route at {args.rate:.0f}/s offered; {load_average()}", flush=True)
        for busy in modes(args.busy):
            with neighbour(busy), concurrent.futures.ProcessPoolExecutor(1, spawn) as pool:
                for r in range(args.rounds):
                    for client in rows:
                        cpu = server.cpu_seconds()
                        out = pool.submit(
                            open_loop, server.url, requests, args.rate, client=client
                        ).result()
                        if cpu is not None:
                            out["cpu_ms"] = (
                                1000 * (server.cpu_seconds() - cpu) / (len(requests) + 50)
                            )
                        out["load"] = os.getloadavg()[0]
                        rows[client].append(out)
                        print(
                            f"[{'busy' if busy else 'quiet'} round {r + 1}] {client}: "
                            f"{describe(out)}; server CPU {out.get('cpu_ms', 0):.3f} ms/request; "
                            f"load {out['load']:.2f}",
                            flush=True,
                        )
    finally:
        server.stop()
    for client, outs in rows.items():
        med = {k: statistics.median(o[k] for o in outs) for k in ("rps", "p99", "client_cpu_ms")}
        print(
            f"{client}: median of {len(outs)} rounds: {med['rps']:.1f} req/s "
            f"({med['rps'] / args.rate:.3f}x offered), p99 {med['p99']:.2f} ms, "
            f"client CPU {med['client_cpu_ms']:.3f} ms/request"
        )
    print(load_average())


if __name__ == "__main__":
    main()

"""Soak test of the service (issue 13): mixed good and hostile requests, with reloads between.

For ``--workers 1`` and ``--workers 2`` it starts ``tastemaker serve`` on loopback and sends
``--requests`` requests from several client threads: good ones (user and history
recommendations, similar items, search, health) mixed with bad ones (NaN / Infinity bodies,
malformed and deeply nested JSON, huge headers, oversized bodies, unknown ids, out-of-range
parameters). Meanwhile an admin thread reloads, in turn, good models and malformed ones
(a truncated LightGBM ranker, factors with too few rows, NaN factors, a bad CSR ``indptr``);
after each good reload it checks on fresh connections that every worker answers from the new
model.

It passes when: no answer is 5xx, no good request meets a connection error, every good request
is answered 200 by a model that was loaded and valid, every malformed reload is refused (400)
and every good one swaps all workers. Everything runs on 127.0.0.1.

    nice -n 10 .venv/bin/python bench/soak.py [--requests 10000] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from tastemaker.artifacts import MANIFEST, file_sha256, save_arrays
from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model

TOKEN = "soak-test-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD_MODELS = ("als", "popularity")


# -- models: good ones and malformed copies with valid checksums ------------------------------
def rehash(directory: Path) -> None:
    for path in sorted(directory.rglob(MANIFEST), key=lambda p: -len(p.parts)):
        manifest = json.loads(path.read_text())
        manifest["files"] = {
            p.relative_to(path.parent).as_posix(): file_sha256(p)
            for p in sorted(path.parent.rglob("*"))
            if p.is_file() and p != path
        }
        path.write_text(json.dumps(manifest))


def tampered(source: Path, target: Path, change) -> Path:
    shutil.copytree(source, target)
    change(target)
    rehash(target)
    return target


def edit_arrays(file: str, change):
    def apply(directory: Path) -> None:
        with np.load(directory / file) as npz:
            arrays = {k: npz[k] for k in npz.files}
        change(arrays)
        save_arrays(directory / file, **arrays)

    return apply


def build_models(root: Path) -> tuple[dict[str, Path], dict[str, Path], object]:
    interactions = synthetic_interactions(users=400, artists=800, listens=40_000, seed=0)
    good = {
        "als": create_model("als", factors=16, iterations=5).fit(interactions).save(root / "als"),
        "popularity": create_model("popularity").fit(interactions).save(root / "popularity"),
    }
    hybrid = create_model(
        "hybrid", generators="als,popularity", iterations=10, candidates=30, features="scores"
    ).fit(interactions)
    hybrid_dir = hybrid.save(root / "hybrid")

    def truncate(directory: Path) -> None:
        path = directory / "ranker.txt"
        path.write_text(path.read_text()[: len(path.read_text()) // 2])

    def short_rows(a):
        a["user_factors"] = a["user_factors"][:10]

    def nan_factors(a):
        a["item_factors"] = np.full_like(a["item_factors"], np.nan)

    def reversed_indptr(a):
        a["indptr"] = a["indptr"][::-1].copy()

    malformed = {
        "truncated ranker": tampered(hybrid_dir, root / "bad-ranker", truncate),
        "short factor rows": tampered(
            good["als"], root / "bad-rows", edit_arrays("model.npz", short_rows)
        ),
        "NaN factors": tampered(
            good["als"], root / "bad-nan", edit_arrays("model.npz", nan_factors)
        ),
        "bad indptr": tampered(
            good["popularity"], root / "bad-indptr", edit_arrays("data/matrix.npz", reversed_indptr)
        ),
    }
    return good, malformed, interactions


# -- requests ------------------------------------------------------------------------------------
def request_mix(interactions, rng: random.Random):
    """An endless stream of (kind, good, method, path, kwargs)."""
    users = interactions.users.to_list()
    items = interactions.items.to_list()
    names = interactions.item_metadata["name"].to_list()
    huge = "a" * 8_500_000  # built once: an 8.5 MB header
    large = "a" * 300_000
    deep = b"[" * 100_000 + b"]" * 100_000
    json_header = {"content-type": "application/json"}
    while True:
        roll = rng.random()
        user, item = rng.choice(users), rng.choice(items)
        history = {
            "history": [
                {"item": rng.choice(items), "count": rng.randint(1, 50)}
                for _ in range(rng.randint(1, 20))
            ]
        }
        if roll < 0.25:
            yield "user", True, "GET", f"/v1/users/{user}/recommendations?n=10", {}
        elif roll < 0.45:
            yield "history", True, "POST", "/v1/recommendations?n=10", {"json": history}
        elif roll < 0.55:
            yield "similar", True, "GET", f"/v1/items/{item}/similar?n=10", {}
        elif roll < 0.62:
            yield "search", True, "GET", "/v1/items", {"params": {"search": rng.choice(names)[:4]}}
        elif roll < 0.67:
            yield "health", True, "GET", "/healthz", {}
        elif roll < 0.77:
            constant = rng.choice(["NaN", "Infinity", "-Infinity"])
            body = f'{{"history": [{{"item": "{item}", "count": {constant}}}]}}'.encode()
            yield (
                "nan-body",
                False,
                "POST",
                "/v1/recommendations",
                {"content": body, "headers": json_header},
            )
        elif roll < 0.81:
            yield (
                "malformed-json",
                False,
                "POST",
                "/v1/recommendations",
                {"content": b"{not json", "headers": json_header},
            )
        elif roll < 0.84:
            yield (
                "deep-json",
                False,
                "POST",
                "/v1/recommendations",
                {"content": deep, "headers": json_header},
            )
        elif roll < 0.86:
            yield "huge-header", False, "GET", "/healthz", {"headers": {"x-huge": huge}}
        elif roll < 0.89:
            yield "large-header", False, "GET", "/healthz", {"headers": {"x-large": large}}
        elif roll < 0.91:
            yield (
                "big-body",
                False,
                "POST",
                "/v1/recommendations",
                {"content": b" " * 1_200_000, "headers": json_header},
            )
        elif roll < 0.95:
            yield "unknown-user", False, "GET", "/v1/users/nobody-at-all/recommendations", {}
        else:
            yield "bad-n", False, "GET", f"/v1/users/{user}/recommendations?n=0", {}


class Tally:
    """Counts shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.errors: list[str] = []
        self.sent = 0
        self.server_errors = 0
        self.good_connection_errors = 0
        self.bad_connection_errors = 0
        self.invalid_answers = 0
        self.latencies: list[float] = []

    def add(self, kind: str, outcome: str) -> None:
        with self.lock:
            self.by_kind[kind][outcome] += 1


def client_thread(url, interactions, seed, quota, tally: Tally) -> None:
    rng = random.Random(seed)
    mix = request_mix(interactions, rng)
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(quota):
            kind, good, method, path, kwargs = next(mix)
            started = time.perf_counter()
            try:
                r = client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                with tally.lock:
                    if good:
                        tally.good_connection_errors += 1
                        tally.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                    else:
                        tally.bad_connection_errors += 1
                tally.add(kind, type(exc).__name__)
                continue
            took = time.perf_counter() - started
            tally.add(kind, str(r.status_code))
            with tally.lock:
                tally.sent += 1
                if good:
                    tally.latencies.append(took)
                if r.status_code >= 500:
                    tally.server_errors += 1
                    tally.errors.append(f"{kind}: {r.status_code} {r.text[:120]}")
            if good and not valid_answer(kind, r):
                with tally.lock:
                    tally.invalid_answers += 1
                    tally.errors.append(f"{kind}: invalid answer {r.status_code} {r.text[:120]}")


def valid_answer(kind: str, r: httpx.Response) -> bool:
    if r.status_code != 200:
        return False
    body = r.json()
    if kind == "health":
        return body["model"]["model"] in GOOD_MODELS
    if body.get("model") not in GOOD_MODELS:
        return False
    return kind == "search" or len(body["items"]) > 0


# -- reloads -------------------------------------------------------------------------------------
def reload_thread(url, good, malformed, stop: threading.Event, results: dict) -> None:
    order = []
    for bad in malformed:
        order += [("good", "popularity"), ("bad", bad), ("good", "als")]
    with httpx.Client(base_url=url, timeout=120) as client:
        i = 0
        while not stop.wait(0.8):
            what, name = order[i % len(order)]
            i += 1
            directory = good[name] if what == "good" else malformed[name]
            r = client.post("/v1/admin/reload", json={"model_dir": str(directory)}, headers=AUTH)
            if r.status_code == 409:  # another reload still running; not a failure
                results["busy"] += 1
                continue
            if what == "bad":
                results["malformed_refused" if r.status_code == 400 else "malformed_accepted"] += 1
                continue
            if r.status_code != 200:
                results["good_refused"] += 1
                continue
            results["good_swapped"] += 1
            # Every worker answers from the new model now (fresh connections reach both).
            for _ in range(10):
                model = httpx.get(url + "/healthz", timeout=30).json()["model"]["model"]
                results["stale_after_reload" if model != name else "fresh_after_reload"] += 1


# -- one run ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(workers: int, requests: int, clients: int, good, malformed, interactions) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TASTEMAKER_ADMIN_TOKEN": TOKEN}
    command = [
        sys.executable,
        "-c",
        "from tastemaker.cli import main; main()",
        "serve",
        str(good["als"]),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
    ]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"the server did not start:\n{log.read().decode()[-2000:]}")
                time.sleep(0.3)
            tally = Tally()
            results: dict = collections.Counter()
            stop = threading.Event()
            reloader = threading.Thread(
                target=reload_thread, args=(url, good, malformed, stop, results)
            )
            started = time.perf_counter()
            reloader.start()
            threads = [
                threading.Thread(
                    target=client_thread,
                    args=(url, interactions, 1000 * workers + c, requests // clients, tally),
                )
                for c in range(clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stop.set()
            reloader.join()
            seconds = time.perf_counter() - started
            alive = server.poll() is None
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    latencies = np.asarray(tally.latencies) * 1000
    return {
        "workers": workers,
        "requests": sum(sum(c.values()) for c in tally.by_kind.values()),
        "seconds": round(seconds, 1),
        "server_alive_at_end": alive,
        "5xx": tally.server_errors,
        "connection_errors_good": tally.good_connection_errors,
        "connection_errors_bad": tally.bad_connection_errors,
        "invalid_good_answers": tally.invalid_answers,
        "good_p50_ms": round(float(np.percentile(latencies, 50)), 1) if len(latencies) else None,
        "good_p99_ms": round(float(np.percentile(latencies, 99)), 1) if len(latencies) else None,
        "reloads": dict(results),
        "by_kind": {k: dict(v) for k, v in sorted(tally.by_kind.items())},
        "first_errors": tally.errors[:10],
    }


def passed(result: dict) -> bool:
    reloads = result["reloads"]
    return (
        result["server_alive_at_end"]
        and result["5xx"] == 0
        and result["connection_errors_good"] == 0
        and result["invalid_good_answers"] == 0
        and reloads.get("malformed_accepted", 0) == 0
        and reloads.get("malformed_refused", 0) > 0
        and reloads.get("good_refused", 0) == 0
        and reloads.get("good_swapped", 0) > 0
        and reloads.get("stale_after_reload", 0) == 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="Requests per run.")
    parser.add_argument("--workers", default="1,2", help="Comma-separated worker counts.")
    parser.add_argument("--clients", type=int, default=8, help="Client threads.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tastemaker-soak-") as tmp:
        good, malformed, interactions = build_models(Path(tmp))
        results = []
        for workers in (int(w) for w in args.workers.split(",")):
            result = run(workers, args.requests, args.clients, good, malformed, interactions)
            result["passed"] = passed(result)
            results.append(result)
            print(json.dumps(result, indent=2), flush=True)
    print(f"load average: {os.getloadavg()}")
    print(
        "| workers | requests | seconds | 5xx | conn. errors (good / bad) | invalid good answers "
        "| good p50 / p99 ms | malformed reloads refused | good reloads (stale answers) | passed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rl = r["reloads"]
        print(
            f"| {r['workers']} | {r['requests']:,} | {r['seconds']} | {r['5xx']} "
            f"| {r['connection_errors_good']} / {r['connection_errors_bad']} "
            f"| {r['invalid_good_answers']} | {r['good_p50_ms']} / {r['good_p99_ms']} "
            f"| {rl.get('malformed_refused', 0)} of "
            f"{rl.get('malformed_refused', 0) + rl.get('malformed_accepted', 0)} "
            f"| {rl.get('good_swapped', 0)} ({rl.get('stale_after_reload', 0)}) "
            f"| {'yes' if r['passed'] else 'NO'} |"
        )
    sys.exit(0 if all(r["passed"] for r in results) else 1)


if __name__ == "__main__":
    main()

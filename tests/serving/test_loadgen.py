"""bench/loadgen.py, the open-loop load generator of bench/serve.py: it offers the rate,
checks every answer, and counts a stall against every request it delays (coordinated
omission), not only against the one the server sat on."""

from __future__ import annotations

import importlib.util
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_browser import serving

from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _loadgen():
    spec = importlib.util.spec_from_file_location("loadgen", BENCH / "loadgen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


loadgen = _loadgen()


@pytest.fixture(scope="module")
def floor_url(tmp_path_factory):
    data = synthetic_interactions(users=200, artists=400, listens=10_000, seed=3)
    model = create_model("als", factors=8, iterations=3, seed=0).fit(data)
    directory = model.save(tmp_path_factory.mktemp("loadgen") / "model")
    with serving(directory, bench_floor=True) as url:
        yield url, data


def test_open_loop_reaches_the_offered_rate_and_checks_every_answer(floor_url):
    url, data = floor_url
    user = data.users.id(0)
    good = [("GET", "/v1/floor/u0/recommendations?n=10", None)] * 150
    good += [("GET", f"/v1/users/{user}/recommendations?n=5", None)] * 50
    good += [("POST", "/v1/recommendations?n=5", {"history": [{"item": data.items.id(1)}]})] * 50
    bad = [("GET", "/v1/users/nobody/recommendations", None)] * 7
    out = loadgen.open_loop(url, good + bad, rate=200.0, warmup=5)
    assert out["requests"] == 257
    assert out["errors"] == 7 and out["error_kinds"] == {"404": 7}
    # An open-loop client never sends ahead of its schedule (request i at start + i / rate),
    # however quiet or busy the machine; how close it gets to the rate is bench/serve.py's job.
    assert 0 < out["rps"] <= 200.0 * 257 / 256 * 1.001
    assert 0 < out["p50"] <= out["p99"] <= out["max"]
    assert out["client_cpu_ms"] > 0
    # An answer of the wrong length is an error too (the playlist check).
    short = loadgen.open_loop(url, good[:20], 100.0, expect="items", expect_len=11, warmup=0)
    assert short["errors"] == 20 and short["error_kinds"] == {"10 items": 20}


class _StallOnce(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the service

    def do_GET(self):
        if self.path == "/stall":
            time.sleep(1.0)
        body = b'{"items": [1]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_stall_counts_against_every_request_it_delays():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StallOnce)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        paths = ["/ok"] * 150
        paths[20] = "/stall"  # due at 0.2 s; holds the one connection for 1 s
        requests = [("GET", p, None) for p in paths]
        out = loadgen.open_loop(url, requests, rate=100.0, max_in_flight=1, warmup=2)
    finally:
        server.shutdown()
        server.server_close()
    assert out["errors"] == 0
    # About 100 requests were due during the stall and waited for it: measured from their
    # intended send times, the median is hundreds of milliseconds. Timed from when each was
    # sent, only the stalled request would be slow and the median would be ~1 ms.
    assert out["p50"] > 100.0
    assert out["max"] >= 900.0
    assert out["lag_max"] >= 500.0  # the client saw that it sent late


def test_h2load_figures_count_a_late_send_against_the_request():
    # The h2load wrapper's log reading: 200 requests due every 10 ms, each answered in 1 ms,
    # but the client stalled for 300 ms at request 50, sending the 30 due meanwhile at its end
    # (one connection: in order): from the intended time request 50 took 301 ms, from the
    # send 1 ms; one answered 500 and one was never logged: 2 errors.
    import numpy as np

    start = 1_700_000_000_000_000
    due = start + 10_000 * np.arange(199)
    sent = due.copy()
    sent[50:] = np.maximum(due[50:], due[50] + 300_000)
    status = np.full(199, 200)
    status[7] = 500
    rows = np.stack([sent, status, np.full(199, 1_000)], axis=1)[::-1]  # logged by end time
    out = loadgen.h2load_figures(rows, rate=100.0, sent=200, cpu_seconds=0.02)
    assert out["requests"] == 199 and out["errors"] == 2
    assert out["sent_p99"] == pytest.approx(1.0)
    assert out["lag_max"] == pytest.approx(300.0)
    assert out["max"] == pytest.approx(301.0) and out["p99"] > 250.0
    assert out["p50"] == pytest.approx(1.0)
    assert out["client_cpu_ms"] == pytest.approx(0.1, rel=0.01)
    assert 95.0 <= out["rps"] <= 101.0

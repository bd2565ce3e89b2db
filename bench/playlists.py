"""Playlist and radio cost in-process, on the serving benchmark's catalogue.

The catalogue, model and track tables of ``bench/serve.py --playlists`` (ALS, 64 factors, on
20,000 users x ~196,000 artists, 10 synthetic recordings per artist), and for the same users
(or prompts), in the same run, versions interleaved:

- before: the package as it was at ``--before`` (default: the last commit before the fast
  path), read out of git into a temporary folder and imported beside the current one;
- exact: ``tastemaker.playlists`` as it is now, scoring every artist (as for small
  catalogues);
- ours: the same with the approximate index (``TieredSearch``, as the service has it).

Each 50-track personal playlist (``--mode``) is timed whole and by stage (the functions the
versions share, wrapped with timers): ``listener`` (``Library.listener``), ``ranking`` (the
candidate artists: ``known_and_new``, before ``ranked_known_and_new``), ``tracks`` (candidate
tracks and their selection under the rules: the rest), ``reasons`` (``_with_reasons``),
``similarity`` (``Library.similarity``) and ``ordering`` (``smooth_order``). ``--radio`` times
100-track radios for ``artist:(X) tag:(T):2`` prompts (medium band; synthetic tags, 3 per
artist) instead: ``streams``, ``tracks`` (the blend and the rules), ``similarity``,
``ordering``. Prints mean ms per stage, p50 / p99 of the whole, CPU ms, the ratios, rule
violations of ours (must be 0), how many have the same tracks as before, and the load
average (the machine is shared). ``--http N`` serves the model instead (``tastemaker
serve``, before and now, both at once) and sends N sequential requests to each, in turn:
latency without queueing and the server's CPU per request.

    .venv/bin/python bench/playlists.py [--users 20000] [--artists 200000] [--playlists 200]
        [--mode mix] [--radio] [--http N] [--out /tmp/playlists-bench (keeps the model)]
        [--before REV]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from busy import load_average
from serve import synthetic_catalogue, synthetic_tracks

# The last commit before the fast path (issue 16): dense scoring, Track objects per request.
BEFORE = "9cd3afa"
PACKAGE = "tastemaker/playlists"
STAGES = ("listener", "ranking", "tracks", "reasons", "similarity", "ordering")
RADIO_STAGES = ("streams", "tracks", "similarity", "ordering")
# Printed: wall ms per stage, of the whole (mean, p50, p99) and CPU ms (mean: this process
# only, so less sensitive to a busy machine than wall time).
REPO = Path(__file__).resolve().parents[1]


def package_at(revision: str, into: Path) -> str:
    """``tastemaker.playlists`` as it was at ``revision``, importable as ``playlists_before``."""
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{revision}:src/{PACKAGE}"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    target = into / "playlists_before"
    target.mkdir(parents=True)
    for name in (n for n in listing if n.endswith(".py")):
        source = subprocess.run(
            ["git", "show", f"{revision}:src/{PACKAGE}/{name}"],
            cwd=REPO, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        (target / name).write_text(source.replace("tastemaker.playlists", "playlists_before"))
    sys.path.insert(0, str(into))
    return "playlists_before"


class StageClock:
    """Wraps a playlists package's stage functions with timers (seconds per stage)."""

    def __init__(self, package: str) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        library = importlib.import_module(f"{package}.library")
        personal = importlib.import_module(f"{package}.personal")
        self.package = importlib.import_module(package)
        self._wrap(library.Library, "listener", "listener")
        self._wrap(library.Library, "similarity", "similarity")
        # The candidate pools: known_and_new now, ranked_known_and_new before the fast path.
        ranking = "known_and_new" if hasattr(personal, "known_and_new") else "ranked_known_and_new"
        self._wrap(personal, ranking, "ranking")
        self._wrap(personal, "_with_reasons", "reasons")
        self._wrap(personal, "smooth_order", "ordering")
        radio = importlib.import_module(f"{package}.radio")
        self._wrap(radio, "smooth_order", "ordering")
        for kind in radio._STREAMS:
            self._wrap(radio._STREAMS, kind, "streams")

    def _wrap(self, owner, name: str, stage: str) -> None:
        inner = owner[name] if isinstance(owner, dict) else getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started

        if isinstance(owner, dict):
            owner[name] = timed
        else:
            setattr(owner, name, timed)

    def playlist(self, library, user: int, day: datetime, mode: str):
        """One playlist; returns it and its stage seconds (``tracks``: the remainder)."""
        self.seconds.clear()
        started, cpu = time.perf_counter(), time.process_time()
        listener = library.listener(user=user, now=day)
        made = self.package.personal_playlist(library, listener, mode, n=50, seed=0)
        total = time.perf_counter() - started
        stages = dict(self.seconds)
        stages["tracks"] = total - sum(stages.values())
        stages["total"] = total
        stages["cpu"] = time.process_time() - cpu
        return made, stages

    def radio(self, library, prompt: str, day: datetime):
        """One 100-track radio; returns it and its stage seconds (``tracks``: the rest)."""
        self.seconds.clear()
        started, cpu = time.perf_counter(), time.process_time()
        made = self.package.radio(library, prompt, "medium", now=day)
        total = time.perf_counter() - started
        stages = dict(self.seconds)
        stages["tracks"] = total - sum(stages.values())
        stages["total"] = total
        stages["cpu"] = time.process_time() - cpu
        return made, stages


def trained(args):
    from threadpoolctl import threadpool_limits

    from tastemaker.models import create_model, load_model

    data = synthetic_catalogue(args.users, args.artists, seed=args.seed)
    data = dataclasses.replace(data, tracks=synthetic_tracks(data))
    folder = args.out / "model" if args.out else None
    if folder is not None and (folder / "manifest.json").exists():
        print(f"reusing {folder} (same --users/--artists/--seed)", flush=True)
        return load_model(folder), data
    started = time.perf_counter()
    with threadpool_limits(1, "blas"):
        model = create_model("als", factors=args.factors, iterations=args.iterations, seed=0)
        model.fit(data)
    print(f"ALS fit {time.perf_counter() - started:.0f} s; {load_average()}", flush=True)
    if folder is not None:
        model.save(folder)
        model = load_model(folder)  # as the service has it: loaded from its folder
    return model, data


def summary(rows: list[dict[str, float]], stages=STAGES) -> dict[str, float]:
    ms = {k: 1000 * np.asarray([r.get(k, 0.0) for r in rows]) for k in (*stages, "total", "cpu")}
    out = {k: float(v.mean()) for k, v in ms.items()}
    out["p50"] = float(np.percentile(ms["total"], 50))
    out["p99"] = float(np.percentile(ms["total"], 99))
    return out


def synthetic_tags(data, per_item: int = 3, tags: int = 500, seed: int = 0):
    """Item tags for the synthetic catalogue: ``per_item`` of ``tags`` names per artist, the
    names Zipf-distributed (a few tags on many artists, most on a few)."""
    import polars as pl

    from tastemaker.data.tracks import ITEM_TAG_COLUMNS

    rng = np.random.default_rng(seed)
    names = rng.zipf(1.3, per_item * data.n_items) % tags
    frame = pl.DataFrame(
        {
            "item": np.repeat(np.arange(data.n_items), per_item),
            "tag": [f"tag {t}" for t in names],
            "weight": rng.integers(1, 100, per_item * data.n_items),
        }
    )
    return frame.unique(["item", "tag"], keep="first").sort("item").cast(ITEM_TAG_COLUMNS)


def radio_benchmark(args, clocks, libraries, data) -> None:
    """``--radio``: 100-track radios for "artist:(X) tag:(T):2" prompts, medium band."""
    from threadpoolctl import threadpool_limits

    from tastemaker.playlists import Rules, violations
    from tastemaker.playlists.constraints import RADIO_MAX_PER_ARTIST

    tags = synthetic_tags(data)
    for library in libraries.values():
        library.track_data = dataclasses.replace(library.track_data, item_tags=tags)
    rng = np.random.default_rng(args.seed + 3)
    names = data.item_metadata["name"].to_list()
    prompts = [
        f"artist:({names[int(a)]}) tag:(tag {int(t)}):2"
        for a, t in zip(rng.integers(0, data.n_items, args.playlists + 5),
                        rng.integers(0, 60, args.playlists + 5), strict=True)
    ]  # fmt: skip
    rows: dict[str, list] = {name: [] for name in libraries}
    bad = same = 0
    with threadpool_limits(1, "blas"):
        for i, prompt in enumerate(prompts):
            day = datetime(2025, 1, 1 + i % 28, tzinfo=UTC)
            made = {}
            for name in list(libraries)[i % 2 :] + list(libraries)[: i % 2]:
                made[name], stages = clocks[name].radio(libraries[name], prompt, day)
                if i >= 5:
                    rows[name].append(stages)
            if i >= 5:
                bad += bool(violations(made["ours"], Rules(100, RADIO_MAX_PER_ARTIST)))
                same += {t.recording for t in made["ours"].tracks} == {
                    t.recording for t in made["before"].tracks
                }
    report(rows, RADIO_STAGES, f"{args.playlists} radios of 100 tracks per version")
    print(f"rule violations (ours): {bad} of {args.playlists}; the same tracks as before: {same}")


def report(rows: dict[str, list], stages, what: str) -> dict[str, dict[str, float]]:
    """Prints the table of stage ms and the ratios against ``before``; returns the figures."""
    columns = (*stages, "total", "p50", "p99", "cpu")
    results = {name: summary(r, stages) for name, r in rows.items()}
    print(f"\n{what}; {load_average()}")
    print(f"{'':8}" + "".join(f"{c:>11}" for c in columns) + "  (ms)")
    for name, figures in results.items():
        print(f"{name:8}" + "".join(f"{figures[k]:>11.2f}" for k in columns))
    for name in (n for n in results if n != "before"):
        ratio = results["before"]["total"] / results[name]["total"]
        p99 = results["before"]["p99"] / results[name]["p99"]
        cpu = results["before"]["cpu"] / results[name]["cpu"]
        print(f"before / {name}: {ratio:.1f}x mean, {p99:.1f}x p99, {cpu:.1f}x CPU")
    return results


def playlist_benchmark(args, clocks, libraries, data) -> None:
    """Personal playlists (``--mode``) for random users and days, versions interleaved."""
    from threadpoolctl import threadpool_limits

    from tastemaker.playlists import Rules, violations
    from tastemaker.playlists.constraints import PERSONAL_MAX_PER_ARTIST
    from tastemaker.playlists.personal import freshness

    rng = np.random.default_rng(args.seed + 2)
    users = rng.integers(0, data.n_users, args.playlists + 10)
    rows: dict[str, list] = {name: [] for name in libraries}
    bad = same = exact_same = 0
    # One BLAS thread, as the service runs; the first 10 playlists warm caches up.
    with threadpool_limits(1, "blas"):
        for i, user in enumerate(users.tolist()):
            day = datetime(2025, 1, 1 + i % 28, tzinfo=UTC)
            made = {}
            for name in list(libraries)[i % 3 :] + list(libraries)[: i % 3]:  # who goes first
                made[name], stages = clocks[name].playlist(libraries[name], user, day, args.mode)
                if i >= 10:
                    rows[name].append(stages)
            if i < 10:
                continue
            listener = libraries["ours"].listener(user=user, now=day)
            rules = Rules(50, PERSONAL_MAX_PER_ARTIST, freshness(args.mode, listener))
            bad += bool(violations(made["ours"], rules)) + bool(violations(made["exact"], rules))
            picked = {name: {t.recording for t in p.tracks} for name, p in made.items()}
            same += picked["ours"] == picked["before"]
            exact_same += picked["exact"] == picked["before"]
    report(rows, STAGES, f"{args.playlists} {args.mode} playlists of 50 tracks per version")
    print(
        f"rule violations (exact and ours): {bad} of {2 * args.playlists}; the same tracks as "
        f"before: exact {exact_same}, ours {same} of {args.playlists} (order aside; ours "
        "takes its new artists from the approximate index)"
    )


def source_at(revision: str, into: Path) -> Path:
    """The whole ``src/`` tree at ``revision`` (the service changed with the package)."""
    archive = subprocess.run(
        ["git", "archive", revision, "src"], cwd=REPO, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def http_benchmark(args, model_dir: Path, data, tmp: Path) -> None:
    """``--http N``: the service itself (``tastemaker serve``, one worker, the ANN index as
    served at this size), before and now, N sequential playlist requests each: latency
    without queueing and the server's CPU per request (from /proc, so another tenant's load
    does not count), the figure that says how many playlists a free core serves."""
    import httpx

    from serve import Server

    rng = np.random.default_rng(args.seed + 2)
    users = rng.integers(0, data.n_users, args.http + 20)
    query = f"mode={args.mode}&n=50&day=2025-01-"
    paths = [
        f"/v1/users/{data.users.id(int(u))}/playlist?{query}{1 + i % 28:02d}"
        for i, u in enumerate(users.tolist())
    ]
    sources = {"before": source_at(args.before, tmp), "ours": REPO / "src"}
    servers = {}
    try:
        for name, source in sources.items():
            os.environ["PYTHONPATH"] = str(source)  # the server imports tastemaker from there
            servers[name] = Server(model_dir, True, 1)
            os.environ.pop("PYTHONPATH", None)
        clients = {}
        for name, server in servers.items():
            server.wait_ready()
            clients[name] = httpx.Client(base_url=server.url, timeout=60)
            for path in paths[:20]:  # warm-up: the first builds the Library
                clients[name].get(path)
        # Alternating, one request to each in turn: both see the same load.
        seconds: dict[str, list[float]] = {name: [] for name in servers}
        cpu = dict.fromkeys(servers, 0.0)
        for i, path in enumerate(paths[20:]):
            for name in list(servers)[i % 2 :] + list(servers)[: i % 2]:
                used = servers[name].cpu_seconds() or 0.0
                started = time.perf_counter()
                answer = clients[name].get(path)
                seconds[name].append(time.perf_counter() - started)
                cpu[name] += (servers[name].cpu_seconds() or 0.0) - used
                if answer.status_code != 200 or len(answer.json()["tracks"]) != 50:
                    raise SystemExit(f"{name}: {path} answered {answer.status_code}")
    finally:
        for server in servers.values():
            server.stop()
    for name, taken in seconds.items():
        ms = 1000 * np.asarray(taken)
        print(
            f"{name}: {len(taken)} sequential requests, p50 {np.percentile(ms, 50):.1f} ms, "
            f"p99 {np.percentile(ms, 99):.1f} ms, server CPU {1000 * cpu[name] / len(taken):.2f} "
            f"ms a request; {load_average()}",
            flush=True,
        )
    print(f"before / ours: {cpu['before'] / cpu['ours']:.2f}x server CPU a request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--artists", type=int, default=200_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--playlists", type=int, default=200, help="per version (or radios)")
    parser.add_argument("--mode", default="mix", choices=("jams", "exploration", "mix"))
    parser.add_argument("--radio", action="store_true", help="radios instead of playlists")
    parser.add_argument(
        "--http", type=int, default=0, help="N: also serve N requests (before, now); needs --out"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before", default=BEFORE, help="git revision of the reference")
    parser.add_argument("--out", type=Path, default=None, help="keep (and reuse) the model here")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; {load_average()}", flush=True)

    from tastemaker.playlists.candidates import TieredSearch

    with tempfile.TemporaryDirectory(prefix="tastemaker-bench-playlists-") as tmp:
        ours = StageClock("tastemaker.playlists")
        before = StageClock(package_at(args.before, Path(tmp)))
        model, data = trained(args)
        print(f"{data.n_users:,} users x {data.n_items:,} artists; {load_average()}", flush=True)
        if args.http:
            if args.out is None:
                raise SystemExit("--http needs --out (the served model folder)")
            http_benchmark(args, args.out / "model", data, Path(tmp))
            return
        builders = {
            "before": lambda: before.package.Library(model),
            "exact": lambda: ours.package.Library(model),
        }
        if not args.radio:  # radio does not use the index: no need to build it
            started = time.perf_counter()
            search = TieredSearch(model)
            print(f"index built in {time.perf_counter() - started:.1f} s; {load_average()}")
            builders["ours"] = lambda: ours.package.Library(model, search=search)
            if "search" in inspect.signature(before.package.Library).parameters:
                # A reference with the fast path: the same index (the service's way)
                builders["before"] = lambda: before.package.Library(model, search=search)
        else:
            builders["ours"] = builders.pop("exact")
        libraries = {}
        for name, build in builders.items():
            started = time.perf_counter()
            libraries[name] = build()
            print(f"{name}: Library built in {time.perf_counter() - started:.1f} s", flush=True)
        clocks = {name: before if name == "before" else ours for name in libraries}
        if args.radio:
            radio_benchmark(args, clocks, libraries, data)
        else:
            playlist_benchmark(args, clocks, libraries, data)


if __name__ == "__main__":
    main()

"""Playlist cost in-process: 50-track personal playlists on the serving benchmark's catalogue.

The catalogue, model and track tables of ``bench/serve.py --playlists`` (ALS, 64 factors, on
20,000 users x ~196,000 artists, 10 synthetic recordings per artist), and for the same users,
in the same run, alternating which goes first:

- exact: ``tastemaker.playlists`` as it is now, scoring every artist (small catalogues);
- ours: the same with the approximate index (``TieredSearch``, as the service has it);
- before: the same package as it was at ``--before`` (default: the last commit before the
  fast path), read out of git into a temporary folder and imported beside it.

Each playlist is timed whole and by stage (the functions both versions share, wrapped with
timers): ``listener`` (``Library.listener``), ``ranking`` (the candidate artists:
``known_and_new``, before ``ranked_known_and_new``), ``tracks`` (candidate tracks and their
selection under the rules: the rest), ``reasons`` (``_with_reasons``), ``similarity``
(``Library.similarity``) and ``ordering`` (``smooth_order``). Prints mean ms per stage,
p50 / p99 of the whole, CPU ms, the ratios, rule violations of ours (must be 0), how
many playlists have the same tracks as before, and the load average (the machine is shared).

    .venv/bin/python bench/playlists.py [--users 20000] [--artists 200000] [--playlists 200]
        [--mode mix] [--out /tmp/playlists-bench (keeps the model)] [--before REV]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
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
# Wall ms per stage, whole playlist (mean, p50, p99) and CPU ms (mean: this process only,
# so less sensitive to a busy machine than wall time).
COLUMNS = (*STAGES, "total", "p50", "p99", "cpu")
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

    def _wrap(self, owner, name: str, stage: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started

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


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    ms = {k: 1000 * np.asarray([r[k] for r in rows]) for k in (*STAGES, "total", "cpu")}
    out = {k: float(v.mean()) for k, v in ms.items()}
    out["p50"] = float(np.percentile(ms["total"], 50))
    out["p99"] = float(np.percentile(ms["total"], 99))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--artists", type=int, default=200_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--playlists", type=int, default=200)
    parser.add_argument("--mode", default="mix", choices=("jams", "exploration", "mix"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before", default=BEFORE, help="git revision of the reference")
    parser.add_argument("--out", type=Path, default=None, help="keep (and reuse) the model here")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; {load_average()}", flush=True)

    from threadpoolctl import threadpool_limits

    from tastemaker.playlists import Rules, violations
    from tastemaker.playlists.candidates import TieredSearch
    from tastemaker.playlists.constraints import PERSONAL_MAX_PER_ARTIST
    from tastemaker.playlists.personal import freshness

    with tempfile.TemporaryDirectory(prefix="tastemaker-bench-playlists-") as tmp:
        ours, before = (
            StageClock("tastemaker.playlists"),
            StageClock(package_at(args.before, Path(tmp))),
        )
        model, data = trained(args)
        print(f"{data.n_users:,} users x {data.n_items:,} artists; {load_average()}", flush=True)
        started = time.perf_counter()
        search = TieredSearch(model)
        print(f"index built in {time.perf_counter() - started:.1f} s; {load_average()}", flush=True)
        versions = {
            "before": (before, lambda: before.package.Library(model)),
            "exact": (ours, lambda: ours.package.Library(model)),
            "ours": (ours, lambda: ours.package.Library(model, search=search)),
        }
        libraries = {}
        for name, (_, build) in versions.items():
            started = time.perf_counter()
            libraries[name] = build()
            print(f"{name}: Library built in {time.perf_counter() - started:.1f} s", flush=True)
        rng = np.random.default_rng(args.seed + 2)
        users = rng.integers(0, data.n_users, args.playlists + 10)
        rows: dict[str, list] = {name: [] for name in versions}
        bad = same = exact_same = 0
        # One BLAS thread, as the service runs; the first 10 playlists warm caches up.
        with threadpool_limits(1, "blas"):
            for i, user in enumerate(users.tolist()):
                day = datetime(2025, 1, 1 + i % 28, tzinfo=UTC)
                names = list(versions)[i % 3 :] + list(versions)[: i % 3]  # who goes first
                made = {}
                for name in names:
                    clock = versions[name][0]
                    made[name], stages = clock.playlist(libraries[name], user, day, args.mode)
                    if i >= 10:
                        rows[name].append(stages)
                if i < 10:
                    continue
                listener = libraries["ours"].listener(user=user, now=day)
                rules = Rules(50, PERSONAL_MAX_PER_ARTIST, freshness(args.mode, listener))
                bad += bool(violations(made["ours"], rules)) + bool(
                    violations(made["exact"], rules)
                )
                picked = {name: {t.recording for t in p.tracks} for name, p in made.items()}
                same += picked["ours"] == picked["before"]
                exact_same += picked["exact"] == picked["before"]
        load = load_average()
    results = {name: summary(r) for name, r in rows.items()}
    print(f"\n{args.playlists} {args.mode} playlists of 50 tracks per version; {load}")
    print(f"{'':8}" + "".join(f"{c:>11}" for c in COLUMNS) + "  (ms)")
    for name, figures in results.items():
        keys = COLUMNS
        print(f"{name:8}" + "".join(f"{figures[k]:>11.2f}" for k in keys))
    for name in ("exact", "ours"):
        ratio = results["before"]["total"] / results[name]["total"]
        p99 = results["before"]["p99"] / results[name]["p99"]
        cpu = results["before"]["cpu"] / results[name]["cpu"]
        print(f"before / {name}: {ratio:.1f}x mean, {p99:.1f}x p99, {cpu:.1f}x CPU")
    print(
        f"rule violations (exact and ours): {bad} of {2 * args.playlists}; the same tracks as "
        f"before: exact {exact_same}, ours {same} of {args.playlists} (order aside; ours "
        "takes its new artists from the approximate index)"
    )


if __name__ == "__main__":
    main()

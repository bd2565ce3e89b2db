"""Defaults that transfer: each model's candidate defaults against each data set's tuned optimum.

For every data set and model:

- the tuned optimum: ``tastemaker tune``'s search (Optuna TPE on validation carved from the
  default protocol's training part, the model's shipped space, ``--repeats 1``, a few trials)
  evaluated once on the default protocol's test split (NDCG@10, seed 0);
- every candidate default of ``CANDIDATES`` (the current defaults first) fitted on the same
  training part and scored on the same test split.

The optimum of a data set is the best of the tuned value and the candidates' values; a
candidate's ratio is its value over that optimum. The chosen default maximises the worst-case
ratio over the data sets (docs/defaults.md).

Data sets: HetRec 2K as read (play counts up to 350,000), binarised, counts capped at 10 (a
source whose counts are on another scale), and a synthetic ListenBrainz dump (``tastemaker
synth``) at artist and at recording level.

    nice .venv/bin/python bench/defaults_sweep.py --data hetrec,hetrec-binary --out a.json
    nice .venv/bin/python bench/defaults_sweep.py --data synth-artist,synth-recording --out b.json
    .venv/bin/python bench/defaults_sweep.py --table a.json b.json     # choose and print

Sized for a shared 2-core machine: minutes per data set; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions
from tastemaker.data.load import load_interactions
from tastemaker.data.synth import synthesize
from tastemaker.evaluation.splits import random_split
from tastemaker.models import create_model
from tastemaker.tuning.config import SearchConfig
from tastemaker.tuning.search import tune
from tastemaker.tuning.spaces import load_space
from tastemaker.tuning.trials import score_metric

HETREC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hetrec2011-lastfm-2k"
METRIC = "ndcg@10"
MODELS = ("popularity", "als", "bpr", "itemknn", "userknn", "ease", "rp3beta", "multvae")
TRIALS = {"als": 8, "bpr": 3, "itemknn": 8, "userknn": 4, "ease": 4, "rp3beta": 8, "multvae": 3}
BM25_SMALL = {"weighting": "bm25", "bm25_k1": 1.2, "bm25_b": 0.75}
# The defaults before this sweep, spelled out (candidates are given on top of them, so the
# table does not change when the models' defaults do).
OLD_ALS = {"factors": 64, "regularization": 0.05, "alpha": 1.0, "iterations": 15}
OLD_ALS |= {"weighting": "log1p", "bm25_k1": 100.0, "bm25_b": 0.8}
OLD_ITEMKNN = {"neighbours": 200, "shrinkage": 100.0, "weighting": "log1p", "asymmetry": 0.5}
OLD_ITEMKNN |= {"bm25_k1": 100.0, "bm25_b": 0.8, "history_weighting": None}
OLD_USERKNN = {"neighbours": 100, "shrinkage": 10.0, "weighting": "bm25"}
OLD_USERKNN |= {"bm25_k1": 100.0, "bm25_b": 0.8}
BASE = {"als": OLD_ALS, "itemknn": OLD_ITEMKNN, "userknn": OLD_USERKNN}

# The first candidate of each model is its defaults before this sweep; every candidate is
# applied on top of ``BASE`` (the old defaults).
# Mult-VAE's defaults before this sweep (the paper's latent 200, dropout 0.5, beta cap 0.2 and
# binary input), spelled out; its defaults now are the search's pick, rounded (docs/defaults.md).
OLD_MULTVAE = {"latent": 200, "dropout": 0.5, "beta_cap": 0.2, "anneal_steps": 2000}
OLD_MULTVAE |= {"learning_rate": 0.001, "batch_size": 128, "weighting": "binary"}

CANDIDATES: dict[str, dict[str, dict]] = {
    "popularity": {"defaults": {}},
    "als": {
        "log1p a1 (old)": {},
        "bm25 k1=16 b=.5 a.1": {
            "weighting": "bm25",
            "bm25_k1": 16.0,
            "bm25_b": 0.5,
            "alpha": 0.1,
            "regularization": 0.01,
        },
        "bm25 k1=5 b=.5 a.3": {
            "weighting": "bm25",
            "bm25_k1": 5.0,
            "bm25_b": 0.5,
            "alpha": 0.3,
            "regularization": 0.01,
        },
        "bm25 k1=1.2 a1": {**BM25_SMALL, "alpha": 1.0, "regularization": 0.05},
        "bm25 k1=5 b=.5 a.3 f32 it20": {
            "weighting": "bm25",
            "bm25_k1": 5.0,
            "bm25_b": 0.5,
            "alpha": 0.3,
            "regularization": 0.01,
            "factors": 32,
            "iterations": 20,
        },
    },
    "bpr": {
        "f64 lr.01 (old)": {},
        "f64 lr.05": {"learning_rate": 0.05},
        "f128 lr.02 it200": {"factors": 128, "learning_rate": 0.02, "iterations": 200},
        "200 iterations": {"iterations": 200},  # the chosen default, spelled out
        "100 iterations (pre-sweep)": {"iterations": 100},
        "150 iterations": {"iterations": 150},
    },
    "itemknn": {
        "log1p 200 s100 (old)": {},
        "bm25 k1=1.2 200 s100": {**BM25_SMALL},
        "log1p 500 s50 a.4 q.5": {
            "neighbours": 500,
            "shrinkage": 50.0,
            "asymmetry": 0.4,
            "exponent": 0.5,
        },
        "log1p 200 s100 a.6": {"asymmetry": 0.6},
        "binary 200 s100": {"weighting": "binary"},
        # Added after the first pass (recording level): BM25's IDF, asymmetric cosine.
        "bm25 k1=5 b=.5 a.6": {
            "weighting": "bm25",
            "bm25_k1": 5.0,
            "bm25_b": 0.5,
            "asymmetry": 0.6,
        },
    },
    "userknn": {
        "bm25 k1=100 (old)": {},
        "bm25 k1=1.2": {**BM25_SMALL},
        "bm25 k1=5 b=.5": {"bm25_k1": 5.0, "bm25_b": 0.5},
        "bm25 k1=5 b=.5 200nn": {"bm25_k1": 5.0, "bm25_b": 0.5, "neighbours": 200},
    },
    "ease": {
        "binary l200 (old)": {},
        "binary l100": {"regularization": 100.0},
        "binary l400": {"regularization": 400.0},
        # Added for recording-level data (tuned there: tfidf, >= 8 listeners, lambda 303).
        "binary l200 min4": {"min_listeners": 4},
        "tfidf l200": {"weighting": "tfidf"},
        "tfidf l200 min4": {"weighting": "tfidf", "min_listeners": 4},
        "tfidf l300 min8": {"weighting": "tfidf", "min_listeners": 8, "regularization": 300.0},
        "binary l50": {"regularization": 50.0},
        "binary l70": {"regularization": 70.0},
        "binary l100 min4": {"regularization": 100.0, "min_listeners": 4},
        "binary l100 min8": {"regularization": 100.0, "min_listeners": 8},
        "bm25 k1=1.2": {**BM25_SMALL},
        "bm25 k1=.5 b=0": {"weighting": "bm25", "bm25_k1": 0.5, "bm25_b": 0.0},
        "bm25 k1=.5 b=0 min4": {
            "weighting": "bm25",
            "bm25_k1": 0.5,
            "bm25_b": 0.0,
            "min_listeners": 4,
        },
    },
    # Added with the models of issue 17 (their defaults came from HetRec and its reshaped
    # variants, docs/models.md); the first candidate is today's defaults.
    "rp3beta": {
        "bm25 k1=3 b.1 200nn (defaults)": {},
        "bm25 k1=1 b.1 200nn": {"bm25_k1": 1.0},
        "bm25 k1=3 b.2 200nn": {"beta": 0.2},
        "bm25 k1=3 b0 200nn": {"beta": 0.0},
        "bm25 k1=3 b.1 500nn": {"neighbours": 500},
        "binary b.4 200nn": {"weighting": "binary", "beta": 0.4},
        # Second round, after synth-recording's search (alpha 0.45, beta 0.25, 82 neighbours).
        "bm25 k1=3 b.05 200nn": {"beta": 0.05},
        "bm25 k1=3 b0 100nn": {"beta": 0.0, "neighbours": 100},
        "bm25 k1=3 a.7 b.1 200nn": {"alpha": 0.7},
        "bm25 k1=3 a.7 b0 100nn": {"alpha": 0.7, "beta": 0.0, "neighbours": 100},
        "bm25 k1=3 b.05 100nn": {"beta": 0.05, "neighbours": 100},
    },
    "multvae": {
        "old defaults (lat200 binary)": OLD_MULTVAE,
        # The search's pick on hetrec-binary, synth-artist and synth-recording (one config),
        # rounded: today's defaults, with log1p input and with the paper's binary input.
        "defaults (log1p lat50 do.46 b.40)": {},
        "binary lat50 do.46 b.40": {"weighting": "binary"},
    },
}


def _reshaped(inter: Interactions, data: np.ndarray, label: str) -> Interactions:
    m = inter.user_items
    matrix = sp.csr_matrix((data.astype(np.float32), m.indices, m.indptr), shape=m.shape)
    name = f"{inter.source.get('dataset', 'data')}-{label}"
    return inter.with_matrix(matrix, last_listened=inter.last_listened, dataset=name)


def load_dataset(name: str, workdir: Path, hetrec: Path) -> Interactions:
    """One of the sweep's data sets by name."""
    if name.startswith("hetrec"):
        inter = load_interactions(hetrec)
        if name == "hetrec-binary":
            return _reshaped(inter, np.ones_like(inter.user_items.data), "binary")
        if name == "hetrec-capped":
            return _reshaped(inter, np.minimum(inter.user_items.data, 10.0), "capped10")
        return inter
    if name == "synth-artist":
        dump = workdir / "synth-artist"
        if not dump.exists():
            synthesize(dump, users=1500, artists=3000, listens=300_000, incremental_days=0)
        return load_interactions(dump, level="artist")
    if name == "synth-recording":
        dump = workdir / "synth-recording"
        if not dump.exists():
            synthesize(dump, users=1000, artists=400, listens=80_000, seed=1, incremental_days=0)
        return load_interactions(dump, level="recording")
    raise SystemExit(f"unknown data set {name!r}")


def sweep_model(
    inter: Interactions, split, model: str, tuned: bool = True, only: set[str] | None = None
) -> dict:
    """The tuned optimum (tests once) and every candidate's test value on one data set
    (``only``: just the candidates of these labels; ``tuned`` False: no search)."""
    row: dict = {"model": model, "candidates": {}}
    started = time.perf_counter()
    if model in TRIALS and tuned:
        config = SearchConfig(
            model=model,
            space=load_space(None, model),
            trials=TRIALS[model],
            repeats=1,
            threads=1,
        )
        result = tune(inter, config)
        row["tuned"] = {"params": result.params, "test": result.test}
        row["tune_seconds"] = time.perf_counter() - started
    for label, params in CANDIDATES[model].items():
        if only is not None and label not in only:
            continue
        fitted = create_model(model, **{**BASE.get(model, {}), **params}).fit(split.train)
        row["candidates"][label] = {"params": params, "test": score_metric(fitted, split, METRIC)}
        print(f"  {model:10s} {label:32s} {row['candidates'][label]['test']:.4f}", flush=True)
    if "tuned" in row:
        print(f"  {model:10s} {'tuned':32s} {row['tuned']['test']:.4f}", flush=True)
    return row


def run(
    names: list[str],
    models: list[str],
    out: Path,
    hetrec: Path,
    tuned: bool = True,
    only: set[str] | None = None,
) -> None:
    results = {"load_average": [], "datasets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            inter = load_dataset(name, Path(tmp), hetrec)
            split = random_split(inter)
            print(f"{name}: {inter.n_users} users x {inter.n_items} items, {inter.nnz} pairs")
            started = time.perf_counter()
            rows = [sweep_model(inter, split, model, tuned, only) for model in models]
            results["datasets"][name] = {
                "shape": [inter.n_users, inter.n_items, inter.nnz],
                "median_count": float(np.median(inter.user_items.data)),
                "seconds": time.perf_counter() - started,
                "models": rows,
            }
            results["load_average"].append(os.getloadavg())
            print(f"  ({time.perf_counter() - started:.0f} s; load {os.getloadavg()})")
            out.write_text(json.dumps(results, indent=1, default=str))


def choose(files: list[Path]) -> None:
    """Merge sweep files, compute ratios, pick each model's max-min candidate, print tables."""
    datasets: dict[str, dict] = {}
    loads = []
    for file in files:  # a later file's row for a model replaces an earlier one's
        content = json.loads(file.read_text())
        for name, entry in content["datasets"].items():
            merged = datasets.setdefault(name, {**entry, "models": []})
            models = {row["model"]: row for row in merged["models"]}
            models.update({row["model"]: row for row in entry["models"]})
            merged["models"] = list(models.values())
        loads += content["load_average"]
    names = list(datasets)
    print(f"load averages during the sweep: {[round(x[0], 1) for x in loads]}")
    print("| model | candidate | " + " | ".join(names) + " | worst |")
    print("|---" * (len(names) + 3) + "|")
    for model in MODELS:
        found = [[r for r in datasets[n]["models"] if r["model"] == model] for n in names]
        if not all(found):
            print(f"| {model} | (not measured on every data set) |")
            continue
        rows = {n: rows_of[0] for n, rows_of in zip(names, found, strict=True)}
        optimum = {
            n: max(
                [c["test"] for c in rows[n]["candidates"].values()]
                + ([rows[n]["tuned"]["test"]] if "tuned" in rows[n] else [])
            )
            for n in names
        }
        worst = {}
        for label in CANDIDATES[model]:
            if not all(label in rows[n]["candidates"] for n in names):
                continue
            ratios = [rows[n]["candidates"][label]["test"] / optimum[n] for n in names]
            worst[label] = min(ratios)
            cells = [
                f"{rows[n]['candidates'][label]['test']:.4f} ({r:.2f})"
                for n, r in zip(names, ratios, strict=True)
            ]
            print(f"| {model} | {label} | " + " | ".join(cells) + f" | {min(ratios):.2f} |")
        tuned = [f"{rows[n]['tuned']['test']:.4f}" if "tuned" in rows[n] else "-" for n in names]
        print(f"| {model} | tuned ({TRIALS.get(model, 0)} trials) | " + " | ".join(tuned) + " | |")
        best = max(worst, key=worst.get)
        print(f"| {model} | **chosen: {best}** | | | | | | {worst[best]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="hetrec,hetrec-binary,hetrec-capped")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--hetrec", type=Path, default=HETREC)
    parser.add_argument("--out", type=Path, default=Path("defaults-sweep.json"))
    parser.add_argument("--table", nargs="*", type=Path, help="sweep files to choose from")
    parser.add_argument("--no-tune", action="store_true", help="candidates only, no search")
    parser.add_argument("--candidates", help="comma list of candidate labels to run (all)")
    args = parser.parse_args()
    if args.table:
        choose(args.table)
        return
    print(f"load average at start: {os.getloadavg()}")
    only = set(args.candidates.split(",")) if args.candidates else None
    run(args.data.split(","), args.models.split(","), args.out, args.hetrec, not args.no_tune, only)


if __name__ == "__main__":
    main()

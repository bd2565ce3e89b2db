"""Short histories (docs/protocols.md): NDCG@10 and head share at one fold-in size, per model
configuration, averaged over split seeds; optionally the fusion of the configurations.

    python bench/short_histories.py '[["als", {}], ["rp3beta", {"weighting": "log1p"}]]' \
        [--seeds 0,1,2] [--k 3] [--data ../shared/data/hetrec2011-lastfm-2k] [--fuse 1,0.7] \
        [--validation]

Each configuration is fitted once per seed on the short-history split's training part (the
split and the metrics of ``evaluation.protocol.evaluate_short_histories``); the head share is
the mean number of each top 10 among the 20 most listened-to items. ``--fuse W1,W2,...`` adds
one row: the lists of the weighted sum of each model's fold-in scores, z-scored per listener
over the items it scores (an experiment on fitted models, not a registered model). Prints the
load average beside the figures. ``--validation`` measures on a short-history split carved
from each seed's training users (split seed 100 + S), never its test users: the split to tune
on (the blend's ``head_penalty`` was chosen there).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import cast

import numpy as np
import scipy.sparse as sp

from tastemaker.data.load import load_interactions
from tastemaker.evaluation.metrics import ranking_metrics
from tastemaker.evaluation.splits import short_history_split
from tastemaker.models.base import Recommender
from tastemaker.models.registry import check_specs, fit_model


class Fused:
    """Scores a history by the weighted sum of fitted models' per-row z-scores (the only
    method ``ranking_metrics`` calls on a fold-in split); an item any model leaves out
    (``-inf``) stays out."""

    def __init__(self, models: list[Recommender], weights: list[float]) -> None:
        self.models, self.weights = models, weights

    def score_history(self, history: sp.csr_matrix) -> np.ndarray:
        total = np.zeros(history.shape, np.float64)
        for model, weight in zip(self.models, self.weights, strict=True):
            if weight == 0:
                continue
            scores = model.score_history(history).astype(np.float64)
            finite = np.isfinite(scores)
            kept = np.where(finite, scores, np.nan)
            mean = np.nanmean(kept, axis=1, keepdims=True)
            spread = np.maximum(np.nanstd(kept, axis=1, keepdims=True), 1e-12)
            total += np.where(finite, weight * (scores - mean) / spread, -np.inf)
        return total


def measure(model: object, split) -> tuple[float, float]:
    metrics = ranking_metrics(cast(Recommender, model), split, ks=(10,), auc=False)
    return metrics["ndcg@10"], metrics["popular_share@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", help="JSON list of [model, {params}] pairs")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--k", type=int, default=3, help="items folded in")
    parser.add_argument("--data", default="../shared/data/hetrec2011-lastfm-2k")
    parser.add_argument("--fuse", default="", help="weights, one per configuration")
    parser.add_argument(
        "--validation", action="store_true", help="measure on users carved from training"
    )
    args = parser.parse_args()
    specs = [(str(name), dict(params)) for name, params in json.loads(args.specs)]
    check_specs(specs)
    weights = [float(w) for w in args.fuse.split(",")] if args.fuse else []
    if weights and len(weights) != len(specs):
        parser.error(f"--fuse: give {len(specs)} weights, one per configuration")
    seeds = [int(s) for s in args.seeds.split(",")]
    data = load_interactions(args.data)
    rows = [*specs, ("fusion", {"weights": weights})] if weights else specs
    figures: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(rows))}
    for seed in seeds:
        split = short_history_split(data, fold_in_k=args.k, seed=seed)
        if args.validation:
            split = short_history_split(split.train, fold_in_k=args.k, seed=100 + seed)
        models = [fit_model(name, params, split.train) for name, params in specs]
        for i, model in enumerate(models):
            figures[i].append(measure(model, split))
        if weights:
            figures[len(specs)].append(measure(Fused(models, weights), split))
    where = "validation users carved from training" if args.validation else "test users"
    print(f"k = {args.k}, seeds {seeds}, {where}; load average {os.getloadavg()}")
    popularity = None
    for i, (name, params) in enumerate(rows):
        values = np.asarray(figures[i])
        ndcg, head = values[:, 0].mean(), values[:, 1].mean() * 10
        if name == "popularity" and not params:
            popularity = ndcg
        ratio = f" {ndcg / popularity:.2f}x popularity" if popularity else ""
        print(
            f"{name:10s} {json.dumps(params):50s} NDCG@10 {ndcg:.4f} head {head:.2f} of 10"
            f"{ratio}  per seed {np.round(values[:, 0], 4).tolist()}"
        )


if __name__ == "__main__":
    main()

"""Short histories (docs/protocols.md): NDCG@10 and head share at one fold-in size, per model
configuration, averaged over split seeds.

    python bench/short_histories.py '[["als", {}], ["rp3beta", {"weighting": "log1p"}]]' \
        [--seeds 0,1,2] [--k 3] [--data ../shared/data/hetrec2011-lastfm-2k]

Each configuration is fitted once per seed on the short-history split's training part
(``evaluation.protocol.evaluate_short_histories``); the head share is the mean number of each
top 10 among the 20 most listened-to items. Prints the load average beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from tastemaker.data.load import load_interactions
from tastemaker.evaluation.protocol import evaluate_short_histories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", help="JSON list of [model, {params}] pairs")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--k", type=int, default=3, help="items folded in")
    parser.add_argument("--data", default="../shared/data/hetrec2011-lastfm-2k")
    args = parser.parse_args()
    specs = [(str(name), dict(params)) for name, params in json.loads(args.specs)]
    seeds = [int(s) for s in args.seeds.split(",")]
    data = load_interactions(args.data)
    figures: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(specs))}
    for seed in seeds:
        result = evaluate_short_histories(
            data, specs, fold_in_ks=(args.k,), seed=seed, progress=False
        )
        for i, row in enumerate(result["results"]):
            metrics = row["metrics"]
            figures[i].append((metrics["ndcg@10"], metrics["popular_share@10"]))
    print(f"k = {args.k}, seeds {seeds}; load average {os.getloadavg()}")
    popularity = None
    for i, (name, params) in enumerate(specs):
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

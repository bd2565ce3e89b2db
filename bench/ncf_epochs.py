"""NeuMF's validation NDCG@10 after every epoch, and test NDCG@10, for a few learning rates.

    python bench/ncf_epochs.py [DATA] [--learning-rates 0.002,0.005,0.01] [--seed 0]

The split is the default protocol's (``random``, seed ``--seed``); the curve is the model's own
inner hold-out (``history_["validation_ndcg"]``), so the test set is touched once per setting.
Figures: docs/ncf.md ("How fast the defaults converge").
"""

from __future__ import annotations

import argparse
import json
import os
import time

from tastemaker.data.load import load_interactions
from tastemaker.evaluation.metrics import ranking_metrics
from tastemaker.evaluation.splits import make_split
from tastemaker.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default="../shared/data/hetrec2011-lastfm-2k")
    parser.add_argument("--learning-rates", default="0.002,0.005,0.01")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    split = make_split(load_interactions(args.data), "random", seed=args.seed)
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for rate in (float(r) for r in args.learning_rates.split(",")):
        started = time.perf_counter()
        model = create_model("neumf", learning_rate=rate, device=args.device).fit(split.train)
        seconds = time.perf_counter() - started
        test = ranking_metrics(model, split, ks=(10,), auc=False)["ndcg@10"]
        curve = [round(x, 4) for x in model.history_["validation_ndcg"].tolist()]
        row = {"learning_rate": rate, "seconds": round(seconds, 1), "best_epoch": model.best_epoch_,
               "test_ndcg@10": round(test, 4), "validation_ndcg@10": curve}  # fmt: skip
        print(json.dumps(row), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

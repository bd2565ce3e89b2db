"""Check: the identity target on the demo data (docs/identity.md).

Synthesizes the demo dump (2,000 users, 5,000 artists, 1 M listens, seed 0 by default),
ingests it, and prints the item count against the artists synth listened to and the
ambiguous names the ingest reports (target: items - ambiguous names = artists listened to),
then fits item-KNN and counts `similar` lists (top 10) that hold an item of the query's own
folded name, apart from the ambiguous names' homonyms (target: none).

    .venv/bin/python bench/identity.py
    .venv/bin/python bench/identity.py --users 300 --artists 800 --listens 60000 --seed 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--artists", type=int, default=5000)
    parser.add_argument("--listens", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from tastemaker.data.identity import credit_forms
    from tastemaker.data.ingest import ingest
    from tastemaker.data.synth import SUMMARY_FILE, synthesize
    from tastemaker.models import create_model

    workdir = Path(tempfile.mkdtemp(prefix="tastemaker-identity-"))
    try:
        started = time.perf_counter()
        dump = synthesize(workdir / "dump", args.users, args.artists, args.listens, args.seed)
        summary = json.loads((dump / SUMMARY_FILE).read_text())
        synthesized = time.perf_counter()
        inter = ingest([dump], workdir / "out")
        ingested = time.perf_counter()
        identity = inter.source["identity"]
        ambiguous = identity["ambiguous_names"]
        print(
            f"synth {synthesized - started:.1f} s, ingest {ingested - synthesized:.1f} s; load "
            f"average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
        )
        print(
            f"artists {summary['artists']:,} ({summary['artists_listened']:,} listened to, "
            f"{summary['homonyms']} sharing a name); items {inter.n_items:,}; ambiguous names "
            f"{ambiguous}; items - ambiguous = {inter.n_items - ambiguous:,} (target "
            f"{summary['artists_listened']:,})"
        )
        print(
            {k: v for k, v in identity.items() if k != "ambiguous_examples"},
            "e.g.",
            identity["ambiguous_examples"][:5],
        )
        names = inter.item_metadata["name"]
        forms = credit_forms(names)
        form = names.to_frame("name").join(forms, on="name", how="left")["credit"].to_list()
        examples = set(identity["ambiguous_examples"])
        similar, _ = create_model("itemknn").fit(inter).similar_items(np.arange(inter.n_items))
        lists = [
            q
            for q in range(inter.n_items)
            if any(j >= 0 and j != q and form[j] == form[q] for j in similar[q])
        ]
        outside = [q for q in lists if form[q] not in examples]
        print(
            f"similar lists (item-KNN, top 10) holding a same-named item: {len(lists)}, "
            f"{len(outside)} outside the ambiguous names (target 0)"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

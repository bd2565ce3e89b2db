"""Tag routes benchmark (issue 15 §3): the cost of ``/v1/tags?q=`` and ``/v1/tags/{tag}/items``.

A synthetic catalogue with ``--cells`` item-tag cells (random items, a Zipf vocabulary of
``--tags`` tags, weights 1-99) served by the popularity model in-process (``TestClient``):

* ours: the ``TagIndex`` build (once per loaded model, on the first tag request), a tag
  search and a tag's top items in-process, then both routes through the client;
* reference: ``/v1/items?search=`` (the artist search, the page's other as-you-type route)
  through the same client in the same run; the ratio is ours over it.

    .venv/bin/python bench/tag_routes.py                 # about a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import numpy as np
import scipy.sparse as sp
from fastapi.testclient import TestClient

from tastemaker.data.metadata import ItemMetadata, empty_facts
from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.serving import ServeSettings, create_app, load_bundle
from tastemaker.serving.tag_index import TagIndex


def tagged_catalogue(cells: int, n_tags: int, seed: int):
    data = synthetic_interactions(users=2000, artists=200_000, listens=400_000, seed=seed)
    rng = np.random.default_rng(seed)
    items = rng.integers(0, data.n_items, cells)
    tags = np.minimum(rng.zipf(1.3, cells) - 1, n_tags - 1)
    weights = rng.integers(1, 100, cells).astype(np.float32)
    matrix = sp.csr_matrix((weights, (items, tags)), shape=(data.n_items, n_tags))
    matrix.sum_duplicates()
    names = [f"tag {k}" for k in range(n_tags)]
    meta = ItemMetadata(matrix, names, np.zeros(n_tags, bool), empty_facts(data.n_items))
    return dataclasses.replace(data, metadata=meta)


def per_request_ms(client: TestClient, path: str, params: dict, repeats: int) -> float:
    """Median over 5 rounds of ``repeats`` requests (the machine is shared)."""
    for _ in range(20):
        client.get(path, params=params)
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeats):
            response = client.get(path, params=params)
        rounds.append((time.perf_counter() - started) / repeats * 1e3)
        assert response.status_code == 200, response.text
    return sorted(rounds)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2_000_000)
    parser.add_argument("--tags", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} (the machine may be shared)")
    data = tagged_catalogue(args.cells, args.tags, seed=0)
    print(f"{data.n_items:,} items, {data.metadata.item_tags.nnz:,} item-tag cells")
    started = time.perf_counter()
    index = TagIndex.from_interactions(data)
    print(f"TagIndex build: {time.perf_counter() - started:.2f} s (first tag request)")
    started = time.perf_counter()
    for _ in range(200):
        index.search("tag 1", 8)
    print(f"search 'tag 1' in-process: {(time.perf_counter() - started) / 200 * 1e3:.3f} ms")
    largest = int(np.argmax(index.item_counts))
    started = time.perf_counter()
    for _ in range(1000):
        index.top_items(largest, 1000)
    print(
        f"top 1,000 of a tag on {index.item_counts[largest]:,} items: "
        f"{(time.perf_counter() - started) / 1000 * 1e6:.1f} us"
    )

    directory = create_model("popularity").fit(data).save(tempfile.mkdtemp() + "/model")
    settings = ServeSettings()
    with TestClient(create_app(settings, load_bundle(directory, settings))) as client:
        client.get("/v1/tags")
        reference = per_request_ms(client, "/v1/items", {"search": "jul", "n": 10}, args.repeats)
        print(f"reference /v1/items?search=jul&n=10: {reference:.2f} ms")
        for path, params in (
            ("/v1/tags", {"q": "tag 1", "n": 10}),
            (f"/v1/tags/{index.tags[largest]}/items", {"n": 10}),
        ):
            ours = per_request_ms(client, path, params, args.repeats)
            print(f"{path} {params}: {ours:.2f} ms, {ours / reference:.2f}x the reference")


if __name__ == "__main__":
    main()

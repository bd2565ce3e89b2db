"""Recommendation lists assembled from per-item fragments are the bytes orjson writes for the
same dicts (serving.answers), for awkward names, tags, reasons and scores."""

from __future__ import annotations

import json

import numpy as np
import orjson

from tastemaker.serving.answers import ItemFragments, recommendation_list, recommendations_body

IDS = ["a0", 'quo"te', "ünï", "back\\slash", "a4"]
NAMES = ["Sigur Rós", 'The "Band"', "Ke$ha", "tab\tname", "日本"]
LISTENERS = np.asarray([5, 0, 12, 3, 2**40])
TAGS = {0: ["post-rock", "icelandic"], 2: ["pop"]}


def fragments() -> ItemFragments:
    return ItemFragments(IDS, NAMES, LISTENERS, lambda i: TAGS.get(i, []))


def expected(ids, scores, sources, popular: bool) -> list[dict]:
    out = []
    for index, score, source in zip(ids.tolist(), scores.tolist(), sources, strict=True):
        if source is not None:
            reason = f"because you listened to {NAMES[source]}"
        else:
            reason = "popular with listeners" if popular else None
        out.append(
            {
                "item": IDS[index],
                "name": NAMES[index],
                "score": score,
                "reason": reason,
                "listeners": int(LISTENERS[index]),
                "tags": TAGS.get(index, []),
            }
        )
    return out


def test_lists_are_the_bytes_of_the_dicts() -> None:
    rng = np.random.default_rng(0)
    frags = fragments()
    for trial in range(50):
        ids = rng.permutation(5)[: rng.integers(0, 6)]
        scores = (rng.standard_normal(len(ids)) * 10.0 ** rng.integers(-8, 8)).astype(np.float32)
        sources = [None if rng.random() < 0.3 else int(rng.integers(0, 5)) for _ in ids]
        popular = bool(trial % 2)
        got = recommendation_list(frags, ids, scores, sources, popular)
        assert got == orjson.dumps(expected(ids, scores, sources, popular))
    body = recommendations_body("als", got, None, ['x"y', "ü"])
    assert json.loads(body) == {
        "model": "als",
        "items": json.loads(got),
        "user": None,
        "unmatched": ['x"y', "ü"],
    }
    assert recommendations_body("als", b"[]", "u1", []) == orjson.dumps(
        {"model": "als", "items": [], "user": "u1", "unmatched": []}
    )

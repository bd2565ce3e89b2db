"""serve --workers N shares one copy of the model's large arrays (serving.shared_arrays):
every loader maps the same validated files, answers the same, and never maps bytes that
differ from what it validated."""

from __future__ import annotations

import numpy as np
import pytest

import tastemaker.serving.shared_arrays as shared_arrays
from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.serving.settings import ServeSettings
from tastemaker.serving.state import load_bundle


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    data = synthetic_interactions(users=200, artists=400, listens=20_000, seed=1)
    model = create_model("als", factors=8, iterations=4, seed=0).fit(data)
    return model.save(tmp_path_factory.mktemp("model") / "als")


@pytest.fixture
def small_arrays_shared(monkeypatch):
    monkeypatch.setattr(shared_arrays, "MIN_SHARED_BYTES", 1)


def mapped_file(array: np.ndarray) -> str | None:
    while array is not None and not isinstance(array, np.memmap):
        array = array.base
    return None if array is None else array.filename


def test_workers_map_the_same_files_and_answer_the_same(model_dir, tmp_path, small_arrays_shared):
    settings = ServeSettings(model_dir=model_dir, workers_file=tmp_path / "model.json")
    first, second = load_bundle(model_dir, settings), load_bundle(model_dir, settings)
    private = load_bundle(model_dir, ServeSettings(model_dir=model_dir))
    for name in ("user_factors_", "item_factors_"):
        a, b = getattr(first.model, name), getattr(second.model, name)
        assert mapped_file(a) is not None and mapped_file(a) == mapped_file(b)
        assert mapped_file(getattr(private.model, name)) is None
        np.testing.assert_array_equal(a, getattr(private.model, name))
    matrix = second.model.user_items_
    assert all(mapped_file(getattr(matrix, part)) for part in ("data", "indices", "indptr"))
    matcher_arrays = [
        v for v in vars(second.catalogue.matcher).values() if isinstance(v, np.ndarray)
    ]
    assert matcher_arrays and all(mapped_file(a) for a in matcher_arrays if a.nbytes)
    assert second.catalogue.search("a", 5) == private.catalogue.search("a", 5)
    history = private.model.user_items_[3]
    for bundle in (first, second):
        for got, want in zip(
            bundle.retriever.for_user(3, 10, True),
            private.retriever.for_user(3, 10, True),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)
        got = bundle.retriever.for_history(history, 10, True)
        want = private.retriever.for_history(history, 10, True)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


def test_a_file_that_differs_from_the_validated_array_is_not_used(
    model_dir, tmp_path, small_arrays_shared
):
    settings = ServeSettings(model_dir=model_dir, workers_file=tmp_path / "model.json")
    load_bundle(model_dir, settings)
    (path,) = tmp_path.glob("*-item_factors_.npy")
    tampered = np.load(path)
    tampered[0, 0] += 1.0
    np.save(path, tampered)
    bundle = load_bundle(model_dir, settings)
    assert mapped_file(bundle.model.item_factors_) is None  # its own validated copy
    assert mapped_file(bundle.model.user_factors_) is not None
    private = load_bundle(model_dir, ServeSettings(model_dir=model_dir))
    np.testing.assert_array_equal(bundle.model.item_factors_, private.model.item_factors_)


def test_workers_share_one_ann_graph(model_dir, tmp_path):
    options = {"ann_threshold": 10, "ann_head_items": 50, "ann_recall_users": 50}
    settings = ServeSettings(model_dir=model_dir, workers_file=tmp_path / "model.json", **options)
    first = load_bundle(model_dir, settings)
    (graph,) = tmp_path.glob("*-hnsw-head50-*.faiss")
    written = graph.stat().st_mtime_ns
    second = load_bundle(model_dir, settings)  # maps the graph the first one wrote
    assert graph.stat().st_mtime_ns == written and len(list(tmp_path.glob("*.faiss"))) == 1
    index = second.retriever
    assert index.kind == "hnsw" and index.tail.ntotal == index.n_items - 50
    assert second.retriever.recall_at_10 == first.retriever.recall_at_10 >= 0.9
    for user in range(0, 200, 7):
        got = second.retriever.for_user(user, 10, True)
        want = first.retriever.for_user(user, 10, True)
        np.testing.assert_array_equal(got[0], want[0])


def test_an_unwritable_folder_serves_unshared(model_dir, tmp_path, small_arrays_shared):
    missing = tmp_path / "gone" / "model.json"  # its folder does not exist: nothing written
    options = {"ann_threshold": 10, "ann_head_items": 50, "ann_recall_users": 20}
    bundle = load_bundle(
        model_dir, ServeSettings(model_dir=model_dir, workers_file=missing, **options)
    )
    assert mapped_file(bundle.model.item_factors_) is None
    assert bundle.retriever.kind == "hnsw" and bundle.retriever.tail.ntotal > 0
    assert (bundle.retriever.for_user(0, 5, True)[0] >= 0).all()

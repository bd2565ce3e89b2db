"""Mult-VAE: the model contract (as tests/models/test_ncf.py checks it for the NCF models), seeding,
early stopping, item pruning, parameter checks, tampered files and quality floors.

Small synthetic data, except the defaults' floor on HetRec 2K (docs/models.md); one CPU thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from tampering import edit_arrays, edit_manifest, tampered
from tastemaker.data.interactions import Interactions
from tastemaker.errors import ArtifactError, UsageError
from tastemaker.evaluation.metrics import ranking_metrics
from tastemaker.evaluation.splits import random_split
from tastemaker.models import create_model, load_model, model_class
from tastemaker.models.base import Recommender
from tastemaker.models.torch_common import WEIGHTS_FILE
from tastemaker.models.validation import holdout_split, ndcg_at_k
from tastemaker.testing import (
    assert_batch_equals_one_by_one,
    assert_refit_is_fresh,
    assert_same_model,
    assert_similar_items_exclude_the_item,
    clusters,
    fold_in_overlap,
)
from tastemaker.tuning.spaces import load_space

# Small, fast settings: CPU, no inner validation unless a test asks for it.
FAST = {
    "layers": (32,),
    "latent": 8,
    "epochs": 30,
    "batch_size": 16,
    "learning_rate": 0.01,
    "anneal_steps": 100,
    "min_listeners": 1,
    "patience": 0,
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: threads only cost start-up (and CI runs other work beside)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fit(data: Interactions, **overrides) -> Recommender:
    return create_model("multvae", **{**FAST, **overrides}).fit(data)


@pytest.fixture(scope="module")
def cluster_data() -> Interactions:
    return clusters()


@pytest.fixture(scope="module")
def model(cluster_data):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit(cluster_data)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("multvae") / "model")


# -- the common model contract ----------------------------------------------------------------


def test_contract_batch_equals_one_by_one(model):
    assert_batch_equals_one_by_one(model, np.arange(0, 80, 9))


def test_contract_recommendations_are_the_top_of_the_scores(model, cluster_data):
    users = np.arange(cluster_data.n_users)
    ids, scores = model.recommend(users, n=10)
    ref_ids, _ = Recommender.recommend(model, users, n=10)
    np.testing.assert_array_equal(ids, ref_ids)
    heard = cluster_data.user_items.toarray() > 0
    assert not heard[users[:, None], ids].any()
    assert (np.diff(scores, axis=1) <= 0).all()
    # The top of the scores, independently of top_n: no unrecommended item scores higher.
    full = model.score(users)
    full[heard] = -np.inf
    np.testing.assert_allclose(scores[:, 0], full.max(1), rtol=1e-6)


def test_contract_fold_in_of_a_training_history_is_the_trained_user(model, cluster_data):
    """Fold-in by design: a training user is scored from their history, so the two agree."""
    assert fold_in_overlap(model, cluster_data) == 1.0
    users = np.arange(cluster_data.n_users)
    np.testing.assert_allclose(
        model.score_history(cluster_data.user_items), model.score(users), rtol=1e-5, atol=1e-6
    )


def test_contract_similar_items_never_include_the_item_itself(model, cluster_data):
    assert_similar_items_exclude_the_item(model, cluster_data)


def test_contract_save_load_round_trip(model, cluster_data, saved):
    loaded = load_model(saved)
    assert_same_model(loaded, model, cluster_data)
    for key in ("loss", "validation_ndcg"):
        np.testing.assert_array_equal(loaded.history_[key], model.history_[key])
    for path in saved.rglob("*"):
        if path.is_file():  # nothing that starts like a pickle
            head = path.read_bytes()[:2]
            assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def test_contract_a_second_fit_forgets_the_first():
    first, second = clusters(seed=11, n_users=60, n_items=40), clusters(seed=5, n_users=40)
    assert_refit_is_fresh(fit(first, epochs=5).fit(second), fit(second, epochs=5), second)


# -- training ---------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_model_and_another_seed_another(cluster_data):
    users = np.arange(cluster_data.n_users)
    first = fit(cluster_data, epochs=5).score(users)
    np.testing.assert_array_equal(fit(cluster_data, epochs=5).score(users), first)
    assert not np.allclose(fit(cluster_data, epochs=5, seed=1).score(users), first)
    # Training leaves the caller's torch state alone: thread count and random generator.
    torch.set_num_threads(2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(cluster_data, epochs=1)
    assert torch.get_num_threads() == 2
    torch.testing.assert_close(torch.rand(3), expected)


def test_the_loss_falls_and_the_kl_weight_is_annealed_to_its_cap(cluster_data):
    model = fit(cluster_data, epochs=20, beta_cap=0.2)
    loss = model.history_["loss"]
    assert len(loss) == 20 and loss[-1] < 0.9 * loss[0]
    assert np.isnan(model.history_["validation_ndcg"]).all()  # patience 0: no validation
    assert model._beta(0) == 0.0 and model._beta(50) == pytest.approx(0.1)
    assert model._beta(100) == model._beta(10**6) == pytest.approx(0.2)
    assert create_model("multvae", anneal_steps=0, beta_cap=0.3)._beta(0) == 0.3


def test_early_stopping_keeps_the_best_epoch_and_records_the_curve():
    data = clusters(seed=4, n_users=200)
    model = fit(data, epochs=40, patience=3)
    loss, ndcg = model.history_["loss"], model.history_["validation_ndcg"]
    assert len(loss) == len(ndcg) <= 40
    assert np.isfinite(ndcg).all() and np.isfinite(loss).all()
    assert model.best_epoch_ == int(np.argmax(ndcg)) + 1
    assert len(loss) == 40 or len(loss) == model.best_epoch_ + 3


def test_a_callback_returning_true_stops_training(cluster_data):
    seen = []

    def stop_at_three(epoch, model):
        seen.append(epoch)
        assert model.score(np.asarray([0])).shape == (1, cluster_data.n_items)  # usable mid-fit
        return epoch == 3

    model = create_model("multvae", **FAST).fit(cluster_data, callback=stop_at_three)
    assert seen == [1, 2, 3] and len(model.history_["loss"]) == 3


def test_items_below_min_listeners_are_never_recommended():
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 30)) < 0.3).astype(np.float32)
    dense[:, 25:] = 0.0
    dense[np.arange(5), 25 + np.arange(5)] = 3.0  # items 25-29: one listener each
    coo = sp.coo_matrix(dense)
    data = Interactions.from_arrays(
        [f"u{r:03d}" for r in coo.row], [f"i{c:03d}" for c in coo.col], coo.data
    )
    lonely = [data.items.index(f"i{c:03d}") for c in range(25, 30)]
    model = fit(data, epochs=3, min_listeners=2)
    assert len(model.kept_items_) == data.n_items - 5
    scores = model.score(np.arange(data.n_users))
    assert np.isneginf(scores[:, lonely]).all() and np.isfinite(np.delete(scores, lonely, 1)).all()
    ids, _ = model.recommend(np.arange(data.n_users), n=data.n_items)
    assert not np.isin(ids, lonely).any()
    similar, _ = model.similar_items(np.asarray(lonely), n=3)
    assert (similar == -1).all()
    empty = sp.csr_matrix((1, data.n_items), dtype=np.float32)
    assert np.isfinite(np.delete(model.score_history(empty), lonely, 1)).all()
    # A pruned item in a history is never given as a reason.
    heard_lonely = 0  # user 0 heard item 25 (one listener) besides others
    target = int(ids[heard_lonely, 0])
    reasons, weights = model.explain(data.user_items[heard_lonely], target, n=50)
    assert len(reasons) and not np.isin(reasons, lonely).any() and np.isfinite(weights).all()
    assert np.isin(lonely, data.user_items[heard_lonely].indices).any()


@pytest.mark.parametrize(
    "params",
    [
        {"latent": 0},
        {"epochs": 0},
        {"batch_size": -1},
        {"layers": (8, 0)},
        {"layers": ()},
        {"dropout": 1.0},
        {"learning_rate": 0.0},
        {"beta_cap": -0.1},
        {"anneal_steps": -1},
        {"patience": -1},
        {"min_listeners": 100},
        {"device": "no-such-device"},
        {"weighting": "nonsense"},
    ],
)
def test_bad_hyperparameters_are_refused_with_a_usage_error(params, cluster_data):
    with pytest.raises(UsageError):
        create_model("multvae", **{**FAST, **params}).fit(cluster_data)


def test_the_tuning_space_fits_the_model():
    space = load_space(None, "multvae")
    space.check_model("multvae", model_class("multvae").param_names())
    assert space.params


def test_multvae_beats_popularity_and_keeps_up_with_ease_where_tastes_differ():
    """Measured NDCG@10 on data seeds 8, 1, 2, 3: Mult-VAE 0.28-0.31, EASE 0.24-0.28,
    popularity 0.04-0.05 (a user's ~2 held-out items among ~15 unheard of their group)."""
    data = clusters(seed=8, n_users=200)
    train, test = holdout_split(data.user_items, 0.2, 5, seed=0)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    train_data = data.with_matrix(train)

    def ndcg(name: str, **params) -> float:
        model = fit(train_data) if name == "multvae" else create_model(name, **params)
        return ndcg_at_k(model.fit(train_data).recommend(users, 10)[0], test[users])

    ours, popularity = ndcg("multvae"), ndcg("popularity")
    ease = ndcg("ease", min_listeners=1, regularization=10.0)
    assert ours > 0.22 and ours > 4 * popularity and ours > 0.9 * ease, (ours, popularity, ease)


@pytest.mark.slow
def test_defaults_clear_issue_17s_floor_on_hetrec(hetrec):
    """Issue 17 asks the defaults for NDCG@10 >= 0.20 on HetRec 2K's default protocol.
    Measured (docs/models.md): seeds 0 / 1 / 2 0.2115 / 0.2065 / 0.2073; this is seed 0."""
    split = random_split(hetrec)
    model = create_model("multvae", device="cpu").fit(split.train)
    assert ranking_metrics(model, split, ks=(10,))["ndcg@10"] >= 0.20


# -- tampered files ---------------------------------------------------------------------------


def refused(directory, *fragments: str) -> None:
    with pytest.raises(ArtifactError) as caught:
        load_model(directory)
    message = str(caught.value)
    assert all(f in message for f in fragments) and "\n" not in message, message


def weights_change(change):
    def apply(directory):
        from safetensors.torch import load_file, save_file

        path = directory / WEIGHTS_FILE
        state = load_file(str(path))
        change(state)
        save_file(state, str(path))

    return apply


def test_tampered_weights_are_refused_before_use(saved, model, tmp_path):
    n_kept = len(model.kept_items_)

    def fewer_items(state):
        state["to_items.weight"] = state["to_items.weight"][:10].clone()

    def nan(state):
        state["to_latent.bias"] = torch.full_like(state["to_latent.bias"], float("nan"))

    def extra(state):
        state["extra"] = torch.zeros(3)

    refused(
        tampered(saved, tmp_path / "rows", weights_change(fewer_items)),
        f"to_items.weight is F32 [10, 32]; the network needs F32 [{n_kept}, 32]",
    )
    refused(tampered(saved, tmp_path / "nan", weights_change(nan)), "NaN or infinite weights")
    refused(tampered(saved, tmp_path / "extra", weights_change(extra)), "do not match")
    missing = tampered(saved, tmp_path / "missing", lambda d: (d / WEIGHTS_FILE).unlink())
    refused(missing, f"{WEIGHTS_FILE} is missing")


def test_tampered_arrays_and_params_are_refused(saved, tmp_path):
    def reverse_kept(arrays):
        arrays["kept_items"] = arrays["kept_items"][::-1].copy()

    def outside(arrays):
        arrays["kept_items"][-1] = 10**6

    order = edit_arrays("model.npz", reverse_kept)
    refused(tampered(saved, tmp_path / "order", order), "increasing")
    refused(tampered(saved, tmp_path / "range", edit_arrays("model.npz", outside)), "kept_items")
    # Widths that would allocate terabytes are compared on the meta device: no memory.
    huge = edit_manifest(lambda m: m["params"].update(layers=[10**9]))
    refused(tampered(saved, tmp_path / "huge", huge), "the network needs F32 [1000000000,")
    bad = edit_manifest(lambda m: m["params"].update(dropout=2.0))
    refused(tampered(saved, tmp_path / "bad", bad), "bad hyperparameters", "dropout")
    mistyped = edit_manifest(lambda m: m["params"].update(latent="eight"))
    refused(tampered(saved, tmp_path / "typed", mistyped), "latent")


def test_a_model_trained_on_a_gpu_loads_where_there_is_none(saved, model, cluster_data, tmp_path):
    on_gpu = edit_manifest(lambda m: m["params"].update(device="cuda"))
    loaded = load_model(tampered(saved, tmp_path / "cuda", on_gpu))
    assert loaded.device == "cuda"
    assert loaded.device_.type == ("cuda" if torch.cuda.is_available() else "cpu")
    users = np.arange(cluster_data.n_users)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)

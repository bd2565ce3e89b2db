"""The multi-stage hybrid: candidates from several generators, a LightGBM lambdarank ranker.

The common contract (checkerboard, batch == one by one, save / load without pickle, fold-in)
runs in ``test_models_contract.py``; here: what is specific to the hybrid, leakage, the report
and a quality floor on HetRec 2K.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions, TagAssignments, Vocabulary
from tastemaker.errors import ArtifactError, UsageError
from tastemaker.models import create_model, load_model
from tastemaker.models.features import Candidates, FeatureBuilder
from tastemaker.models.hybrid import Hybrid
from tastemaker.models.inner_splits import inner_seeds

SMALL = {"candidates": 30, "iterations": 30, "seed": 0}
# With listen events; EASE left out only to keep the tests fast.
EVENTS = {"candidates": 50, "iterations": 40, "generators": "als,itemknn,popularity,sessions"}


def clusters(seed: int = 3, n_users: int = 120, n_items: int = 100):
    """Four taste groups of 25 items; each user plays 12 of their group's and 2 random.
    Returns the data and each item's group."""
    rng = np.random.default_rng(seed)
    groups = rng.permutation(n_items).reshape(4, -1)
    dense = np.zeros((n_users, n_items), np.float32)
    for u in range(n_users):
        heard = np.union1d(rng.choice(groups[u % 4], 12, replace=False), rng.choice(n_items, 2))
        dense[u, heard] = np.ceil(rng.lognormal(2.0, 1.5, len(heard)))
    coo = sp.coo_matrix(dense)
    data = Interactions.from_arrays(
        [f"u{r:03d}" for r in coo.row], [f"i{c:03d}" for c in coo.col], coo.data
    )
    item_group = np.empty(n_items, np.int64)
    for g, members in enumerate(groups):
        item_group[members] = g
    return data, item_group


@pytest.fixture(scope="module")
def data() -> Interactions:
    return clusters()[0]


@pytest.fixture(scope="module")
def model(data) -> Hybrid:
    return create_model("hybrid", **SMALL).fit(data)


@pytest.fixture(scope="module")
def synthetic():
    from tastemaker.data.synth import synthetic_interactions
    from tastemaker.evaluation.splits import random_split

    data = synthetic_interactions(users=250, artists=600, listens=40_000, seed=2)
    return data, random_split(data)


def test_the_ranker_is_trained_on_the_inner_split_and_used(model, data):
    assert model.booster_ is not None, "fell back to rank fusion: no ranker was trained"
    stats = model.training_stats_
    assert stats["groups"] > 50 and stats["rows"] > stats["groups"]
    assert 0.5 < stats["candidate_recall"] <= 1.0
    assert list(model.generators_) == ["als", "itemknn", "ease", "popularity"]  # no events
    assert model.feature_names_ == model.builder_.names(list(model.generators_))
    # Candidates outrank every other item; the list is the top of the full scores.
    users = np.arange(20)
    scores = model.score(users)
    cands, _, predicted, _ = model.ranked_candidates(data.user_items[users], users)
    is_candidate = np.zeros(scores.shape, bool)
    is_candidate[cands.row, cands.item] = True
    for row in range(len(users)):
        assert scores[row][~is_candidate[row]].max() < scores[row][is_candidate[row]].min()
    np.testing.assert_array_equal(scores[cands.row, cands.item], predicted)


def test_it_recommends_from_the_user_s_taste_group(model, data):
    _, item_group = clusters()
    users = np.arange(data.n_users)
    ids, _ = model.recommend(users, n=10)
    in_group = (item_group[ids] == (users % 4)[:, None]).mean()
    popular = create_model("popularity").fit(data).recommend(users, n=10)[0]
    # 13 of each group's 25 items are still unheard by a user: room for 10 in-group picks.
    assert in_group > 0.9 > 0.5 > (item_group[popular] == (users % 4)[:, None]).mean()


def test_saved_without_pickle_as_text_ranker_and_generator_directories(model, data, tmp_path):
    directory = model.save(tmp_path / "hybrid")
    ranker = (directory / "ranker.txt").read_text()
    assert ranker.startswith("tree\n")  # LightGBM's own text model format
    for name in model.generators_:
        assert (directory / "generators" / name / "manifest.json").is_file()
        # One copy of the training data, the hybrid's own: generators load it from there.
        assert not (directory / "generators" / name / "data").exists()
    assert (directory / "data" / "matrix.npz").is_file()
    loaded = load_model(directory)
    assert isinstance(loaded, Hybrid) and loaded.feature_names_ == model.feature_names_
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    history = data.user_items[:15]
    np.testing.assert_array_equal(loaded.score_history(history), model.score_history(history))


def test_the_same_seed_gives_the_same_model_and_another_seed_another(data):
    a = create_model("hybrid", **SMALL).fit(data)
    b = create_model("hybrid", **SMALL).fit(data)
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(a.score(users), b.score(users))
    c = create_model("hybrid", **{**SMALL, "seed": 1}).fit(data)
    assert not np.array_equal(a.score(users), c.score(users))


def test_bad_hyperparameters_are_one_clear_error(data):
    with pytest.raises(UsageError, match="feature group"):
        create_model("hybrid", features="scores,colour").fit(data)
    with pytest.raises(UsageError, match="unknown model"):
        create_model("hybrid", generators="als,nope").fit(data)
    with pytest.raises(UsageError, match="own generator"):
        create_model("hybrid", generators="hybrid").fit(data)
    with pytest.raises(UsageError, match="generator_params"):
        create_model("hybrid", generator_params="{not json").fit(data)


def test_several_inner_splits_train_a_ranker_each_and_average_them(data, tmp_path):
    for bad in (0, -1, 1.5, True, 101):
        with pytest.raises(UsageError, match="inner_splits"):
            create_model("hybrid", **{**SMALL, "inner_splits": bad}).fit(data)
    one = create_model("hybrid", **{**SMALL, "inner_splits": 1}).fit(data)
    bag = create_model("hybrid", **{**SMALL, "inner_splits": 3}).fit(data)
    seeds = inner_seeds(SMALL["seed"], 3)
    assert seeds[0] == SMALL["seed"] and len(set(seeds)) == 3
    stats_one, stats_bag = one.training_stats_, bag.training_stats_
    assert (stats_one["inner_splits"], stats_one["rankers"]) == (1, 1)
    assert (stats_bag["inner_splits"], stats_bag["rankers"]) == (3, 3)
    # Every split holds out its own 20 % of the same users: three times the users and items of
    # one split, and about three times its labelled rows.
    for key in ("users", "held_out_items"):
        assert stats_bag[key] == 3 * stats_one[key]
    for key in ("groups", "rows"):
        assert 2.5 * stats_one[key] < stats_bag[key] <= 3.5 * stats_one[key]
    users = np.arange(20)
    cands, x, predicted, _ = bag.ranked_candidates(data.user_items[users], users)
    each = [b.predict(x, num_threads=1) for b in bag.booster_.boosters]
    np.testing.assert_allclose(predicted, np.mean(each, axis=0), rtol=1e-6)
    # The first split's ranker is the one-split model's; the others learn on other splits.
    np.testing.assert_array_equal(each[0], one.booster_.boosters[0].predict(x, num_threads=1))
    assert not np.allclose(each[0], each[1]) and not np.allclose(each[1], each[2])
    directory = bag.save(tmp_path / "bag")
    assert {"ranker.txt", "ranker-1.txt", "ranker-2.txt"} <= {f.name for f in directory.iterdir()}
    loaded = load_model(directory)
    assert loaded.inner_splits == 3 and len(loaded.booster_.boosters) == 3
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(loaded.score(users), bag.score(users))
    (directory / "ranker-2.txt").unlink()
    with pytest.raises(ArtifactError, match="ranker-2.txt.* missing"):
        load_model(directory)


def test_pooled_inner_splits_train_one_ranker_on_all_their_rows(data, tmp_path):
    with pytest.raises(UsageError, match="pool_splits"):
        create_model("hybrid", **{**SMALL, "pool_splits": 1}).fit(data)
    rows: list[int] = []
    train = Hybrid._train_ranker

    def counting(self, x, y, sizes):
        rows.append(len(y))
        return train(self, x, y, sizes)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Hybrid, "_train_ranker", counting)
        pooled = create_model("hybrid", **{**SMALL, "inner_splits": 3, "pool_splits": True}).fit(
            data
        )
    assert rows == [pooled.training_stats_["rows"]]  # one ranker on all three splits' rows
    assert pooled.training_stats_["inner_splits"] == 3 and len(pooled.booster_.boosters) == 1
    directory = pooled.save(tmp_path / "pooled")
    assert not (directory / "ranker-1.txt").exists()
    users = np.arange(data.n_users)
    np.testing.assert_array_equal(load_model(directory).score(users), pooled.score(users))


# -- data with listening sessions ------------------------------------------------------------


@pytest.fixture(scope="module")
def session_model(synthetic):
    _, split = synthetic
    return create_model("hybrid", **EVENTS).fit(split.train)


def test_with_listen_events_the_sessions_generator_and_recency_join_in(
    session_model, synthetic, tmp_path
):
    _, split = synthetic
    assert "sessions" in session_model.generators_
    assert "item_recent_share" in session_model.feature_names_
    assert "sessions_rank" in session_model.feature_names_
    loaded = load_model(session_model.save(tmp_path / "hybrid"))
    users = split.test_users[:40]
    np.testing.assert_array_equal(loaded.score(users), session_model.score(users))
    history = split.train.user_items[users]
    ids, _ = loaded.recommend_for_history(history, n=10)
    np.testing.assert_array_equal(ids, session_model.recommend_for_history(history, n=10)[0])


def test_listens_of_held_out_pairs_never_reach_the_model(session_model, synthetic):
    """The split already drops them; a caller that forgets must not leak either."""
    data, split = synthetic
    leaky = dataclasses.replace(split.train, events=data.events)  # includes test-pair listens
    assert len(leaky.events) > len(split.train.events)
    refitted = create_model("hybrid", **EVENTS).fit(leaky)
    users = split.test_users[:60]
    np.testing.assert_array_equal(refitted.score(users), session_model.score(users))


@pytest.mark.parametrize(("inner_splits", "pool"), [(1, False), (2, False), (2, True)])
def test_the_ranker_learns_only_from_training_pairs(synthetic, monkeypatch, inner_splits, pool):
    _, split = synthetic
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    labels: list[np.ndarray] = []
    build = FeatureBuilder.build

    def recording_build(self, history, users, candidates):
        seen.append((users[candidates.row], candidates.item))
        return build(self, history, users, candidates)

    def recording_train(self, x, y, sizes):
        labels.append(y)
        return None

    monkeypatch.setattr(FeatureBuilder, "build", recording_build)
    monkeypatch.setattr(Hybrid, "_train_ranker", recording_train)
    create_model("hybrid", **EVENTS, inner_splits=inner_splits, pool_splits=pool).fit(split.train)
    assert len(labels) == (1 if pool else inner_splits)  # a ranker per inner split, or one
    users = np.concatenate([u for u, _ in seen])
    items = np.concatenate([i for _, i in seen])
    y = np.concatenate(labels)
    assert len(y) == len(users) and y.sum() > 0
    n_items = split.train.n_items

    def keys(m: sp.csr_matrix) -> np.ndarray:
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        return rows * n_items + m.indices

    labelled = users * n_items + items
    positives = labelled[y > 0]
    # Every positive label is a pair of the training matrix (an inner-validation item), so
    # no held-out test pair is ever a positive. (A test item may appear as a candidate,
    # labelled 0: the model cannot know it is held out.)
    assert np.isin(positives, keys(split.train.user_items)).all()
    assert not np.isin(positives, keys(split.test)).any()


# -- tags, and the user's own tags -----------------------------------------------------------


def _tagged(data: Interactions, rows: list[tuple[int, int, str]]) -> Interactions:
    names = sorted({t for _, _, t in rows})
    vocab = Vocabulary(names)
    user, item, tag = zip(*rows, strict=True)
    assignments = TagAssignments(
        np.asarray(user, np.int32),
        np.asarray(item, np.int32),
        vocab.indices(list(tag)).astype(np.int32),
        vocab,
    )
    return dataclasses.replace(data, tags=assignments)


def test_a_user_s_own_tags_never_reach_their_features(data):
    """User 0 tags their history and an unheard item X with a private tag; others tag X and
    the history with shared tags. User 0's tag features for X must be exactly those of a world
    in which user 0 never tagged anything."""
    heard = data.user_items[0].indices
    x = int(np.setdiff1d(np.arange(data.n_items), heard)[0])
    others = [(5, int(i), "rock") for i in heard[:6]] + [(7, x, "polka"), (9, x, "polka")]
    others += [(11, int(i), "jazz") for i in range(1, data.n_items, 3)]
    own = [(0, int(i), "zzz-mine") for i in heard] + [(0, x, "zzz-mine"), (0, x, "polka")]
    with_own, without_own = _tagged(data, others + own), _tagged(data, others)
    candidates = Candidates(
        np.zeros(1, np.int64),
        np.asarray([x]),
        np.zeros((1, 0), np.float32),
        np.zeros((1, 0), np.float32),
        np.zeros((1, 0), np.float32),
    )
    history, users = data.user_items[:1], np.zeros(1, np.int64)

    def tag_features(source: Interactions, known_users) -> np.ndarray:
        builder = FeatureBuilder(("tags",)).fit(source)
        return builder.build(history, known_users, candidates)[0]

    kept = tag_features(with_own, users)
    np.testing.assert_array_equal(kept, tag_features(without_own, users))
    # The test has teeth: a new listener with the same history (not user 0, so the data holds
    # none of their tags) does see user 0's private tag on X and on the history, which would
    # point straight at X; for user 0 the cosine is that of others' tags only.
    leaked = tag_features(with_own, None)
    assert kept[0] == 0.0 and leaked[0] > 0.2 and leaked[1] > kept[1]


def test_tags_are_used_when_present(data):
    tags = [
        (u, int(i), f"g{u % 4}") for u in range(data.n_users) for i in data.user_items[u].indices
    ]
    model = create_model("hybrid", **SMALL).fit(_tagged(data, tags))
    assert {"tag_cosine", "tag_count"} <= set(model.feature_names_)


# -- the report ------------------------------------------------------------------------------


def test_the_report_measures_candidate_recall_importance_and_ablation(synthetic, tmp_path):
    from tastemaker.evaluation.hybrid_report import hybrid_report, write_report

    data, _ = synthetic
    params = {
        "candidates": 30,
        "iterations": 20,
        "generators": "als,sessions",
        "features": "scores,recency",
        "generator_params": {"als": {"factors": 8, "iterations": 5}},
    }
    result = hybrid_report(data, params, ablate=True)
    recall = result["candidate_recall"]
    assert set(recall["alone"]) == {"als", "sessions"}
    assert max(recall["alone"].values()) <= recall["union"] <= 1.0
    for name in recall["without"]:
        assert recall["without"][name] <= recall["union"]
    shares = [f["share"] for f in result["feature_importance"]["features"]]
    assert abs(sum(shares) - 1.0) < 1e-6
    labels = [row["label"] for row in result["ablation"]]
    assert labels[0] == "hybrid"
    assert "hybrid without sessions" in labels and "hybrid without recency features" in labels
    assert len(labels) == 1 + 1 + 2 + 2 + 2  # full, fused, 2 alone, 2 generators, 2 groups
    assert "no ranker (reciprocal-rank fusion)" in labels
    page = write_report(result, tmp_path / "report")
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 3
    assert json.loads((tmp_path / "report" / "results.json").read_text())["k"] == 10


def test_the_ablate_command(synthetic, tmp_path):
    from typer.testing import CliRunner

    from tastemaker.cli import app

    data, _ = synthetic
    data.save(tmp_path / "data")
    out = tmp_path / "ablation.json"
    params = ["--param", "candidates=20", "--param", "iterations=10", "--param",
              "generators=als,sessions"]  # fmt: skip
    result = CliRunner().invoke(
        app, ["ablate", str(tmp_path / "data"), "--quick", "--json", str(out), *params]
    )
    assert result.exit_code == 0, result.output
    assert "candidate recall" in result.output
    assert json.loads(out.read_text())["generators"] == ["als", "sessions"]
    bad = CliRunner().invoke(app, ["ablate", str(tmp_path / "data"), "--param", "als.factors=2"])
    assert bad.exit_code != 0


# -- quality on real data --------------------------------------------------------------------


@pytest.mark.slow
def test_hybrid_quality_on_hetrec(hetrec):
    """Default protocol (random 20 %, seed 0, full ranking). Measured NDCG@10 0.2618 with
    today's defaults (docs/hybrid.md); the best single model, ALS, gets 0.2445 on this split.
    The floor lies above ALS, with room for the 0.006 seed 0 moved when a generator was added."""
    from tastemaker.evaluation.metrics import ranking_metrics
    from tastemaker.evaluation.splits import random_split

    split = random_split(hetrec)
    model = create_model("hybrid").fit(split.train)
    metrics = ranking_metrics(model, split, ks=(10,))
    assert metrics["ndcg@10"] >= 0.25
    assert "tag_cosine" in model.feature_names_
    assert model.training_stats_["candidate_recall"] > 0.6


def test_too_little_data_for_a_ranker_falls_back_to_rank_fusion(tmp_path):
    """No user has the 5 items an inner validation split needs: the generators' ranks are
    fused instead, and the model still saves, loads and serves (an empty history too)."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(30), 3)
    items = np.concatenate([rng.choice(12, 3, replace=False) for _ in range(30)])
    data = Interactions.from_arrays([f"u{u}" for u in users], [f"i{i}" for i in items])
    model = create_model("hybrid", **SMALL).fit(data)
    assert model.booster_ is None
    ids, _ = model.recommend(np.arange(30), n=5)
    assert (ids >= 0).all()
    loaded = load_model(model.save(tmp_path / "fused"))
    assert not (tmp_path / "fused" / "ranker.txt").exists()
    np.testing.assert_array_equal(loaded.score(np.arange(30)), model.score(np.arange(30)))
    empty = sp.csr_matrix((1, data.n_items), dtype=np.float32)
    ids, scores = loaded.recommend_for_history(empty, n=3)
    assert (ids >= 0).all() and np.isfinite(scores).all()


def test_the_ranker_is_the_same_whatever_the_number_of_threads(data, monkeypatch):
    import tastemaker.models.hybrid as hybrid_module

    users = np.arange(data.n_users)
    scores = []
    for threads in (1, 2):
        monkeypatch.setattr(hybrid_module, "ranker_threads", lambda threads=threads: threads)
        scores.append(create_model("hybrid", **SMALL).fit(data).score(users))
    np.testing.assert_array_equal(scores[0], scores[1])

"""The evaluate / train / recommend / similar commands on small synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from tastemaker.data.synth import synthetic_interactions
from tastemaker.evaluation.metrics import metric_names

# Every one of these is part of the project: a model that fails to import fails the test.
FAST_MODELS = ["popularity", "als", "itemknn"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    inter = synthetic_interactions(users=300, artists=400, listens=30_000, seed=0)
    return inter.save(tmp_path_factory.mktemp("synth") / "ingested"), inter


def test_evaluate_json_shape(capsys, data_dir, tmp_path):
    path, inter = data_dir
    out_json = tmp_path / "out.json"
    code, out, err = run_cli(
        capsys,
        "evaluate",
        path,
        "--models",
        ",".join(FAST_MODELS),
        "--k",
        "10",
        "--k",
        "5,20",
        "--json",
        out_json,
    )
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert set(result) >= {"split", "k", "results"}
    assert result["k"] == [5, 10, 20]
    assert result["split"]["name"] == "random"
    assert result["split"]["params"] == {"test_fraction": 0.2, "min_items": 5, "seed": 0}
    assert [r["model"] for r in result["results"]] == FAST_MODELS
    for row in result["results"]:
        assert set(row) >= {"model", "params", "metrics", "fit_seconds", "evaluate_seconds"}
        assert list(row["metrics"]) == metric_names([5, 10, 20])
        assert all(0.0 <= row["metrics"][k] <= 1.0 for k in row["metrics"] if "novelty" not in k)
        # Better than chance (0.5) on structured data: with one item per artist (name-only
        # listens reconciled), AUC over synth seeds 0-2 is popularity 0.735-0.750, als
        # 0.599-0.618 (default settings, 300 users), itemknn 0.829-0.848.
        assert row["metrics"]["auc"] > 0.55
    assert "popularity" in out and "ndcg" in out


def test_evaluate_folds_report_and_params_file(capsys, data_dir, tmp_path):
    path, _ = data_dir
    best = tmp_path / "best.json"
    models = ["popularity", "als"]
    # A list, as the tuner may write; entries for models not being run are ignored.
    best.write_text(
        json.dumps(
            [
                {"model": "als", "params": {"factors": 12}},
                {"model": "some-other-model", "params": {"x": 1}},
            ]
        )
    )
    report = tmp_path / "report"
    out_json = tmp_path / "kfold.json"
    code, out, err = run_cli(
        capsys,
        "evaluate",
        path,
        "--models",
        ",".join(models),
        "--folds",
        "3",
        "--params-file",
        best,
        "--report",
        report,
        "--json",
        out_json,
    )
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert result["split"]["name"] == "user-kfold"
    for row in result["results"]:
        assert len(row["folds"]) == 3
        assert set(row["std"]) == set(row["metrics"])
        assert row["metrics"]["ndcg@10"] == pytest.approx(
            np.mean([f["ndcg@10"] for f in row["folds"]])
        )
        view = row["classification"]
        assert view["1:100"]["always_no_accuracy"] > 0.98
        assert view["1:1"]["positives"] == pytest.approx(view["1:1"]["negatives"], rel=0.2)
    assert result["results"][1]["params"]["factors"] == 12
    page = (report / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 4  # bars, curves, ROC, popularity
    assert "always" in page and "±" in page
    assert not list(tmp_path.glob(".report.tmp-*"))


def test_sampled_split_is_labelled(capsys, data_dir, tmp_path):
    path, _ = data_dir
    code, out, err = run_cli(
        capsys, "evaluate", path, "--models", "popularity", "--split", "sampled",
        "--negatives", "50", "--json", tmp_path / "s.json",
    )  # fmt: skip
    assert code == 0, err
    assert "SAMPLED" in out
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["split"]["full_ranking"] is False
    assert "not comparable" in result["split"]["label"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "nosuchmodel"], "unknown model"),
        (["--models", "popularity", "--param", "popularity.size=3"], "no parameter"),
        (["--models", "popularity", "--param", "factors=3"], "name the model"),
        (["--models", "popularity", "--param", "als.factors=3"], "not among the models"),
        (["--models", "popularity", "--k", "0"], "positive integers"),
        (["--models", "popularity", "--split", "weekly"], "--split"),
        (["--models", "popularity", "--split", "temporal", "--negatives", "5"], "does not apply"),
        (["--models", "popularity", "--folds", "3", "--split", "sampled"], "--folds"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, data_dir, args, message):
    path, _ = data_dir
    code, out, err = run_cli(capsys, "evaluate", path, *args)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err


def test_missing_data_and_params_file_errors(capsys, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "nothing", "--models", "popularity")
    assert code == 2 and len(err.strip().splitlines()) == 1
    bad = tmp_path / "best.json"
    bad.write_text("{not json")
    code, _, err = run_cli(
        capsys, "evaluate", tmp_path, "--models", "popularity", "--params-file", bad
    )
    assert code == 2 and "best.json" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("model", FAST_MODELS)
def test_train_recommend_similar_round_trip(capsys, data_dir, tmp_path, model):
    path, inter = data_dir
    model_dir = tmp_path / "model"
    code, out, err = run_cli(capsys, "train", path, "--model", model, "--out", model_dir)
    assert code == 0, err
    assert (model_dir / "manifest.json").is_file()
    heavy = int(np.argmax(np.diff(inter.user_items.indptr)))
    user = inter.users.id(heavy)
    code, out, err = run_cli(capsys, "recommend", model_dir, "--user", user, "--n", "5")
    assert code == 0, err
    names = inter.item_metadata["name"].to_list()
    heard = set(inter.user_items[heavy].indices.tolist())
    listed = [n for n in names if n in out]
    assert listed, out  # item names, not indices
    from tastemaker.models import load_model

    loaded = load_model(model_dir)
    top, _ = loaded.recommend(np.array([heavy]), n=5)
    expected = [names[i] for i in top[0] if i >= 0]
    for name in expected:
        assert name in out
    assert not set(top[0].tolist()) & heard
    code, out_all, err = run_cli(
        capsys, "recommend", model_dir, "--user", user, "--n", "5", "--include-heard"
    )
    assert code == 0 and "heard" in out_all

    item_name = names[int(np.argmax(np.diff(inter.item_users.indptr)))]
    code, out, err = run_cli(capsys, "similar", model_dir, "--item", item_name.upper())
    assert code == 0, err
    assert item_name in " ".join(out.split())  # the table's title may wrap the name

    for args, message in [
        (["recommend", model_dir, "--user", "no-such-user"], "unknown user"),
        (["similar", model_dir, "--item", "No Such Artist 123"], "unknown item"),
        (["recommend", tmp_path / "missing", "--user", user], "missing"),
    ]:
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_train_rejects_bad_parameters_without_writing(capsys, data_dir, tmp_path):
    path, _ = data_dir
    model_dir = tmp_path / "model"
    code, _, err = run_cli(
        capsys, "train", path, "--model", "popularity", "--out", model_dir, "--param", "x=1"
    )
    assert code == 2 and "no parameter" in err
    assert not model_dir.exists()


def test_a_small_test_set_is_warned_of_on_stderr_and_in_the_result(capsys, tmp_path):
    from tastemaker.evaluation.report import report_title

    tiny = synthetic_interactions(users=12, artists=60, listens=1_500, seed=1)
    path = tiny.save(tmp_path / "tiny")
    out_json = tmp_path / "tiny.json"
    code, _, err = run_cli(capsys, "evaluate", path, "--models", "popularity", "--json", out_json)
    assert code == 0, err
    result = json.loads(out_json.read_text())
    users = result["split"]["test_users"]
    assert 0 < users < 50
    (warning,) = result["warnings"]  # the report shows it too (tests/serving/test_browser.py)
    assert f"only {users} test users" in warning
    assert f"warning: {warning}" in " ".join(err.split())
    # The report's title names the data set and protocol, not the output folder.
    assert report_title(result) == "Evaluation: synth, random split, full ranking"


def test_no_warning_from_a_large_enough_test_set(capsys, data_dir, tmp_path):
    path, _ = data_dir
    code, _, err = run_cli(
        capsys, "evaluate", path, "--models", "popularity", "--json", tmp_path / "quiet.json"
    )
    assert code == 0 and "warning:" not in err
    assert "warnings" not in json.loads((tmp_path / "quiet.json").read_text())


def test_the_classification_view_fits_separable_data_without_overflow():
    """Ranks that separate the labels within a narrow band drive the logistic fit's slope to
    thousands, and a rank outside the band to exp(6000): the RuntimeWarning of a normal run,
    which expit does not raise."""
    import warnings

    from tastemaker.evaluation.classification import _fit_platt, _summarise

    # The rank feature (1 = top): positives just above negatives, and one of each far out.
    x = np.concatenate([np.full(500, 0.5001), [1.0], np.full(500, 0.5), [0.0]])
    y = np.concatenate([np.ones(501), np.zeros(501)])
    half = np.arange(len(x)) % 2 == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = _fit_platt(x, y)
        summary = _summarise(x, y, half)
    assert a > 1000 and np.isfinite(b)  # steep, as the data ask
    assert summary["accuracy"] == 1.0 and summary["roc_auc"] == 1.0
    assert np.isfinite(summary["log_loss"])

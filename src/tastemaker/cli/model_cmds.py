"""``tastemaker train``, ``recommend`` and ``similar``: one model, saved and queried."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

import tastemaker.threads as thread_policy
from tastemaker.cli.common import (
    MODEL_NAMES,
    DataArg,
    DataOptions,
    EngineOptions,
    ForceOpt,
    Output,
    ThreadsOpt,
    claim_outputs,
    console,
    err_console,
    option_groups,
)
from tastemaker.errors import UsageError
from tastemaker.models import load_model
from tastemaker.models.base import MODEL_KIND
from tastemaker.models.registry import fit_model, resolve_models

ModelDirArg = Annotated[Path, typer.Argument(help="A model directory written by train.")]
NOpt = Annotated[int, typer.Option("--n", help="How many items to list (1 to 1000).")]


@option_groups
def train(
    data: DataArg,
    model: Annotated[str, typer.Option("--model", help=f"One of: {MODEL_NAMES}.")] = "als",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Model directory to write (replaces a model directory)."),
    ] = None,
    force: ForceOpt = False,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="NAME=VALUE or MODEL.NAME=VALUE (repeatable)."),
    ] = None,
    params_file: Annotated[
        list[Path] | None,
        typer.Option("--params-file", help='JSON {"model": ..., "params": {...}} (best.json).'),
    ] = None,
    threads: ThreadsOpt = None,
    data_options: DataOptions = DataOptions(),
    engine_options: EngineOptions = EngineOptions(),
) -> None:
    """Fit one model on all the data and save it (manifest + arrays, no pickle)."""
    thread_policy.request(threads)
    if out is None:
        raise UsageError("--out: give the model directory to write")
    ((name, params),) = resolve_models([model], param or [], params_file or [], default_model=model)
    if engine_options.engine == "spark" and name != "als":
        raise UsageError(f"--engine spark trains only 'als'; {name!r} runs with --engine local")
    claim_outputs(force, [data, *(params_file or [])], Output("--out", out, MODEL_KIND))
    factory = engine_options.model_factory()
    interactions = data_options.load(data)
    started = time.perf_counter()
    with err_console.status(f"fitting {name}"):
        fitted = fit_model(name, params, interactions, factory)
    seconds = time.perf_counter() - started
    fitted.save(out)
    console.print(
        f"trained [bold]{name}[/] on {interactions.n_users:,} users x "
        f"{interactions.n_items:,} items ({interactions.nnz:,} pairs) in {seconds:.1f} s "
        f"-> {out}"
    )


def _check_n(n: int) -> None:
    # The API's cap: a list longer than this is not a recommendation, and n allocates
    # (rows x n) arrays (--n 1000000000 asked for gigabytes).
    from tastemaker.serving.schemas import MAX_N

    if not 1 <= n <= MAX_N:
        raise UsageError(f"--n must be between 1 and {MAX_N}; got {n}")


def _load(model_dir: Path):
    return load_model(model_dir)


def _names(model, items: Iterable[Any]) -> list[str]:
    names = model.interactions_.item_metadata["name"]
    return [str(names[int(i)]) for i in items]


def _resolve_item(data, text: str) -> int:
    """The item ``text`` names (id, name in any case or accents, or an unambiguous close
    spelling, with the same matcher as the service's search); a one-line error listing
    "did you mean" candidates when it is unsure."""
    resolution = data.name_matcher.resolve(text)
    names = data.name_matcher.names
    if resolution.index is None:
        if resolution.candidates:
            close = ", ".join(names[i] for i in resolution.candidates)
            raise UsageError(f"unknown item {text!r}: did you mean {close}?")
        raise UsageError(f"unknown item {text!r}: no such id or name in the model")
    if resolution.how in ("fuzzy", "prefix"):
        err_console.print(f"taking {text!r} as {names[resolution.index]}", highlight=False)
    return resolution.index


@option_groups
def recommend(
    model_dir: ModelDirArg,
    user: Annotated[
        str | None, typer.Option("--user", help="A user id as in the data (or --all).")
    ] = None,
    n: NOpt = 10,
    include_heard: Annotated[
        bool, typer.Option("--include-heard", help="Also list items the user already heard.")
    ] = False,
    all_users: Annotated[
        bool,
        typer.Option(
            "--all", help="Every user's top-n to the Parquet file --out (the nightly batch)."
        ),
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="--all: the Parquet file to write.")
    ] = None,
    keep_heard: Annotated[
        bool,
        typer.Option(
            "--keep-heard",
            help="--all: keep heard items in the lists, flagged with their last-listened time.",
        ),
    ] = False,
    index: Annotated[
        str,
        typer.Option(
            "--index",
            help="--all: 'exact' (the model scores every item) or 'faiss' "
            "(approximate, factor models).",
        ),
    ] = "exact",
    ef_search: Annotated[
        int, typer.Option("--ef-search", help="--index faiss: HNSW search breadth.")
    ] = 128,
    block_users: Annotated[
        int, typer.Option("--block-users", help="--all: users ranked and written at once.")
    ] = 1024,
    partitions: Annotated[
        int, typer.Option("--partitions", help="--all --engine spark: Parquet parts to write.")
    ] = 8,
    force: ForceOpt = False,
    threads: ThreadsOpt = None,
    engine_options: EngineOptions = EngineOptions(),
) -> None:
    """Top-n items for a user of the training data, by name; or, with --all, every user's
    top-n written to a Parquet file (--engine spark: a folder of Parquet parts)."""
    _check_n(n)
    thread_policy.request(threads)
    if all_users:
        from tastemaker.cli.batch_cmd import BatchOptions, run_batch

        if user is not None:
            raise UsageError("give --user or --all, not both")
        options = BatchOptions(keep_heard, index, ef_search, block_users, partitions)
        with thread_policy.limited():  # the index build and the blocks on the free cores
            run_batch(model_dir, n, out, options, engine_options, force)
        return
    if engine_options.engine != "local":
        raise UsageError("--engine spark ranks every user (--all); one user runs locally")
    if out is not None or keep_heard or index != "exact":
        raise UsageError("--out, --keep-heard and --index go with --all (every user)")
    if user is None:
        raise UsageError("give --user USER, or --all --out FILE for every user")
    model = _load(model_dir)
    row = model.interactions_.users.get(user)
    if row < 0:
        raise UsageError(f"unknown user {user!r} (the model knows {model.interactions_.n_users:,})")
    with thread_policy.limited():
        items, scores = model.recommend(np.array([row]), n=n, exclude_heard=not include_heard)
    keep = items[0] >= 0
    items, scores = items[0][keep], scores[0][keep]
    heard = set(model.interactions_.user_items[row].indices.tolist())
    table = Table(title=f"{model.name}: top {n} for user {user}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column(model.interactions_.level)
    table.add_column("score", justify="right")
    if include_heard:
        table.add_column("heard")
    for rank, (item, score) in enumerate(zip(items, scores, strict=True), 1):
        cells = [str(rank), _names(model, [item])[0], f"{score:.4g}"]
        if include_heard:
            cells.append("yes" if int(item) in heard else "")
        table.add_row(*cells)
    console.print(table)


def similar(
    model_dir: ModelDirArg,
    item: Annotated[
        str,
        typer.Option(
            "--item",
            help="An item id or name: any case or accents, a close spelling is taken when "
            "unambiguous, else candidates are listed.",
        ),
    ],
    n: NOpt = 10,
    threads: ThreadsOpt = None,
) -> None:
    """The n items most similar to one item, by name."""
    _check_n(n)
    thread_policy.request(threads)
    model = _load(model_dir)
    index = _resolve_item(model.interactions_, item)
    with thread_policy.limited():
        items, scores = model.similar_items(np.array([index]), n=n)
    keep = items[0] >= 0
    name = _names(model, [index])[0]
    table = Table(title=f"{model.name}: {n} most similar to {name}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column(model.interactions_.level)
    table.add_column("similarity", justify="right")
    for rank, (other, score) in enumerate(zip(items[0][keep], scores[0][keep], strict=True), 1):
        table.add_row(str(rank), _names(model, [other])[0], f"{score:.4g}")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(train)
    app.command()(recommend)
    app.command()(similar)

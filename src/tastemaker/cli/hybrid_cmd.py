"""``tastemaker ablate``: what each part of the hybrid recommender is worth."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer
from rich.table import Table

import tastemaker.threads as thread_policy
from tastemaker.cli.common import (
    DataArg,
    DataOptions,
    ForceOpt,
    JsonOpt,
    ReportOpt,
    ThreadsOpt,
    claim_results,
    console,
    err_console,
    option_groups,
    write_results,
)
from tastemaker.errors import UsageError
from tastemaker.models.registry import parse_param_args


def _ablation_table(result: dict) -> Table:
    k = result["k"]
    table = Table(title=result["split"]["label"], title_justify="left")
    for column in ("variant", f"ndcg@{k}", f"recall@{k}", "auc", "vs full", "fit s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in result["ablation"]:
        m = row["metrics"]
        table.add_row(
            row["label"],
            f"{m[f'ndcg@{k}']:.4f}",
            f"{m[f'recall@{k}']:.4f}",
            f"{m['auc']:.3f}",
            f"{row['ndcg_vs_full']:+.4f}",
            "-" if row["fit_seconds"] is None else f"{row['fit_seconds']:.1f}",
        )
    return table


def _recall_table(result: dict) -> Table:
    recall = result["candidate_recall"]
    table = Table(
        title=(
            f"candidate recall: top {recall['candidates_per_generator']} per generator, "
            f"{recall['mean_candidates_per_user']:.0f} per user; union {recall['union']:.3f}"
        ),
        title_justify="left",
    )
    for column in ("generator", "alone", "union without it", "only it reaches"):
        table.add_column(column, justify="left" if column == "generator" else "right")
    for name, alone in recall["alone"].items():
        without = recall["without"][name]
        table.add_row(name, f"{alone:.3f}", f"{without:.3f}", f"{recall['union'] - without:.3f}")
    return table


@option_groups
def ablate(
    data: DataArg,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Hybrid hyperparameter NAME=VALUE (repeatable)."),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="random (default protocol), temporal, leave-last-out.")
    ] = "random",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split.")] = 0,
    k: Annotated[int, typer.Option("--k", help="Metric cut-off.")] = 10,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Skip the refits without each generator / feature group."),
    ] = False,
    report: ReportOpt = None,
    json_out: JsonOpt = None,
    force: ForceOpt = False,
    threads: ThreadsOpt = None,
    data_options: DataOptions = DataOptions(),
) -> None:
    """Fit the hybrid, then measure candidate recall per generator, feature importance and an
    ablation table (the hybrid without each generator and each feature group)."""
    from tastemaker.evaluation.hybrid_report import REPORT_KIND, hybrid_report, write_report

    thread_policy.request(threads)
    if k < 1:
        raise UsageError("--k must be a positive integer")
    if split not in ("random", "temporal", "leave-last-out"):
        raise UsageError(f"--split {split!r}: choose random, temporal or leave-last-out")
    params = parse_param_args(param or [], default_model="hybrid")
    unknown = set(params) - {"hybrid"}
    if unknown:
        raise UsageError(f"--param: only hybrid parameters apply here, not {sorted(unknown)}")
    claim_results(force, [data], json_out, report, REPORT_KIND)
    interactions = data_options.load(data)
    split_params = {"seed": seed} if split in ("random", "leave-last-out") else {}
    # The fits and the scoring of the test users alike on the free cores (tastemaker.threads).
    with err_console.status("hybrid report") as status, thread_policy.limited():
        result = hybrid_report(
            interactions,
            params.get("hybrid", {}),
            split=split,
            split_params=split_params,
            k=k,
            ablate=not quick,
            progress=lambda message: status.update(message),
        )
    console.print(_ablation_table(result))
    console.print(_recall_table(result))
    title = f"tastemaker hybrid report: {data.name}"
    write_results(result, json_out, report, partial(write_report, title=title))


def register(app: typer.Typer) -> None:
    """Add ``ablate`` to the app."""
    app.command()(ablate)

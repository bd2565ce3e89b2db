"""``tastemaker evaluate`` and ``tastemaker replicate``: offline evaluation on held-out data."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import tastemaker.threads as thread_policy
from tastemaker.cli.common import (
    MODEL_NAMES,
    DataArg,
    DataOptions,
    EngineOptions,
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
from tastemaker.models.registry import resolve_models

KOpt = Annotated[
    list[str],
    typer.Option("--k", help="Cut-off(s): repeat the option or give a comma list (10,20)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the split (and sampling).")]


def parse_ks(values: list[str]) -> list[int]:
    """``["10", "5,20"]`` -> ``[5, 10, 20]``; UsageError on anything but positive integers."""
    ks = set()
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or int(part) < 1:
                raise UsageError(f"--k {part!r}: cut-offs are positive integers")
            ks.add(int(part))
    if not ks:
        raise UsageError("--k: give at least one cut-off")
    return sorted(ks)


# The cold-start protocol's models: the content model and its two floors.
COLD_MODELS = "tags,tag-count,random"


def split_params(
    split: str, test_fraction: float | None, cutoff: str | None, negatives: int | None
) -> dict[str, Any]:
    """The options that apply to ``split``; UsageError for one given to a split that lacks it."""
    params: dict[str, Any] = {}
    accepts = {
        "random": {"test_fraction"},
        "temporal": {"test_fraction", "cutoff"},
        "leave-last-out": set(),
        "sampled": {"negatives"},
        "strong": {"test_fraction"},
        "short": set(),
        "cold-items": {"test_fraction"},
    }
    given = {"test_fraction": test_fraction, "cutoff": cutoff, "negatives": negatives}
    for name, value in given.items():
        if value is None:
            continue
        if name not in accepts.get(split, set()):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} does not apply to the {split} split")
        params[name] = value
    return params


def _cell(result: dict, key: str, digits: int = 3) -> str:
    value = result["metrics"].get(key)
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    if "std" in result:
        text += f"±{result['std'][key]:.{digits}f}"
    return text


SHORT = {
    "precision": "prec",
    "hit_rate": "hit",
    "coverage": "cov",
    "novelty": "nov",
    "capped_recall": "recall-R",
    "popular_share": "top20",
}


def results_table(result: dict[str, Any], title: str | None = None) -> Table:
    """The metrics of every model, one row each (mean ± std over folds for K-fold)."""
    ks = result["k"]
    last = ks[-1]
    strong = result["split"]["name"] == "strong"
    # Strong generalisation: Liang et al. 2018's Recall@R beside ours, in place of prec / map.
    per_cut = (
        ("ndcg", "capped_recall", "recall") if strong else ("ndcg", "recall", "precision", "map")
    )
    keys = [f"{base}@{cut}" for cut in ks for base in per_cut]
    keys += [f"hit_rate@{last}", f"mrr@{last}", "auc", f"coverage@{last}"]
    keys += [f"popular_share@{last}", f"novelty@{last}"]
    table = Table(title=title or result["split"]["label"], title_justify="left")
    table.add_column("model", style="bold", no_wrap=True, min_width=10)
    for key in keys:
        base, _, cut = key.partition("@")
        label = SHORT.get(base, base) + (f"@{cut}" if cut and len(ks) > 1 else "")
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("fit s", justify="right", no_wrap=True)
    table.add_column("eval s", justify="right", no_wrap=True)
    for row in result["results"]:
        cells = [_cell(row, key, 2 if key.startswith("novelty") else 3) for key in keys]
        table.add_row(
            row.get("label", row["model"]),
            *cells,
            f"{row['fit_seconds']:.1f}",
            f"{row['evaluate_seconds']:.1f}",
        )
    if len(ks) == 1:
        table.caption = f"k = {last}; novelty in bits"
    else:
        table.caption = (
            f"k = {', '.join(map(str, ks))}; hit, mrr, cov, top20, nov at k = {last}; "
            "novelty in bits"
        )
    table.caption += "; top20: share of each list among the 20 most listened-to items"
    if strong:
        table.caption += "; recall-R: hits / min(k, held-out items) (Liang et al. 2018)"
    return table


def print_table(table: Table) -> None:
    """Print wide tables whole when the output is not a terminal (files, pipes, CI logs)."""
    if console.is_terminal:
        console.print(table)
    else:
        Console(width=240).print(table)


def classification_table(result: dict[str, Any]) -> Table | None:
    """The original study's accuracy-style view, one row per model."""
    rows = [r for r in result["results"] if "classification" in r]
    if not rows:
        return None
    trap = rows[0]["classification"]["always_no_accuracy_full_matrix"]
    table = Table(
        title="The original study's classification view (held-out positives vs sampled "
        "unheard items)",
        title_justify="left",
        caption=f"'always no' on the full matrix of the test users' unheard items: {trap:.2%}",
    )
    table.add_column("model", style="bold", no_wrap=True)
    for column in (
        "acc 1:1",
        "acc 1:100",
        "always-no 1:100",
        "log loss 1:100",
        "prec 1:100",
        "recall 1:100",
        "ROC AUC",
    ):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        one, hundred = row["classification"]["1:1"], row["classification"]["1:100"]
        table.add_row(
            row.get("label", row["model"]),
            f"{one['accuracy']:.3f}",
            f"{hundred['accuracy']:.4f}",
            f"{hundred['always_no_accuracy']:.4f}",
            f"{hundred['log_loss']:.3f}",
            f"{hundred['precision']:.3f}",
            f"{hundred['recall']:.3f}",
            f"{hundred['roc_auc']:.3f}",
        )
    return table


def grid_table(result: dict[str, Any]) -> Table | None:
    """The original grid: test AUC (how the study selected) and validation AUC (how to)."""
    if not result.get("grid"):
        return None
    selection = result["selection"]
    table = Table(
        title="The study's grid (corners): selected on test AUC as it did, vs on validation",
        title_justify="left",
        caption=(
            f"selected on test: test AUC {selection['selected_on_test_auc']:.4f}; selected on "
            f"validation: test AUC {selection['selected_on_validation_test_auc']:.4f} "
            f"(optimism {selection['optimism']:+.4f})"
        ),
    )
    for column in ("factors", "reg", "iterations", "alpha", "test AUC", "valid AUC", "test NDCG"):
        table.add_column(column, justify="right")
    table.add_column("selected")
    for g in result["grid"]:
        p = g["params"]
        marks = []
        if p == selection["selected_on_test"]:
            marks.append("on test")
        if p == selection["selected_on_validation"]:
            marks.append("on validation")
        table.add_row(
            str(p["factors"]),
            str(p["regularization"]),
            str(p["iterations"]),
            f"{p['alpha']:g}",
            f"{g['auc']:.4f}",
            f"{g['validation_auc']:.4f}",
            f"{g['ndcg']:.4f}",
            ", ".join(marks),
        )
    return table


def replication_tables(result: dict[str, Any]) -> list[Table]:
    tables = [results_table(result), classification_table(result), grid_table(result)]
    return [t for t in tables if t is not None]


def _write_outputs(result: dict, json_path: Path | None, report: Path | None, what: str) -> None:
    from tastemaker.evaluation.report import report_title, write_report

    for warning in result.get("warnings", []):
        err_console.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    title = report_title(result, what)
    write_results(result, json_path, report, partial(write_report, title=title))


@option_groups
def evaluate(
    data: DataArg,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            help=f"Comma list of models, from: {MODEL_NAMES} (default: popularity,als,"
            f"itemknn,ease; {COLD_MODELS} with --split cold-items).",
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="random (default protocol), temporal, leave-last-out, sampled, strong "
            "(held-out users, Liang et al. 2018), short (short histories) or cold-items (10 % "
            "of the items with >= 5 listeners held out entirely; test users rank only them).",
        ),
    ] = "random",
    folds: Annotated[
        int | None,
        typer.Option("--folds", help="User K-fold: held-out users are folded in (mean ± std)."),
    ] = None,
    k: Annotated[
        list[str] | None,
        typer.Option(
            "--k",
            help="Cut-off(s): repeat the option or give a comma list (default 10; "
            "strong: 20,50,100 as in Liang et al. 2018).",
        ),
    ] = None,
    seed: SeedOpt = 0,
    fold_in_k: Annotated[
        str | None,
        typer.Option(
            "--fold-in-k",
            help="Short histories: fold in only each held-out user's first K items (comma "
            "list, default 1,3,5,10); implies --split short.",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="MODEL.NAME=VALUE, e.g. als.factors=128 (repeatable)."),
    ] = None,
    params_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--params-file", help='JSON {"model": ..., "params": {...}} or a list (best.json).'
        ),
    ] = None,
    test_fraction: Annotated[
        float | None, typer.Option("--test-fraction", help="Held-out share (default 0.2).")
    ] = None,
    cutoff: Annotated[
        str | None,
        typer.Option("--cutoff", help="Temporal split: global cut-off date (ISO) or epoch s."),
    ] = None,
    negatives: Annotated[
        int | None,
        typer.Option("--negatives", help="Sampled split: negatives per test item (100)."),
    ] = None,
    json_out: JsonOpt = None,
    report: ReportOpt = None,
    force: ForceOpt = False,
    threads: ThreadsOpt = None,
    data_options: DataOptions = DataOptions(),
    engine_options: EngineOptions = EngineOptions(),
) -> None:
    """Evaluate models on held-out data (full ranking by default) and print a table."""
    thread_policy.request(threads)
    from tastemaker.evaluation.protocol import evaluate as run_evaluation
    from tastemaker.evaluation.splits import SPLITS

    if models is None:
        models = COLD_MODELS if split == "cold-items" else "popularity,als,itemknn,ease"
    names = [m.strip() for m in models.split(",") if m.strip()]
    specs = resolve_models(names, param or [], params_file or [])
    if fold_in_k is not None and split == "random":
        split = "short"
    ks = parse_ks(k or (["20,50,100"] if split == "strong" else ["10"]))
    if split not in SPLITS or split == "user-kfold":
        raise UsageError(
            f"--split {split!r}: choose random, temporal, leave-last-out, sampled, strong, "
            "short or cold-items"
        )
    if fold_in_k is not None and split != "short":
        raise UsageError(f"--fold-in-k does not apply to the {split} split")
    fold_in_ks = parse_ks([fold_in_k or "1,3,5,10"]) if split == "short" else []
    params = split_params(split, test_fraction, cutoff, negatives)
    if folds is not None and split != "random":
        raise UsageError("--folds makes a user K-fold split; use it with --split random")
    from tastemaker.evaluation.report import REPORT_KIND

    claim_results(force, [data, *(params_file or [])], json_out, report, REPORT_KIND)
    factory = engine_options.model_factory()
    interactions = data_options.load(data)
    options = {
        "curves": report is not None,
        "classification": report is not None,
        "factory": factory,
    }
    with thread_policy.limited():  # scoring the test users too, not only the fits
        if split == "short":
            from tastemaker.evaluation.protocol import evaluate_short_histories

            result = evaluate_short_histories(
                interactions, specs, fold_in_ks, ks=ks, seed=seed, **options
            )
        else:
            result = run_evaluation(
                interactions,
                specs,
                split=split,
                ks=ks,
                seed=seed,
                folds=folds,
                split_params=params,
                **options,
            )
    print_table(results_table(result))
    _write_outputs(result, json_out, report, "Evaluation")


@option_groups
def replicate(
    data: DataArg,
    grid: Annotated[
        bool,
        typer.Option(
            "--grid/--no-grid",
            help="Also run the original study's grid, selected on the test split as it was.",
        ),
    ] = True,
    corrected: Annotated[
        str,
        typer.Option(
            "--corrected",
            help=f"Corrected models to run beside the original (comma list, from: {MODEL_NAMES}).",
        ),
    ] = "als,ease,itemknn,rp3beta,multvae,neumf",
    ncf_seed: Annotated[
        bool,
        typer.Option(
            "--ncf-seed/--no-ncf-seed",
            help="Also train the study's own network (ncf-seed; minutes on a CPU).",
        ),
    ] = True,
    k: KOpt = ["10"],  # noqa: B006
    seed: SeedOpt = 0,
    json_out: JsonOpt = None,
    report: ReportOpt = None,
    force: ForceOpt = False,
    data_options: DataOptions = DataOptions(),
) -> None:
    """Redo the original study: its ALS settings and grid beside the corrected pipeline."""
    from tastemaker.evaluation.replicate import replicate as run_replication

    ks = parse_ks(k)
    names = [m.strip() for m in corrected.split(",") if m.strip()]
    from tastemaker.evaluation.report import REPORT_KIND

    claim_results(force, [data], json_out, report, REPORT_KIND)
    interactions = data_options.load(data)
    result = run_replication(
        interactions,
        corrected=names,
        grid=grid,
        ks=ks,
        seed=seed,
        curves=report is not None,
        original_ncf=ncf_seed,
    )
    for table in replication_tables(result):
        print_table(table)
    for note in result.get("notes", []):
        err_console.print(f"note: {note}")
    _write_outputs(result, json_out, report, "Replication of the original study")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(evaluate)
    app.command()(replicate)

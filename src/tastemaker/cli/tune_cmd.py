"""``tastemaker tune``: hyperparameter search on validation carved from training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tastemaker.cli.common import (
    DATA_HELP,
    MODEL_NAMES,
    DataOptions,
    ForceOpt,
    Output,
    claim_outputs,
    console,
    err_console,
    option_groups,
)
from tastemaker.models import model_class


def register(app: typer.Typer) -> None:
    """Add the ``tune`` command."""

    @app.command()
    @option_groups
    def tune(
        data: Annotated[Path, typer.Argument(help=DATA_HELP, metavar="DATA")],
        model: Annotated[
            str,
            typer.Option(
                "--model",
                help=f"Model to tune, one of: {MODEL_NAMES} (those without a shipped space "
                "need --space).",
            ),
        ],
        search: Annotated[
            str, typer.Option("--search", help="optuna (TPE, pruning), grid or random.")
        ] = "optuna",
        trials: Annotated[
            int | None,
            typer.Option("--trials", help="Trials to finish (default 50; grid: every point)."),
        ] = None,
        metric: Annotated[
            str, typer.Option("--metric", help="Validation metric to maximise: NAME@K or auc.")
        ] = "ndcg@10",
        folds: Annotated[
            int,
            typer.Option(
                "--folds", help="1: random validation split(s) of training; K >= 2: user K-fold."
            ),
        ] = 1,
        repeats: Annotated[
            int | None,
            typer.Option(
                "--repeats",
                help="Random validation splits averaged per trial, with --folds 1 (default 2: "
                "half the noise of one split, twice the fitting).",
            ),
        ] = None,
        space: Annotated[
            str | None,
            typer.Option(
                "--space", help="A space TOML file, or a shipped name ('seed': the paper's grid)."
            ),
        ] = None,
        storage: Annotated[
            str | None,
            typer.Option(
                "--storage",
                help="Optuna storage to keep and resume the study (sqlite:///tune.db or a path).",
            ),
        ] = None,
        study_name: Annotated[
            str | None,
            typer.Option("--study-name", help="Study name (default MODEL-SEARCH[-SPACE])."),
        ] = None,
        timeout: Annotated[
            float | None, typer.Option("--timeout", help="Stop searching after S seconds.")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of sampler, folds, models.")] = 0,
        jobs: Annotated[
            int, typer.Option("--jobs", help="Trials run at once, in threads (see --threads).")
        ] = 1,
        threads: Annotated[
            int | None,
            typer.Option(
                "--threads",
                help="Threads per trial for BLAS / OpenMP / torch (default: cores / jobs).",
            ),
        ] = None,
        prune: Annotated[
            bool, typer.Option("--prune/--no-prune", help="Prune trailing trials early.")
        ] = True,
        out: Annotated[Path, typer.Option("--out", help="Where to write best.json.")] = Path(
            "best.json"
        ),
        report: Annotated[
            Path | None, typer.Option("--report", help="Write an HTML report into DIR.")
        ] = None,
        force: ForceOpt = False,
        data_options: DataOptions = DataOptions(),
    ) -> None:
        """Tune a model's hyperparameters on validation carved from training; evaluate the best
        and the defaults once on the test split; write best.json (for --params-file)."""
        from tastemaker.tuning.config import SearchConfig
        from tastemaker.tuning.report import REPORT_KIND
        from tastemaker.tuning.search import BEST_KIND, tune, write_best
        from tastemaker.tuning.spaces import load_space
        from tastemaker.tuning.study import storage_path

        # Check every argument before the (slow) data load.
        model_class(model)
        config = SearchConfig(
            model=model,
            space=load_space(space, model),
            search=search,
            trials=trials,
            metric=metric,
            folds=folds,
            repeats=repeats,
            seed=seed,
            storage=storage,
            study_name=study_name,
            timeout=timeout,
            n_jobs=jobs,
            threads=threads,
            prune=prune,
        )
        space_file = Path(space) if space and Path(space).is_file() else None
        claim_outputs(
            force,
            [data, space_file, storage_path(storage)],
            Output("--out", out, BEST_KIND, file=True),
            Output("--report", report, REPORT_KIND),
        )
        interactions = data_options.load(data)
        try:
            result = tune(interactions, config, progress=True)
        except KeyboardInterrupt:
            if storage:
                err_console.print(
                    f"interrupted; finished trials are kept in {storage} "
                    f"(study {config.default_study_name()!r}): run the same command to resume"
                )
            raise
        write_best(out, result)
        if report is not None:
            from tastemaker.tuning.report import write_report

            write_report(report, result)
        _print_summary(result, out, report)


def _print_summary(result, out: Path, report: Path | None) -> None:
    from rich.table import Table

    metric = result.config.metric_name
    table = Table(title=f"{result.config.model}: {result.config.search} search, {metric}")
    table.add_column("configuration")
    table.add_column("validation", justify="right")
    table.add_column("test", justify="right")
    table.add_column("params")
    params = ", ".join(f"{k}={_short(v)}" for k, v in result.params.items())
    table.add_row(
        f"tuned (trial {result.best_trial})",
        f"{result.validation:.4f}",
        f"{result.test:.4f}",
        params,
    )
    table.add_row("defaults", f"{result.default_validation:.4f}", f"{result.default_test:.4f}", "")
    console.print(table)
    counts = result.trial_counts()
    gain = (result.test - result.default_test) / result.default_test if result.default_test else 0
    console.print(
        f"trials: {counts}; test {metric} {gain:+.1%} over the defaults; best params -> {out}"
        + (f"; report -> {report}/index.html" if report else "")
    )


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""The tuning report: validation against test, the trials table, and the search's plots.

One self-contained HTML page (PNG plots embedded as base64) plus ``trials.csv`` and
``best.json``, written into a directory atomically: a report is complete or absent.
Plots are drawn with matplotlib's object API (no pyplot state, no display needed).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tastemaker.artifacts import atomic_directory, tagged_json, write_manifest
from tastemaker.tuning.search import BEST_KIND, TuneResult

REPORT_KIND = "tuning-report"  # the kind its folder's manifest names
REPORT_FORMAT_VERSION = 1

STATE_COLOURS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728"}


def _figure(width: float = 7.0, height: float = 3.6) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return (
            f"{value:.{digits}g}"
            if abs(value) >= 1e4 or abs(value) < 1e-3
            else f"{value:.{digits}f}"
        )
    return "" if value is None else str(value)


# -- plots -----------------------------------------------------------------------------------


def history_plot(result: TuneResult) -> str:
    """Each trial's validation value, pruned trials at their last reported value, the best so
    far, and the defaults' validation value (test values are in the table: another scale)."""
    trials = result.study.get_trials(deepcopy=False)
    fig = _figure()
    ax = fig.add_subplot()
    best, best_line = -math.inf, []
    for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
        xs, ys = [], []
        for t in trials:
            if t.state.name != state:
                continue
            value = t.value if state == "COMPLETE" else _last_intermediate(t)
            if value is not None:
                xs.append(t.number)
                ys.append(value)
        if xs:
            label = "trial" if state == "COMPLETE" else "pruned (last reported value)"
            ax.scatter(xs, ys, marker=marker, s=18, color=STATE_COLOURS[state], label=label)
    xs = []
    for t in trials:
        if t.state.name == "COMPLETE":
            best = max(best, t.value)
        if best > -math.inf:
            xs.append(t.number)
            best_line.append(best)
    if xs:
        ax.step(xs, best_line, where="post", color="black", linewidth=1.2, label="best so far")
    ax.axhline(result.default_validation, color="grey", linestyle="--", label="defaults")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {result.config.metric_name}")
    ax.set_title("Optimization history")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def _last_intermediate(trial: Any) -> float | None:
    if not trial.intermediate_values:
        return None
    return trial.intermediate_values[max(trial.intermediate_values)]


def importances(study: Any) -> dict[str, float]:
    """Parameter importances (Optuna's fANOVA) over completed trials; {} when not computable."""
    import optuna

    try:
        return optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}  # too few completed trials, or no parameter varies


def importance_plot(values: dict[str, float]) -> str | None:
    if not values:
        return None
    names = list(values)[::-1]
    fig = _figure(6.0, 0.5 + 0.35 * len(names))
    ax = fig.add_subplot()
    ax.barh(names, [values[n] for n in names], color="#1f77b4")
    ax.set_xlabel("importance (fANOVA, share of variance)")
    ax.set_title("Hyperparameter importance")
    return _png(fig)


def intermediate_plot(result: TuneResult) -> str | None:
    """Validation value against iteration for every trial that reported any (pruning's view)."""
    trials = [t for t in result.study.get_trials(deepcopy=False) if t.intermediate_values]
    if not trials:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for t in trials:
        steps = sorted(t.intermediate_values)
        colour = STATE_COLOURS.get(t.state.name, "grey")
        ax.plot(steps, [t.intermediate_values[s] for s in steps], color=colour, alpha=0.5, lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("iteration / epoch")
    ax.set_ylabel(f"validation {result.config.metric_name} (first fold)")
    ax.set_title("Intermediate values (blue: completed, orange: pruned)")
    return _png(fig)


def slice_plot(result: TuneResult) -> str | None:
    """The validation value against each searched parameter, one panel per parameter."""
    complete = [t for t in result.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    params = [p for p in result.config.space.params if any(p.name in t.params for t in complete)]
    if not params:
        return None
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig = _figure(3.0 * cols, 2.4 * rows)
    for i, param in enumerate(params):
        ax = fig.add_subplot(rows, cols, i + 1)
        points = [
            (t.params[param.name], t.value, t.number) for t in complete if param.name in t.params
        ]
        xs, ys, numbers = zip(*points, strict=True)
        if param.type == "categorical":
            labels = [str(param.encode(c)) for c in param.choices]
            positions = [labels.index(str(x)) for x in xs]
            jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(positions))
            ax.scatter(np.asarray(positions) + jitter, ys, c=numbers, cmap="viridis", s=14)
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
        else:
            ax.scatter(xs, ys, c=numbers, cmap="viridis", s=14)
            if param.log:
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(param.name, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"validation {result.config.metric_name} by parameter (colour: trial number)")
    return _png(fig)


# -- tables ----------------------------------------------------------------------------------


def trial_rows(result: TuneResult) -> tuple[list[str], list[list[Any]]]:
    """The trials table: one row per trial, one column per parameter."""
    names = result.config.space.names
    header = [
        "trial",
        "state",
        f"validation {result.config.metric_name}",
        "pruned at",
        "seconds",
        "origin",
        *names,
        "error",
    ]
    rows = []
    for t in result.study.get_trials(deepcopy=False):
        seconds = t.duration.total_seconds() if t.duration is not None else None
        pruned_at = (
            max(t.intermediate_values)
            if t.state.name == "PRUNED" and t.intermediate_values
            else None
        )
        rows.append(
            [
                t.number,
                t.state.name.lower(),
                t.value,
                pruned_at,
                None if seconds is None else round(seconds, 2),
                t.user_attrs.get("origin", "search"),
                *[t.params.get(n) for n in names],
                t.user_attrs.get("error"),
            ]
        )
    return header, rows


def _table(header: list[str], rows: list[list[Any]], highlight: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cls = ' class="best"' if highlight is not None and row[0] == highlight else ""
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def comparison_rows(result: TuneResult) -> tuple[list[str], list[list[Any]]]:
    metric = result.config.metric_name
    others = [k for k in result.test_metrics if k != metric and not k.startswith("_")]
    header = [
        "configuration",
        f"validation {metric}",
        f"test {metric}",
        "validation - test",
        *[f"test {k}" for k in others],
    ]
    rows: list[list[Any]] = [
        [
            f"tuned (trial {result.best_trial})",
            result.validation,
            result.test,
            result.validation - result.test,
            *[result.test_metrics[k] for k in others],
        ],
        [
            "defaults",
            result.default_validation,
            result.default_test,
            result.default_validation - result.default_test,
            *[result.default_test_metrics.get(k) for k in others],
        ],
    ]
    return header, rows


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; }
tr.best { background: #e8f4e8; font-weight: bold; }
img { max-width: 100%; display: block; margin: 1em 0; }
.note { color: #555; font-size: 0.9em; }
"""


def render_html(result: TuneResult) -> str:
    """The report page (self-contained)."""
    data = result.to_json()
    metric = result.config.metric_name
    importance = importances(result.study)
    plots = [
        ("Optimization history", history_plot(result)),
        ("Parameter importance", importance_plot(importance)),
        ("Intermediate values", intermediate_plot(result)),
        ("Parameter slices", slice_plot(result)),
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>tastemaker tune: {html.escape(result.config.model)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Tuning {html.escape(result.config.model)} ({html.escape(result.config.search)} "
        f"search, {data['trials']} trials, {html.escape(metric)})</h1>",
        f"<p class='note'>Outer split: {html.escape(result.split.get('label', ''))}.<br>"
        f"Validation (carved from its training part only): "
        f"{html.escape(result.validation_split.get('label', ''))}"
        f"{' and the other folds' if result.config.folds > 1 else ''}"
        f"{_repeats_note(result.config.validation_repeats)}.<br>"
        f"Trial states: {html.escape(json.dumps(data['trial_states']))}. Space: "
        f"{html.escape(result.config.space.source)}.</p>",
        "<h2>Validation against test</h2>",
        "<p class='note'>The test split was evaluated once, after the search, for the best "
        "parameters and for the defaults, each refitted on the whole training part. Validation "
        "models train on less data, so both rows sit apart; a tuned gap much larger than the "
        "defaults' gap means the search overfitted its validation split.</p>",
        _table(*comparison_rows(result)),
        "<h2>Best parameters</h2>",
        _table(["parameter", "value"], [[k, v] for k, v in result.params.items()]),
    ]
    if importance:
        parts.append(_table(["parameter", "importance"], [[k, v] for k, v in importance.items()]))
    for title, png in plots:
        if png is not None:
            parts.append(f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{png}'>")
    parts += ["<h2>Trials</h2>", _table(*trial_rows(result), highlight=result.best_trial)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _repeats_note(repeats: int) -> str:
    return f", and {repeats - 1} more such split(s) with other seeds (mean)" if repeats > 1 else ""


def write_report(directory: str | Path, result: TuneResult) -> Path:
    """Write ``index.html``, ``trials.csv`` and ``best.json`` into ``directory`` atomically."""
    page = render_html(result)
    header, rows = trial_rows(result)
    with atomic_directory(directory, kind=REPORT_KIND) as tmp:
        (tmp / "index.html").write_text(page, encoding="utf-8")
        with open(tmp / "trials.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        (tmp / "best.json").write_bytes(tagged_json(result.to_json(), BEST_KIND))
        write_manifest(tmp, REPORT_KIND, REPORT_FORMAT_VERSION)
    return Path(directory)

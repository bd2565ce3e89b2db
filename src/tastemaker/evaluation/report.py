"""A self-contained HTML report of an evaluation (plots embedded as base64 PNG).

``write_report(result, directory)`` writes ``index.html`` and ``results.json`` atomically.
Plots (matplotlib, Agg): metric bars per model with the spread over folds, precision and recall
against k, ROC curves of the classification view, and the popularity of recommended items
against the catalogue's; then the tables.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from tastemaker.artifacts import atomic_directory, write_manifest

# The kind a report folder's manifest names (so a later --report may replace it).
REPORT_KIND = "evaluation-report"
REPORT_FORMAT_VERSION = 1
BAR_METRICS = ("ndcg", "recall", "precision", "map", "hit_rate", "mrr")
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1100px;
  color: #222; box-sizing: border-box; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { color: #555; font-size: 0.9em; } .warn { color: #a33; font-weight: bold; }
img { max-width: 100%; }
.table { max-width: 100%; overflow-x: auto; }
th { vertical-align: bottom; }
"""


def figure_html(fig, alt: str) -> str:
    """A matplotlib figure as an inline PNG ``<img>`` (the report is one self-contained file)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _label(row: dict[str, Any]) -> str:
    return row.get("label") or row["model"]


def _metric_bars(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    k = result["k"][0]
    rows = result["results"]
    keys = [f"{m}@{k}" for m in BAR_METRICS] + ["auc"]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(keys))
    for i, row in enumerate(rows):
        values = [row["metrics"].get(key, np.nan) for key in keys]
        spread = [row.get("std", {}).get(key, 0.0) for key in keys] if "std" in row else None
        ax.bar(x + i * width, values, width, yerr=spread, capsize=3, label=_label(row))
    ax.set_xticks(x + width * (len(rows) - 1) / 2, keys)
    ax.set_ylabel("mean over test users")
    title = "Ranking metrics"
    if any("std" in row for row in rows):
        title += " (error bars: standard deviation over folds)"
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=2)
    return figure_html(fig, "metric bars")


def _pr_curves(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    rows = [row for row in result["results"] if "curves" in row]
    if not rows:
        return ""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for row in rows:
        curves = row["curves"]
        left.plot(curves["k"], curves["precision"], marker="o", label=_label(row))
        right.plot(curves["k"], curves["recall"], marker="o", label=_label(row))
    for ax, name in ((left, "precision@k"), (right, "recall@k")):
        ax.set_xscale("log")
        ax.set_xlabel("k")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    return figure_html(fig, "precision and recall against k")


def _roc_curves(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    rows = [row for row in result["results"] if "classification" in row]
    if not rows:
        return ""
    ratios = [key for key in rows[0]["classification"] if key.startswith("1:")]
    fig, axes = plt.subplots(1, len(ratios), figsize=(5 * len(ratios), 4.5), squeeze=False)
    for ax, ratio in zip(axes[0], ratios, strict=True):
        for row in rows:
            view = row["classification"][ratio]
            ax.plot(
                view["roc"]["fpr"],
                view["roc"]["tpr"],
                label=f"{_label(row)} (AUC {view['roc_auc']:.3f})",
            )
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_title(f"ROC, held-out : sampled unheard = {ratio}")
        ax.legend(fontsize=7, loc="lower right")
    return figure_html(fig, "ROC curves")


def _popularity(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    rows = [row for row in result["results"] if "popularity" in row]
    if not rows:
        return ""
    edges = np.asarray(rows[0]["popularity"]["bin_edges"], dtype=float)
    catalogue = np.asarray(rows[0]["popularity"]["catalogue"], dtype=float)
    fig, ax = plt.subplots(figsize=(10, 4))
    left = np.maximum(edges[:-1], 0.5)
    ax.stairs(
        catalogue / max(catalogue.sum(), 1),
        np.r_[left, edges[-1]],
        label="catalogue",
        color="black",
        linewidth=2,
    )
    for row in rows:
        rec = np.asarray(row["popularity"]["recommended"], dtype=float)
        ax.stairs(rec / max(rec.sum(), 1), np.r_[left, edges[-1]], label=_label(row))
    ax.set_xscale("log")
    ax.set_xlabel("listeners in training (log scale)")
    ax.set_ylabel("share of items")
    ax.set_title("Popularity of recommended items against the catalogue")
    ax.legend(fontsize=8)
    return figure_html(fig, "popularity of recommendations")


def html_table(headers: list[str], rows: list[list[Any]]) -> str:
    """An HTML table, every cell escaped and numbers formatted as in the report."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    # The wrapper scrolls a table wider than the page (many models) instead of the page.
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="table">{table}</div>'


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def metrics_table(result: dict[str, Any]) -> str:
    """One row per metric, one column per model: metrics grow with the cut-offs asked for and
    models are few, so the table grows down, not past the page's width."""
    rows_in = result["results"]
    keys = list(rows_in[0]["metrics"])

    def cell(row: dict[str, Any], key: str) -> Any:
        value = row["metrics"][key]
        return f"{value:.4f} ± {row['std'][key]:.4f}" if "std" in row else value

    rows = [[key, *(cell(row, key) for row in rows_in)] for key in keys]
    rows.append(["fit s", *(round(row["fit_seconds"], 2) for row in rows_in)])
    rows.append(["evaluate s", *(round(row["evaluate_seconds"], 2) for row in rows_in)])
    return html_table(["metric", *(_label(row) for row in rows_in)], rows)


def classification_table(result: dict[str, Any]) -> str:
    rows = []
    for row in result["results"]:
        view = row.get("classification")
        if not view:
            continue
        for ratio in [key for key in view if key.startswith("1:")]:
            v = view[ratio]
            rows.append(
                [
                    _label(row),
                    ratio,
                    v["accuracy"],
                    v["always_no_accuracy"],
                    v["log_loss"],
                    v["precision"],
                    v["recall"],
                    v["roc_auc"],
                ]
            )
    if not rows:
        return ""
    trap = result["results"][0]["classification"]["always_no_accuracy_full_matrix"]
    return (
        html_table(
            [
                "model",
                "positives : negatives",
                "accuracy",
                "accuracy of 'always no'",
                "log loss",
                "precision",
                "recall",
                "ROC AUC",
            ],
            rows,
        )
        + f'<p class="warn">On the full matrix of the test users\' unheard items, predicting '
        f'"no" everywhere is {trap:.4%} accurate. Accuracy says nothing here; the ranking '
        "metrics above are what separate the models.</p>"
        + "<p class=\"note\">Probabilities: the item's normalised rank among the user's "
        "candidate items, mapped by a logistic fit cross-fitted over two halves of the test "
        "users (a monotone map, so ROC AUC does not depend on it).</p>"
    )


def page_start(title: str, split_label: str) -> list[str]:
    """The opening of a report page: head, style, title and the split it measured."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed, whatever the environment says
    return [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p><b>Split:</b> {html.escape(split_label)}</p>",
    ]


def write_page(
    page: str, result: dict[str, Any], directory: str | Path, kind: str = REPORT_KIND
) -> Path:
    """Write ``page`` as ``index.html`` and ``result`` as ``results.json`` into ``directory``
    (atomically, with a manifest naming ``kind``); the path of the page."""
    directory = Path(directory)
    with atomic_directory(directory, kind=kind) as tmp:
        (tmp / "index.html").write_text(page, encoding="utf-8")
        (tmp / "results.json").write_text(json.dumps(result, indent=2, default=float))
        write_manifest(tmp, kind, REPORT_FORMAT_VERSION)
    return directory / "index.html"


def report_title(result: dict[str, Any], what: str = "Evaluation") -> str:
    """The page's title: what was done, on which data, under which protocol
    ("Evaluation: hetrec2011-lastfm-2k (hetrec), random split, full ranking")."""
    split = result["split"]
    protocol = f"{split.get('name', 'unnamed')} split"
    protocol += ", full ranking" if split.get("full_ranking", True) else ", sampled ranking"
    data = result.get("data", {}).get("name")
    return f"{what}: {data}, {protocol}" if data else f"{what}: {protocol}"


def render(result: dict[str, Any], title: str | None = None) -> str:
    """The report page as one HTML string (``title``: ``report_title``'s by default)."""
    split = result["split"]
    parts = page_start(title or report_title(result), split["label"])
    for warning in result.get("warnings", []):
        parts.append(f'<p class="warn">Warning: {html.escape(warning)}</p>')
    if not split.get("full_ranking", True):
        parts.append(
            '<p class="warn">Sampled protocol: each test item ranked against a few random '
            "unheard items. These numbers are not comparable with full ranking.</p>"
        )
    data = result.get("data", {})
    if data:
        parts.append(
            f"<p class='note'>Data: {data.get('users', 0):,} users x {data.get('items', 0):,} "
            f"{html.escape(str(data.get('level', 'item')))}s, {data.get('interactions', 0):,} "
            f"pairs; fingerprint {html.escape(str(data.get('fingerprint', ''))[:16])}</p>"
        )
    for note in result.get("notes", []):
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("<h2>Ranking metrics</h2>" + metrics_table(result) + _metric_bars(result))
    curves = _pr_curves(result)
    if curves:
        parts.append("<h2>Precision and recall against k</h2>" + curves)
    classification = classification_table(result)
    if classification:
        parts.append(
            "<h2>The classification view (beside the ranking, never instead)</h2>"
            + classification
            + _roc_curves(result)
        )
    popularity = _popularity(result)
    if popularity:
        parts.append("<h2>Popularity bias</h2>" + popularity)
    if result.get("grid"):
        grid = result["grid"]
        headers = ["factors", "regularization", "iterations", "alpha", "test AUC", "test NDCG"]
        rows = [
            [
                g["params"]["factors"],
                g["params"]["regularization"],
                g["params"]["iterations"],
                g["params"]["alpha"],
                g["auc"],
                g["ndcg"],
            ]
            for g in grid
        ]
        parts.append(
            "<h2>The original grid, selected on the test split (as the study did)</h2>"
            + html_table(headers, rows)
        )
    parts.append("</body></html>")
    return "".join(parts)


def write_report(result: dict[str, Any], directory: str | Path, title: str | None = None) -> Path:
    """Write ``index.html`` (self-contained) and ``results.json`` into ``directory``."""
    return write_page(render(result, title), result, directory)

"""What the hybrid's parts are worth: candidate recall, feature importance, ablation.

- **Candidate recall**: the share of held-out items that are among the candidates at all (the
  ranker cannot rank what stage 1 never proposed), for each generator alone, for the union,
  and for the union without each generator (what that generator adds that no other does).
- **Feature importance**: the ranker's total gain per feature and per feature group.
- **Ablation**: the hybrid refitted without each generator and without each feature group,
  against the full hybrid, its generators alone, and the same candidates fused by reciprocal
  rank instead of the learned ranker; NDCG@k, recall@k and fit time on the same split.

``hybrid_report(...)`` returns a JSON-ready dict; ``write_report`` renders it as a
self-contained HTML page (matplotlib plots as base64 PNG) plus ``results.json``.
"""

from __future__ import annotations

import copy
import html
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tastemaker.data.interactions import Interactions
from tastemaker.errors import UsageError
from tastemaker.evaluation.metrics import ranking_metrics
from tastemaker.evaluation.report import figure_html, html_table, page_start, write_page
from tastemaker.evaluation.splits import Split, make_split
from tastemaker.models import create_model
from tastemaker.models.candidates import propose
from tastemaker.models.hybrid import BLOCK, Hybrid
from tastemaker.models.sparse_rows import gather

REPORT_KIND = "hybrid-report"  # the kind its folder's manifest names
Progress = Callable[[str], None]


def candidate_recall(model: Hybrid, split: Split) -> dict[str, Any]:
    """Share of the split's test items among the candidates: per generator alone, all
    together, and all but one (fold-in splits score their visible histories)."""
    names = list(model.generators_)
    users = split.test_users
    reached_alone = np.zeros(len(names))
    reached_without = np.zeros(len(names))
    reached = 0
    sizes = []
    for start in range(0, len(users), BLOCK):
        block = users[start : start + BLOCK]
        history = split.history(block)
        known = None if split.fold_in is not None else block
        cands, _ = propose(model.generators_, history, known, int(model.candidates))
        hit = gather(split.test[block], cands.row, cands.item) > 0
        proposed = ~np.isnan(cands.rank)
        reached += int(hit.sum())
        for g in range(len(names)):
            others = np.delete(proposed, g, axis=1).any(axis=1)
            reached_alone[g] += int((hit & proposed[:, g]).sum())
            reached_without[g] += int((hit & others).sum())
        sizes.append(np.bincount(cands.row, minlength=len(block)))
    total = max(int(split.test.nnz), 1)
    return {
        "candidates_per_generator": int(model.candidates),
        "mean_candidates_per_user": float(np.concatenate(sizes).mean()) if sizes else 0.0,
        "test_items": int(split.test.nnz),
        "union": reached / total,
        "alone": {n: float(reached_alone[g] / total) for g, n in enumerate(names)},
        "without": {n: float(reached_without[g] / total) for g, n in enumerate(names)},
    }


def feature_importance(model: Hybrid) -> dict[str, Any]:
    """The ranker's total gain per feature and per group, as shares of the whole."""
    if model.booster_ is None:
        return {"features": [], "groups": {}}
    gain = model.booster_.feature_importance(importance_type="gain").astype(np.float64)
    share = gain / gain.sum() if gain.sum() > 0 else gain
    features: list[dict[str, Any]] = sorted(
        (
            {
                "feature": name,
                "group": model.feature_groups_[name],
                "gain": float(g),
                "share": float(s),
            }
            for name, g, s in zip(model.feature_names_, gain, share, strict=True)
        ),
        key=lambda row: -row["gain"],
    )
    groups: dict[str, float] = {}
    for row in features:
        groups[row["group"]] = groups.get(row["group"], 0.0) + row["share"]
    return {"features": features, "groups": groups}


def fused_ranks(model: Hybrid) -> Hybrid:
    """The same fitted generators and candidates, ordered by reciprocal-rank fusion instead of
    the learned ranker (what the ranker adds)."""
    fused = copy.copy(model)
    fused.booster_ = None
    return fused


def _evaluate(model, split: Split, k: int) -> dict[str, float]:
    metrics = ranking_metrics(model, split, ks=(k,))
    return {key: float(metrics[key]) for key in (f"ndcg@{k}", f"recall@{k}", "auc")}


def _variants(model: Hybrid) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, kind, hybrid params) of each ablation: one generator or feature group less."""
    params = model.get_params()
    generators = list(model.generators_)
    groups = list(model.builder_.active)
    out = []
    if len(generators) > 1:
        for name in generators:
            rest = ",".join(g for g in generators if g != name)
            out.append((f"without {name}", "generator", {**params, "generators": rest}))
    for group in groups:
        rest = ",".join(g for g in groups if g != group)
        if rest:
            out.append((f"without {group} features", "features", {**params, "features": rest}))
    return out


def hybrid_report(
    interactions: Interactions,
    params: dict[str, Any] | None = None,
    split: str = "random",
    split_params: dict[str, Any] | None = None,
    k: int = 10,
    ablate: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fit the hybrid on one split and measure its parts (see the module docstring)."""
    say = progress or (lambda _message: None)
    chosen = make_split(interactions, split, **(split_params or {}))
    if chosen.sampled:
        raise UsageError("the hybrid report needs a full-ranking split, not the sampled one")
    say("fitting the hybrid")
    start = time.perf_counter()
    model = create_model("hybrid", **(params or {})).fit(chosen.train)
    assert isinstance(model, Hybrid)
    fit_seconds = time.perf_counter() - start
    say("evaluating the hybrid")
    rows: list[dict[str, Any]] = [
        {
            "label": "hybrid",
            "kind": "full",
            "metrics": _evaluate(model, chosen, k),
            "fit_seconds": fit_seconds,
        }
    ]
    say("candidate recall")
    recall = candidate_recall(model, chosen)
    rows.append(
        {
            "label": "no ranker (reciprocal-rank fusion)",
            "kind": "ranker",
            "metrics": _evaluate(fused_ranks(model), chosen, k),
            "fit_seconds": None,
        }
    )
    for name, generator in model.generators_.items():
        say(f"evaluating {name} alone")
        rows.append(
            {
                "label": f"{name} alone",
                "kind": "generator alone",
                "metrics": _evaluate(generator, chosen, k),
                "fit_seconds": model.fit_seconds_.get(f"generator:{name}"),
            }
        )
    if ablate:
        for label, kind, variant in _variants(model):
            say(f"fitting the hybrid {label}")
            start = time.perf_counter()
            fitted = create_model("hybrid", **variant).fit(chosen.train)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "label": f"hybrid {label}",
                    "kind": kind,
                    "metrics": _evaluate(fitted, chosen, k),
                    "fit_seconds": seconds,
                }
            )
    full = rows[0]["metrics"][f"ndcg@{k}"]
    for row in rows:
        row["ndcg_vs_full"] = row["metrics"][f"ndcg@{k}"] - full
    return {
        "k": k,
        "split": chosen.describe(),
        "params": json.loads(json.dumps(model.get_params(), default=str)),
        "generators": list(model.generators_),
        "feature_groups": list(model.builder_.active),
        "fit_seconds": {key: float(v) for key, v in model.fit_seconds_.items()},
        "ranker_training": {key: float(v) for key, v in model.training_stats_.items()},
        "candidate_recall": recall,
        "feature_importance": feature_importance(model),
        "ablation": rows,
    }


# -- rendering -------------------------------------------------------------------------------


def _importance_plot(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    features = result["feature_importance"]["features"][:25]
    if not features:
        return "<p class='note'>No learned ranker (too little data): no importances.</p>"
    groups = sorted({f["group"] for f in features})
    colours = {g: plt.cm.tab10(i % 10) for i, g in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(features) + 1))
    y = np.arange(len(features))[::-1]
    ax.barh(y, [f["share"] for f in features], color=[colours[f["group"]] for f in features])
    ax.set_yticks(y, [f["feature"] for f in features])
    ax.set_xlabel("share of the ranker's total gain")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in groups]
    ax.legend(handles, groups, loc="lower right", fontsize=8)
    return figure_html(fig, "feature importance")


def _recall_plot(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    recall = result["candidate_recall"]
    names = list(recall["alone"])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [recall["alone"][n] for n in names], 0.4, label="generator alone")
    ax.bar(x + 0.2, [recall["without"][n] for n in names], 0.4, label="union without it")
    ax.axhline(recall["union"], color="black", linestyle="--", label="union of all")
    ax.set_xticks(x, names)
    ax.set_ylabel("share of test items among candidates")
    ax.legend(fontsize=8)
    return figure_html(fig, "candidate recall")


def _ablation_plot(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    k = result["k"]
    rows = result["ablation"]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1))
    y = np.arange(len(rows))[::-1]
    values = [r["metrics"][f"ndcg@{k}"] for r in rows]
    colours = ["tab:green" if r["kind"] == "full" else "tab:blue" for r in rows]
    ax.barh(y, values, color=colours)
    ax.axvline(values[0], color="black", linestyle="--", linewidth=1)
    ax.set_yticks(y, [r["label"] for r in rows])
    ax.set_xlabel(f"NDCG@{k}")
    ax.set_xlim(0, max(values) * 1.1 if values else 1)
    return figure_html(fig, "ablation")


def render(result: dict[str, Any], title: str = "tastemaker hybrid report") -> str:
    """The report page as one HTML string."""
    k = result["k"]
    recall = result["candidate_recall"]
    stats = result["ranker_training"]
    parts = [
        *page_start(title, result["split"]["label"]),
        f"<p class='note'>Generators: {html.escape(', '.join(result['generators']))}; "
        f"feature groups: {html.escape(', '.join(result['feature_groups']))}. The ranker "
        f"learned from {stats.get('groups', 0):,.0f} users' inner-validation candidates "
        f"({stats.get('rows', 0):,.0f} rows); {stats.get('candidate_recall', 0):.1%} of their "
        "held-out items were among the candidates.</p>",
        "<h2>Ablation</h2>",
        html_table(
            ["variant", f"NDCG@{k}", f"recall@{k}", "AUC", "vs full", "fit s"],
            [
                [
                    r["label"],
                    r["metrics"][f"ndcg@{k}"],
                    r["metrics"][f"recall@{k}"],
                    r["metrics"]["auc"],
                    f"{r['ndcg_vs_full']:+.4f}",
                    "-" if r["fit_seconds"] is None else f"{r['fit_seconds']:.1f}",
                ]
                for r in result["ablation"]
            ],
        ),
        _ablation_plot(result),
        "<h2>Candidate recall</h2>",
        f"<p class='note'>Top {recall['candidates_per_generator']} of each generator; "
        f"{recall['mean_candidates_per_user']:.0f} candidates per user on average; "
        f"{recall['union']:.1%} of {recall['test_items']:,} test items reachable.</p>",
        html_table(
            ["generator", "alone", "union without it", "only it reaches"],
            [
                [
                    n,
                    recall["alone"][n],
                    recall["without"][n],
                    recall["union"] - recall["without"][n],
                ]
                for n in recall["alone"]
            ],
        ),
        _recall_plot(result),
        "<h2>Feature importance (gain)</h2>",
        html_table(
            ["group", "share of gain"],
            [[g, s] for g, s in result["feature_importance"]["groups"].items()],
        ),
        _importance_plot(result),
        "</body></html>",
    ]
    return "".join(parts)


def write_report(
    result: dict[str, Any], directory: str | Path, title: str = "tastemaker hybrid report"
) -> Path:
    """Write ``index.html`` (self-contained) and ``results.json`` into ``directory``."""
    return write_page(render(result, title), result, directory, kind=REPORT_KIND)

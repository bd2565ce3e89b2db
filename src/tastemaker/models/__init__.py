"""Recommenders behind one interface, found by name in a registry.

Entries are ``module:Class`` strings imported on first use, so that ``tastemaker --help`` does
not import PyTorch or LightGBM.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tastemaker.errors import UsageError
from tastemaker.models.base import Recommender

MODELS: dict[str, str] = {
    "popularity": "tastemaker.models.popularity:Popularity",
    "als": "tastemaker.models.als:ALS",
    "bpr": "tastemaker.models.bpr:BPR",
    "itemknn": "tastemaker.models.knn:ItemKNN",
    "userknn": "tastemaker.models.knn:UserKNN",
    "ease": "tastemaker.models.ease:EASE",
    "rp3beta": "tastemaker.models.rp3beta:RP3beta",
    "gmf": "tastemaker.models.ncf:GMF",
    "mlp": "tastemaker.models.ncf:MLP",
    "neumf": "tastemaker.models.ncf:NeuMF",
    "ncf-seed": "tastemaker.models.ncf:NCFSeed",
    "multvae": "tastemaker.models.multvae:MultVAE",
    "sessions": "tastemaker.models.sessions:SessionCoListen",
    "tags": "tastemaker.models.tags:TagContent",
    "tag-count": "tastemaker.models.baselines:TagCount",
    "random": "tastemaker.models.baselines:RandomRanking",
    "hybrid": "tastemaker.models.hybrid:Hybrid",
}


def available_models() -> list[str]:
    return list(MODELS)


def model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``; UsageError naming the choices when unknown."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    module_name, _, class_name = MODELS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"model {name!r} needs the missing package {exc.name!r}; install the matching "
            "extra (e.g. pip install 'tastemaker[ncf]')"
        ) from None
    return getattr(module, class_name)


def create_model(name: str, **params: Any) -> Recommender:
    """Instantiate a registered model; unknown hyperparameters raise UsageError."""
    cls = model_class(name)
    unknown = set(params) - set(cls.param_names())
    if unknown:
        raise UsageError(
            f"model {name!r} has no parameter(s) {sorted(unknown)}; "
            f"it takes: {', '.join(cls.param_names())}"
        )
    return cls(**params)


def load_model(directory: str | Path) -> Recommender:
    """Load any saved model directory (manifest + arrays, never pickle)."""
    from tastemaker.errors import ArtifactError
    from tastemaker.models.base import read_model_manifest

    # Only the model's name here; its own load checks everything (checksums included).
    name = read_model_manifest(directory, verify=False).get("model")
    if not isinstance(name, str) or name not in MODELS:
        raise ArtifactError(
            f"{directory}: the manifest names no known model ({str(name)[:40]!r}); "
            f"known: {', '.join(MODELS)}"
        )
    return model_class(name).load(directory)

"""Models by name: the registry, one syntax for their hyperparameters, construction and fit.

Every command (train, evaluate, tune, ablate, replicate, playlist-task) names models and
passes hyperparameters through here, so ``als.factors=128`` and a best-params JSON file mean
the same everywhere.

Entries are ``module:Class`` strings imported on first use, so that ``tastemaker --help`` does
not import PyTorch or LightGBM.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tastemaker.errors import ArtifactError, UsageError
from tastemaker.models.base import Recommender, read_model_manifest

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
    "blend": "tastemaker.models.blend:Blend",
}

# A model name and its hyperparameters, as the commands pass them around.
ModelSpec = tuple[str, dict[str, Any]]
# Builds a model from a spec (the Spark engine supplies its own for ALS).
ModelFactory = Callable[[str, dict[str, Any]], Recommender]


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
    """Instantiate a registered model; an unknown hyperparameter, or a value the constructor
    refuses, is a UsageError naming the model."""
    cls = model_class(name)
    unknown = set(params) - set(cls.param_names())
    if unknown:
        raise UsageError(
            f"model {name!r} has no parameter(s) {sorted(unknown)}; "
            f"it takes: {', '.join(cls.param_names())}"
        )
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"model {name!r} with {params}: {exc}") from None


def fit_model(
    name: str,
    params: dict[str, Any],
    train: Any,
    factory: ModelFactory | None = None,
) -> Recommender:
    """Build (with ``factory``, e.g. the Spark engine's; default ``create_model``) and fit on
    ``train`` (an ``Interactions``); a value that fails the fit is a one-line UsageError."""
    model = factory(name, params) if factory is not None else create_model(name, **params)
    try:
        return model.fit(train)
    except (TypeError, ValueError) as exc:
        if not params:
            raise
        raise UsageError(f"model {name!r} cannot fit with {params}: {exc}") from None


def load_model(directory: str | Path) -> Recommender:
    """Load any saved model directory (manifest + arrays, never pickle)."""
    # Only the model's name here; its own load checks everything (checksums included).
    name = read_model_manifest(directory, verify=False).get("model")
    if not isinstance(name, str) or name not in MODELS:
        raise ArtifactError(
            f"{directory}: the manifest names no known model ({str(name)[:40]!r}); "
            f"known: {', '.join(MODELS)}"
        )
    return model_class(name).load(directory)


# -- hyperparameters from the command line and from files ----------------------------------


def parse_value(text: str) -> Any:
    """``128`` -> 128, ``0.05`` -> 0.05, ``true`` -> True, ``null`` -> None, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_param_args(args: Iterable[str], default_model: str | None = None) -> dict[str, dict]:
    """``["als.factors=128", "ease.lambda_=200"]`` -> ``{"als": {"factors": 128}, ...}``.

    Without a ``model.`` prefix the parameter belongs to ``default_model`` (for ``train``).
    """
    out: dict[str, dict] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {arg!r}: expected MODEL.NAME=VALUE (e.g. als.factors=128)")
        model, dot, name = key.strip().rpartition(".")
        if not dot:
            if default_model is None:
                raise UsageError(f"--param {arg!r}: name the model, e.g. als.{key.strip()}=...")
            model = default_model
        out.setdefault(model, {})[name] = parse_value(value.strip())
    return out


def read_params_file(path: str | Path) -> dict[str, dict]:
    """Read ``{"model": "als", "params": {...}}`` (or a list of them, or ``{"results": [...]}``
    as written by ``evaluate --json``) into ``{"als": {...}}``."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read parameters ({exc})") from None
    if isinstance(content, dict) and isinstance(content.get("results"), list):
        content = content["results"]
    entries = content if isinstance(content, list) else [content]
    out: dict[str, dict] = {}
    for entry in entries:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("model"), str)
            or not isinstance(entry.get("params", {}), dict)
        ):
            raise UsageError(f'{path}: expected {{"model": NAME, "params": {{...}}}} or a list')
        out.setdefault(entry["model"], {}).update(entry.get("params", {}))
    return out


def resolve_models(
    names: Sequence[str],
    param_args: Iterable[str] = (),
    params_files: Iterable[str | Path] = (),
    default_model: str | None = None,
) -> list[ModelSpec]:
    """Model names plus their parameters: files first (entries for other models are
    ignored), then ``--param`` overrides on top (naming another model is an error).

    Every model is instantiated once here so that an unknown model or parameter fails before
    any work starts.
    """
    if not names:
        raise UsageError("no models given")
    given: dict[str, dict] = {}
    for file in params_files:
        # A file may hold the best parameters of several models: use those being run.
        for model, params in read_params_file(file).items():
            if model in names:
                given.setdefault(model, {}).update(params)
    overrides = parse_param_args(param_args, default_model)
    unused = set(overrides) - set(names)
    if unused:
        raise UsageError(
            f"--param given for {', '.join(sorted(unused))}, which is not among the "
            f"models ({', '.join(names)})"
        )
    for model, params in overrides.items():
        given.setdefault(model, {}).update(params)
    specs = [(name, dict(given.get(name, {}))) for name in names]
    check_specs(specs)
    return specs


def check_specs(specs: Iterable[ModelSpec]) -> None:
    """Build each model once, so an unknown model or parameter fails before any work."""
    for name, params in specs:
        create_model(name, **params)

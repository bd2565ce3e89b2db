"""Recommenders behind one interface (``models.base``), found by name in the registry
(``models.registry``, whose public names this package re-exports)."""

from __future__ import annotations

from tastemaker.models.registry import (
    MODELS,
    available_models,
    create_model,
    fit_model,
    load_model,
    model_class,
)

__all__ = ["MODELS", "available_models", "create_model", "fit_model", "load_model", "model_class"]

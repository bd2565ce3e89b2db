"""What a model's hyperparameters may hold, checked in one place.

A model declares a ``Param`` per constrained hyperparameter in its ``param_rules`` (mixins
such as ``WeightedInput`` declare their own; the rules of every class in the MRO apply);
``Recommender.validate_params`` checks them (at ``fit``, at ``set_params``, and when a saved
model is loaded), then the model's ``_check_params`` hook for rules that relate parameters.
``checked_params`` checks a manifest's hyperparameters against the constructor's types.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from tastemaker.artifacts import short_repr
from tastemaker.errors import ArtifactError, UsageError

if TYPE_CHECKING:
    from tastemaker.models.base import Recommender


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Param:
    """The values one hyperparameter may take: a number in a range (an integer if
    ``integer``), one of ``choices``, or (``widths``) a non-empty list of positive integers."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low < value, not low <= value
    high_open: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None
    widths: bool = False
    note: str = ""  # said after the rule, e.g. what 0 means

    def check(self, model: str, name: str, value: Any) -> None:
        """UsageError ``"MODEL: NAME must be ..., not VALUE"`` when ``value`` breaks the rule."""
        if self.choices is not None:
            if value not in self.choices:
                options = ", ".join(str(c) for c in self.choices)
                raise UsageError(f"{model}: unknown {name} {value!r}; choose one of: {options}")
            return
        if self.widths:
            if (
                not isinstance(value, list | tuple)
                or not value
                or not all(_is_integer(w) and w >= 1 for w in value)
            ):
                raise UsageError(f"{model}: {name} must be positive integer widths, not {value!r}")
            return
        if self.integer and not _is_integer(value):
            raise UsageError(f"{model}: {name} must be an integer {self.describe()}, not {value!r}")
        if not _is_number(value) or not self._holds(float(value)):
            raise UsageError(f"{model}: {name} must be {self.describe()}, not {value!r}")

    def _holds(self, value: float) -> bool:
        if self.low is not None and not (value > self.low if self.low_open else value >= self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``in [0, 1)``: the rule as a person reads it."""
        note = f" ({self.note})" if self.note else ""
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}{note}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}{note}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}{note}"
        return f"a number{note}"


def at_least(low: float, integer: bool = False, note: str = "") -> Param:
    return Param(low=low, integer=integer, note=note)


def positive(integer: bool = False) -> Param:
    """> 0 (an integer: >= 1)."""
    return Param(low=1, integer=True) if integer else Param(low=0, low_open=True)


def between(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Param:
    return Param(low=low, high=high, low_open=low_open, high_open=high_open)


def one_of(*choices: Any) -> Param:
    return Param(choices=tuple(choices))


WIDTHS = Param(widths=True)


# -- hyperparameters read from a manifest ------------------------------------------------


def checked_params(cls: type[Recommender], params: Any, directory: Path) -> dict[str, Any]:
    """A manifest's hyperparameters, each a known name with a value of the declared type.

    Missing names take the constructor's defaults (models written before a parameter was
    added); JSON lists stand for tuples. Numbers must be finite and JSON-safe in size.
    """
    if not isinstance(params, dict):
        raise ArtifactError(f"{directory}: the manifest's params must be a mapping")
    names = cls.param_names()
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ArtifactError(
            f"{directory}: {cls.name} has no parameter(s) {[u[:40] for u in unknown]}; "
            "written by another version?"
        )
    hints = _param_types(cls)
    checked = {}
    for name, value in params.items():
        try:
            _check_json_number(value)
            checked[name] = (
                TypeAdapter(hints[name]).validate_json(json.dumps(value), strict=True)
                if name in hints
                else value
            )
        except (ValidationError, ValueError) as exc:
            expected = getattr(hints.get(name), "__name__", None) or str(hints.get(name))
            raise ArtifactError(
                f"{directory}: parameter {name}={short_repr(value)} is not a valid {expected}"
                + ("" if isinstance(exc, ValidationError) else f" ({exc})")
            ) from None
    return checked


@functools.cache
def _param_types(cls: type[Recommender]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls.__init__)
    return {name: hints[name] for name in cls.param_names() if name in hints}


def _check_json_number(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and abs(value) > 2**53:
        raise ValueError("too large")
    if isinstance(value, float) and not np.isfinite(value):
        raise ValueError("not finite")
    if isinstance(value, list | tuple):
        for v in value:
            _check_json_number(v)
    if isinstance(value, dict):
        for v in value.values():
            _check_json_number(v)

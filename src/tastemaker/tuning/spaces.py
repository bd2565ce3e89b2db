"""Search spaces: which hyperparameters a search may vary, and over what values (TOML files).

A space file looks like this (the format is documented in ``docs/tuning.md``)::

    model = "als"                       # optional: the model the space is written for
    description = "what this space is"  # optional

    [fixed]                             # passed unchanged to every trial
    alpha = 10.0

    [params.factors]                    # one table per searched parameter
    type = "int"                        # int | float | categorical
    low = 32
    high = 256
    log = true                          # sample on a log scale (low > 0)

    [params.regularization]
    type = "float"
    low = 0.15
    high = 0.3
    step = 0.05                         # a step makes a float parameter gridable

    [params.weighting]
    type = "categorical"
    choices = ["bm25", "log1p"]

    [params.bm25_k1]                    # only searched when the condition holds
    type = "float"
    low = 1.0
    high = 1000.0
    log = true
    when = { weighting = "bm25" }       # or a list: { weighting = ["bm25", "tfidf"] }

A bare list is shorthand for a categorical parameter: ``factors = [8, 10, 15]`` under
``[params]``. Parameters are drawn in file order, so a condition may only name a parameter
declared above it (or a fixed one).

The default space of every model ships inside the package (``tuning/spaces/<model>.toml``);
``seed`` names the original study's ALS grid.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tastemaker.errors import UsageError

PARAM_TYPES = ("int", "float", "categorical")
PARAM_KEYS = {"type", "low", "high", "log", "step", "choices", "when"}
TOP_LEVEL_KEYS = {"model", "description", "fixed", "params"}
# A grid larger than this is almost certainly a typo (a float range without a step, say).
MAX_GRID_POINTS = 100_000

Scalar = str | int | float | bool
# A value is a scalar or a list of scalars (e.g. NCF's layer widths, ``[64, 32, 16]``).
Value = Scalar | list[Scalar]


def _normal(value: Any) -> Any:
    """Lists and tuples compare as tuples (TOML gives lists, choices are stored as tuples)."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same kind (True is not 1, 1 is 1.0)."""
    a, b = _normal(a), _normal(b)
    return a == b and isinstance(a, bool) == isinstance(b, bool)


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()  # scalars, or tuples of scalars
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, chosen: dict[str, Any]) -> bool:
        """Whether this parameter is searched, given the values chosen before it."""
        return all(
            any(_same(chosen.get(name), v) for v in values) for name, values in self.when.items()
        )

    # Optuna's categorical choices must be scalars: list choices travel as JSON text.
    def encode(self, value: Any) -> Scalar:
        return json.dumps(list(value)) if isinstance(value, list | tuple) else value

    def decode(self, raw: Any) -> Value:
        if self.type == "categorical" and isinstance(raw, str):
            for choice in self.choices:
                if isinstance(choice, tuple) and json.dumps(list(choice)) == raw:
                    return list(choice)
        return raw

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of a numeric parameter (which has both: checked when it is made)."""
        assert self.low is not None and self.high is not None
        return self.low, self.high

    def suggest(self, trial: Any) -> Value:
        """Ask an Optuna trial for a value."""
        if self.type == "categorical":
            raw = trial.suggest_categorical(self.name, [self.encode(c) for c in self.choices])
            return self.decode(raw)
        low, high = self.bounds
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(low), int(high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, float(low), float(high), step=self.step, log=self.log)

    def grid_values(self) -> list[Value]:
        """Every value a grid search tries: the choices, or low..high by step."""
        if self.type == "categorical":
            return [list(c) if isinstance(c, tuple) else c for c in self.choices]
        low, high = self.bounds
        if self.type == "int":
            return list(range(int(low), int(high) + 1, int(self.step or 1)))
        if self.step is None:
            raise UsageError(
                f"float parameter {self.name!r} has no step; give it a step or choices "
                "for a grid search"
            )
        count = int(math.floor((high - low) / self.step + 1e-9)) + 1
        return [round(low + i * self.step, 12) for i in range(count)]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this parameter's range (used to seed trial 0)."""
        if self.type == "categorical":
            return any(_same(value, c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.type == "int" and int(value) != value:
            return False
        low, high = self.bounds
        if not low <= value <= high:
            return False
        if self.step is not None:
            offset = (value - low) / self.step
            return abs(offset - round(offset)) < 1e-9
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["choices"] = [list(c) if isinstance(c, tuple) else c for c in self.choices]
        else:
            out.update(low=self.low, high=self.high)
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out


@dataclass(frozen=True)
class SearchSpace:
    """Searched parameters (in draw order) and fixed ones, for one model."""

    params: tuple[Param, ...]
    fixed: dict[str, Value] = field(default_factory=dict)
    model: str | None = None
    description: str = ""
    source: str = "<space>"
    name: str | None = None  # the shipped name or the file's stem; None for inline text

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw one configuration from an Optuna trial: fixed values plus the active params."""
        chosen: dict[str, Any] = dict(self.fixed)
        for param in self.params:
            if param.active(chosen):
                chosen[param.name] = param.suggest(trial)
        return chosen

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of a grid search, in a stable order (conditions respected)."""
        points = list(self._expand(0, dict(self.fixed)))
        return points

    def _expand(self, index: int, chosen: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if index == len(self.params):
            yield dict(chosen)
            return
        param = self.params[index]
        if not param.active(chosen):
            yield from self._expand(index + 1, chosen)
            return
        for value in param.grid_values():
            yield from self._expand(index + 1, {**chosen, param.name: value})

    def grid_size(self) -> int:
        """Number of grid points, computed without building them (refuses absurd grids)."""
        size = sum(1 for _ in itertools.islice(self._expand(0, dict(self.fixed)), MAX_GRID_POINTS))
        if size >= MAX_GRID_POINTS:
            raise UsageError(f"{self.source}: the grid has over {MAX_GRID_POINTS:,} points")
        return size

    def searched_subset(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The searched values of ``params`` if the whole configuration lies inside the space.

        Returns ``None`` when some active parameter's value falls outside its range, or when a
        fixed value differs; used to try a model's defaults as the first trial.
        """
        chosen: dict[str, Any] = dict(self.fixed)
        for name, value in self.fixed.items():
            if name in params and not _same(params[name], value):
                return None
        subset: dict[str, Any] = {}
        for param in self.params:
            if not param.active(chosen):
                continue
            if param.name not in params or not param.contains(params[param.name]):
                return None
            chosen[param.name] = subset[param.name] = params[param.name]
        return subset

    def encode(self, params: dict[str, Any]) -> dict[str, Any]:
        """Searched values as Optuna stores them (list choices as JSON text)."""
        by_name = {p.name: p for p in self.params}
        return {k: by_name[k].encode(v) if k in by_name else v for k, v in params.items()}

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """The inverse of ``encode``: a trial's stored params as model values."""
        by_name = {p.name: p for p in self.params}
        return {k: by_name[k].decode(v) if k in by_name else v for k, v in params.items()}

    def check_model(self, model: str, param_names: list[str] | None) -> None:
        """UsageError (one line) when the space is for another model or names unknown params
        (``param_names=None`` checks the model name only)."""
        if self.model is not None and self.model != model:
            raise UsageError(
                f"{self.source}: this space is for model {self.model!r}, not {model!r}"
            )
        if param_names is None:
            return
        unknown = [n for n in [*self.fixed, *self.names] if n not in param_names]
        if unknown:
            raise UsageError(
                f"{self.source}: model {model!r} has no parameter(s) {', '.join(unknown)}; "
                f"it takes: {', '.join(param_names)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (stored with a study to recognise it when resuming)."""
        return {
            "model": self.model,
            "fixed": dict(self.fixed),
            "params": {p.name: p.to_dict() for p in self.params},
        }


# -- parsing ---------------------------------------------------------------------------------


def _fail(source: str, message: str) -> UsageError:
    return UsageError(f"{source}: {message}")


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _is_value(value: Any) -> bool:
    """A scalar, or a non-empty list of scalars."""
    if isinstance(value, list):
        return bool(value) and all(map(_is_scalar, value))
    return _is_scalar(value)


def _number(source: str, name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(source, f"parameter {name!r}: {key} must be a finite number, not {value!r}")
    return value


def _parse_param(source: str, name: str, spec: Any, declared: set[str]) -> Param:
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, dict):
        raise _fail(
            source,
            f"parameter {name!r} must be a table (type, low, high, ...) or a list of choices; "
            "put single values under [fixed]",
        )
    unknown = set(spec) - PARAM_KEYS
    if unknown:
        raise _fail(
            source,
            f"parameter {name!r}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(PARAM_KEYS))}",
        )
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise _fail(source, f"parameter {name!r}: type must be one of {', '.join(PARAM_TYPES)}")
    when = _parse_when(source, name, spec.get("when", {}), declared)
    if kind == "categorical":
        extra = {"low", "high", "log", "step"} & set(spec)
        if extra:
            raise _fail(source, f"categorical parameter {name!r} takes choices, not {min(extra)}")
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices or not all(map(_is_value, choices)):
            raise _fail(
                source,
                f"parameter {name!r}: choices must be a non-empty list of values "
                "(numbers, strings, booleans, or lists of them)",
            )
        choices = [_normal(c) for c in choices]
        if len(set(map(repr, choices))) != len(choices):
            raise _fail(source, f"parameter {name!r}: choices repeat a value")
        return Param(name, kind, choices=tuple(choices), when=when)
    if "choices" in spec:
        raise _fail(source, f'parameter {name!r}: choices need type = "categorical"')
    for key in ("low", "high"):
        if key not in spec:
            raise _fail(source, f"parameter {name!r}: {kind} needs low and high")
    low = _number(source, name, "low", spec["low"])
    high = _number(source, name, "high", spec["high"])
    log = spec.get("log", False)
    step = spec.get("step")
    if not isinstance(log, bool):
        raise _fail(source, f"parameter {name!r}: log must be true or false")
    if low > high:
        raise _fail(source, f"parameter {name!r}: low ({low}) is above high ({high})")
    if log and low <= 0:
        raise _fail(source, f"parameter {name!r}: a log scale needs low > 0")
    if step is not None:
        step = _number(source, name, "step", step)
        if step <= 0:
            raise _fail(source, f"parameter {name!r}: step must be positive")
        if log:
            raise _fail(source, f"parameter {name!r}: use either log or step, not both")
    if kind == "int":
        for key, value in (("low", low), ("high", high), ("step", step)):
            if value is not None and int(value) != value:
                raise _fail(source, f"int parameter {name!r}: {key} must be a whole number")
        return Param(name, kind, int(low), int(high), log, int(step) if step else None, when=when)
    return Param(name, kind, float(low), float(high), log, float(step) if step else None, when=when)


def _parse_when(
    source: str, name: str, when: Any, declared: set[str]
) -> dict[str, tuple[Scalar, ...]]:
    if not isinstance(when, dict):
        raise _fail(
            source, f'parameter {name!r}: when must be a table, e.g. {{ weighting = "bm25" }}'
        )
    parsed = {}
    for other, values in when.items():
        if other not in declared:
            raise _fail(
                source,
                f"parameter {name!r}: condition on {other!r}, which is not declared above it",
            )
        values = values if isinstance(values, list) else [values]
        if not values or not all(map(_is_value, values)):
            raise _fail(source, f"parameter {name!r}: condition values must be plain values")
        parsed[other] = tuple(_normal(v) for v in values)
    return parsed


def parse_space(document: dict[str, Any], source: str = "<space>") -> SearchSpace:
    """Validate a parsed TOML document and build the space; UsageError naming the problem."""
    unknown = set(document) - TOP_LEVEL_KEYS
    if unknown:
        raise _fail(
            source,
            f"unknown top-level key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(TOP_LEVEL_KEYS))}",
        )
    model = document.get("model")
    if model is not None and not isinstance(model, str):
        raise _fail(source, "model must be a string")
    fixed = document.get("fixed", {})
    if not isinstance(fixed, dict) or not all(map(_is_value, fixed.values())):
        raise _fail(source, "[fixed] must hold plain values (numbers, strings, booleans, lists)")
    params_doc = document.get("params", {})
    if not isinstance(params_doc, dict):
        raise _fail(source, "[params] must be a table of parameters")
    declared = set(fixed)
    params = []
    for name, spec in params_doc.items():
        if name in fixed:
            raise _fail(source, f"parameter {name!r} is both fixed and searched")
        params.append(_parse_param(source, name, spec, declared))
        declared.add(name)
    if not params and not fixed:
        raise _fail(source, "the space has no parameters")
    return SearchSpace(
        params=tuple(params),
        fixed=dict(fixed),
        model=model,
        description=str(document.get("description", "")),
        source=source,
    )


def load_space_text(text: str, source: str = "<space>") -> SearchSpace:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(source, f"not valid TOML ({exc})") from None
    return parse_space(document, source)


def shipped_spaces() -> list[str]:
    """Names of the spaces shipped inside the package (one per model, plus ``seed``)."""
    folder = resources.files("tastemaker.tuning") / "spaces"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_space(spec: str | Path | None, model: str) -> SearchSpace:
    """A space from a TOML path, a shipped name (``seed``, ``als``, ...), or the model's default.

    ``spec=None`` loads the default space of ``model``.
    """
    name = model if spec is None else str(spec)
    path = Path(name)
    if spec is not None and (path.suffix == ".toml" or path.exists()):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the space file ({exc.strerror})") from None
        return dataclasses.replace(load_space_text(text, str(path)), name=path.stem)
    shipped = resources.files("tastemaker.tuning") / "spaces" / f"{name}.toml"
    if not shipped.is_file():
        if spec is None:
            raise UsageError(f"no default search space for model {model!r}; pass --space FILE")
        raise UsageError(
            f"no space file {name!r}; give a .toml path or one of: {', '.join(shipped_spaces())}"
        )
    space = load_space_text(shipped.read_text(encoding="utf-8"), f"space {name!r}")
    return dataclasses.replace(space, name=name)

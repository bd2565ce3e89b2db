"""The interface every recommender implements, and what they share.

Shape (after implicit, scikit-learn and LensKit):

- the constructor stores hyperparameters only; ``fit(interactions)`` returns ``self``; learned
  state ends in ``_``; a second ``fit`` forgets the first;
- everything is batch-first and in index space: ``recommend(users, n)`` returns
  ``(item_indices, scores)``, both of shape ``(len(users), n)``; where fewer than ``n`` items
  can be recommended the row is padded with index ``-1`` and score ``-inf``;
- ``recommend_for_history(history, n)`` serves listening histories not seen in training
  (fold-in), ``similar_items(items, n)`` item-to-item lists, ``explain`` the history items
  behind a recommendation;
- ``save(dir)`` / ``load(dir)`` write a manifest and ``.npz`` arrays; never pickle.

Subclasses implement ``_fit``, ``_score_rows``, ``_similar`` and the state hooks.
"""

from __future__ import annotations

import copy
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

import tastemaker.threads as threads
from tastemaker.artifacts import (
    ArraySpec,
    CSRSpec,
    atomic_directory,
    check_arrays,
    load_arrays,
    read_manifest,
    save_arrays,
    short_repr,
    write_manifest,
)
from tastemaker.data.interactions import Interactions
from tastemaker.data.metadata.combined import catalogue_with_assignment_tags
from tastemaker.data.weighting import (
    WEIGHTINGS,
    apply_weighting,
    weighted_values,
    weighting_statistics,
)
from tastemaker.errors import ArtifactError, TastemakerError, UsageError
from tastemaker.models.params import Param, checked_params, one_of
from tastemaker.ranking import mask_columns, mask_rows, restrict_columns, top_n
from tastemaker.threads import single_blas_thread  # noqa: F401 (the models import it from here)

MODEL_KIND = "model"
# Models score users in blocks of this many rows to bound memory (rows x n_items floats).
SCORE_BATCH = 512


def read_model_manifest(directory: str | Path, verify: bool = True) -> dict:
    return read_manifest(directory, kind=MODEL_KIND, verify=verify)


def recorded_params(params: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as a manifest or a results file records them: JSON, with any value
    JSON cannot hold written as its ``str``."""
    return json.loads(json.dumps(params, default=str))


class FactorModel:
    """Mixin for models whose score is an inner product of a user vector and an item vector.

    Serving uses these to put item vectors into an approximate nearest-neighbour index
    (faiss, inner product). ``score == user_vectors(users) @ item_vectors().T`` must hold.
    """

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """float32 ``(len(users), dim)`` for training users."""
        raise NotImplementedError

    def history_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        """float32 ``(history.shape[0], dim)`` for unseen histories (fold-in)."""
        raise NotImplementedError

    def item_vectors(self) -> np.ndarray:
        """float32 ``(n_items, dim)``."""
        raise NotImplementedError


class WeightedInput:
    """Mixin for models that see play counts through a weighting of ``data/weighting.py``.

    Hyperparameters: ``weighting`` (the function's name) and ``bm25_k1`` / ``bm25_b`` (used by
    ``bm25`` only). The training matrix's corpus statistics are kept with the model so that a
    new history is weighted exactly like a training row (``_weigh``).
    """

    weighting: str
    bm25_k1: float
    bm25_b: float
    STATE_PREFIX: ClassVar[str] = "weighting_"
    param_rules: ClassVar[Mapping[str, Param]] = {"weighting": one_of(*WEIGHTINGS)}

    def _weighting_params(self) -> dict[str, float]:
        if self.weighting == "bm25":
            return {"K1": float(self.bm25_k1), "B": float(self.bm25_b)}
        return {}

    def _fit_weighting(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """Remember the statistics of the training counts and return them weighted."""
        self.weighting_statistics_ = weighting_statistics(counts)
        return self._weigh(counts)

    def _weigh(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """Weight play counts (training rows or new histories) with the training statistics."""
        return apply_weighting(
            counts,
            self.weighting,
            statistics=self.weighting_statistics_,
            **self._weighting_params(),
        )

    def _weigh_values(self, counts: sp.csr_matrix) -> np.ndarray:
        """``_weigh(counts).data`` (float32) without building the matrix (a fold-in's few)."""
        return weighted_values(
            counts,
            self.weighting,
            statistics=self.weighting_statistics_,
            **self._weighting_params(),
        )

    def _weighting_state(self) -> dict[str, np.ndarray]:
        return {self.STATE_PREFIX + k: v for k, v in self.weighting_statistics_.items()}

    def _weighting_spec(self) -> dict[str, ArraySpec]:
        """The arrays of ``_weighting_state`` (for ``Recommender._state_spec``)."""
        p = self.STATE_PREFIX
        return {
            f"{p}item_listeners": ArraySpec(("items",), low=0),
            f"{p}n_users": ArraySpec((), low=0),
            f"{p}mean_user_weight": ArraySpec((), low=0),
        }

    def _set_weighting_state(self, arrays: dict[str, np.ndarray]) -> None:
        n = len(self.STATE_PREFIX)
        self.weighting_statistics_ = {
            k[n:]: v for k, v in arrays.items() if k.startswith(self.STATE_PREFIX)
        }
        if "item_listeners" not in self.weighting_statistics_:
            raise KeyError("weighting statistics")


class Recommender(ABC):
    """Base class: hyperparameters in the constructor, learned state in attributes ending in _.

    Hyperparameters follow scikit-learn: the constructor only stores its arguments, one
    attribute each (normalising at most a JSON list to a tuple), and never validates;
    ``get_params`` / ``set_params`` read and change them, ``clone`` copies a model unfitted.
    What each may hold is declared in ``param_rules`` and checked by ``validate_params``.
    """

    name: ClassVar[str] = ""
    format_version: ClassVar[int] = 1
    # The rules of the hyperparameters (models.params); merged over the MRO.
    param_rules: ClassVar[Mapping[str, Param]] = {}
    # Capabilities, for callers that adapt to a model (the service, the contract checks):
    # ``personalised``: the ranking depends on the listener (popularity's does not);
    # ``fold_in``: ``recommend_for_history`` ranks histories not seen in training.
    personalised: ClassVar[bool] = True
    fold_in: ClassVar[bool] = True
    # Set by fits that time themselves (seconds; the hybrid's: per stage) and by callers
    # that time a fit (evaluation.replicate); not saved.
    fit_seconds_: Any

    # -- hyperparameters ---------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self" and not p.startswith("_")]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments by name (``deep`` as in scikit-learn; no model holds
        another as a parameter, so it changes nothing)."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change hyperparameters (validated; on a refused value nothing changes); returns
        self. A fitted state stays until the next ``fit``."""
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise UsageError(
                f"{self.name}: no parameter(s) {unknown}; it takes: {', '.join(self.param_names())}"
            )
        before = self.get_params()
        # Through the constructor, so a value is stored (normalised) as a new model's would be.
        type(self).__init__(self, **{**before, **params})
        try:
            self.validate_params()
        except UsageError:
            type(self).__init__(self, **before)
            raise
        return self

    @classmethod
    def rules(cls) -> dict[str, Param]:
        """Every hyperparameter rule that applies: the classes' ``param_rules`` over the MRO."""
        merged: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("param_rules", {}))
        return merged

    def validate_params(self) -> None:
        """UsageError naming the first hyperparameter that breaks its rule (``param_rules``),
        then the model's own cross-parameter checks (``_check_params``)."""
        self._check_rules()
        self._check_params()

    def _check_rules(self) -> None:
        params = self.get_params()
        for name, rule in self.rules().items():
            if name in params:
                rule.check(self.name or type(self).__name__, name, params[name])

    def _check_params(self) -> None:
        """Checks the rules cannot express (parameters that depend on each other, a device)."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- fitting -----------------------------------------------------------------------------
    def fit(
        self,
        interactions: Interactions,
        callback: Callable[[int, Recommender], bool | None] | None = None,
    ) -> Self:
        """Learn from ``interactions`` (rows = users); forgets any earlier fit.

        Models that train in iterations or epochs call ``callback(iteration, self)`` after
        each one (1-based) where they can; a callback returning True stops training early
        (tuning prunes bad trials this way). Other models ignore it.
        """
        if not isinstance(interactions, Interactions):
            raise TypeError("fit() takes an Interactions object (rows are users)")
        if interactions.nnz == 0:
            raise UsageError("cannot fit on an empty interaction matrix")
        self.validate_params()
        self.user_items_ = interactions.user_items
        self.n_items_ = interactions.n_items
        self.data_fingerprint_ = interactions.fingerprint
        # Vocabularies, item names and tags travel with the model so a saved model can serve
        # alone (per-user tag assignments only as each item's top tag counts).
        self.interactions_ = catalogue_with_assignment_tags(interactions)
        self._callback = callback
        try:
            # BLAS / OpenMP as wide as the cores free now (tastemaker.threads): a team wider
            # than that spins waiting for a lost core, many times slower than one thread.
            with threads.limited():
                self._fit(interactions)
        finally:
            self._callback = None
        return self

    @abstractmethod
    def _fit(self, interactions: Interactions) -> None:
        """Learn the model's state from ``interactions.user_items`` (play counts)."""

    def _report_iteration(self, iteration: int) -> bool:
        """Call the fit callback, if any; True means stop training now."""
        return bool(self._callback(iteration, self)) if self._callback else False

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_items_"):
            raise UsageError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- scoring -----------------------------------------------------------------------------
    @abstractmethod
    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        """Dense float32 scores ``(history.shape[0], n_items)``.

        ``history`` holds the play counts of the users being scored (rows of the training
        matrix for known users); ``users`` are their indices in training, or ``None`` for
        histories not seen in training (fold-in).
        """

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for training users (no masking)."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        return self._score_rows(self.user_items_[users], users)

    def score_history(self, history: sp.csr_matrix) -> np.ndarray:
        """Scores of every item for histories not seen in training (fold-in)."""
        self._check_fitted()
        history = self._check_history(history)
        return self._score_rows(history, None)

    def _check_history(self, history: sp.spmatrix) -> sp.csr_matrix:
        if not (isinstance(history, sp.csr_matrix) and history.dtype == np.float32):
            # (Rebuilding a CSR float32 matrix would share its arrays anyway, and cost
            # tens of microseconds a request.)
            history = sp.csr_matrix(history, dtype=np.float32)
        if history.shape[1] != self.n_items_:
            raise UsageError(
                f"history has {history.shape[1]} item columns; the model knows {self.n_items_}"
            )
        return history

    def recommend(
        self,
        users: np.ndarray,
        n: int = 10,
        exclude_heard: bool = True,
        items: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n items for training users: ``(item_indices, scores)`` of shape (len(users), n).

        ``items`` (item indices) restricts the ranking to that candidate set; ``exclude``
        (item indices) is never returned, for any user. Rows run short (``-1`` padding) when
        the candidates run out.
        """
        self._check_fitted()
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        return self._rank_blocks(
            len(users),
            lambda start, stop: (self.user_items_[users[start:stop]], users[start:stop]),
            n,
            exclude_heard,
            items,
            exclude,
        )

    def recommend_for_history(
        self,
        history: sp.spmatrix,
        n: int = 10,
        exclude_heard: bool = True,
        items: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n for listening histories not seen in training (rows = new users, counts);
        ``items`` and ``exclude`` as in ``recommend``."""
        self._check_fitted()
        history = self._check_history(history)
        return self._rank_blocks(
            history.shape[0],
            lambda start, stop: (history[start:stop], None),
            n,
            exclude_heard,
            items,
            exclude,
        )

    def _rank_blocks(
        self,
        n_rows: int,
        block: Callable[[int, int], tuple[sp.csr_matrix, np.ndarray | None]],
        n: int,
        exclude_heard: bool,
        items: np.ndarray | None,
        exclude: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score ``SCORE_BATCH`` rows at a time, mask, restrict and take the top n."""
        candidates = self._item_set(items, "items") if items is not None else None
        excluded = self._item_set(exclude, "exclude") if exclude is not None else None
        ids = np.empty((n_rows, n), np.int64)
        scores = np.empty((n_rows, n), np.float32)
        for start in range(0, n_rows, SCORE_BATCH):
            stop = min(start + SCORE_BATCH, n_rows)
            rows, users = block(start, stop)
            s = self._score_rows(rows, users)
            if exclude_heard:
                mask_rows(s, rows)
            if candidates is not None:
                restrict_columns(s, candidates)
            if excluded is not None:
                mask_columns(s, excluded)
            ids[start:stop], scores[start:stop] = top_n(s, n)
        return ids, scores

    def _item_set(self, items: Any, what: str) -> np.ndarray:
        """Item indices for ``items=`` / ``exclude=``: integers in the catalogue, or an error."""
        array = np.asarray(items).reshape(-1)
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise UsageError(f"{what}= takes item indices (integers), not {array.dtype}")
        array = array.astype(np.int64)
        if array.size and (array.min() < 0 or array.max() >= self.n_items_):
            raise UsageError(f"{what}= holds an index outside 0..{self.n_items_ - 1}")
        return array

    def similar_items(self, items: np.ndarray, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The n items most similar to each given item (the item itself excluded)."""
        self._check_fitted()
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        s = self._similar(items)
        s[np.arange(len(items)), items] = -np.inf
        return top_n(s, n)

    def pairwise_similarity(self, items: np.ndarray) -> np.ndarray:
        """Similarity ``(k, k)`` among the given items in the model's item space (playlists
        order tracks by it)."""
        self._check_fitted()
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        return self._similar(items)[:, items]

    @abstractmethod
    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Dense float32 similarity ``(len(items), n_items)`` of the given items to all items."""

    def explain(self, history: sp.spmatrix, item: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The history items that contribute most to ``item``'s score for one history row.

        Default: each history item's similarity to ``item`` (from ``_similar``) times the
        history item's log-scaled play count. Models with an exact decomposition override it.
        """
        self._check_fitted()
        row = self._check_history(history)[0]
        heard = row.indices
        if len(heard) == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        sim = self._similar(np.asarray([item]))[0, heard]
        contribution = (sim * np.log1p(row.data)).astype(np.float32)
        order = np.argsort(-contribution, kind="stable")[:n]
        return heard[order].astype(np.int64), contribution[order]

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save (besides the training matrix, which the base saves)."""
        return {}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore learned arrays written by ``_state``."""

    def _save_extra(self, directory: Path) -> None:
        """Write files that are not numpy arrays (LightGBM text models, safetensors, ...)."""

    def _load_extra(self, directory: Path) -> None:
        """Read what ``_save_extra`` wrote."""

    def save(self, directory: str | Path, data: bool = True) -> Path:
        """Write the model directory atomically: manifest.json, model.npz, data/ (the training
        interactions: vocabularies, names, metadata).

        ``data=False`` leaves data/ out, for a model stored inside another that holds
        the same data (the hybrid's generators): load it with ``interactions=``.
        """
        self._check_fitted()
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            save_arrays(tmp / "model.npz", **self._state())
            if data:
                data_dir = tmp / "data"
                data_dir.mkdir()
                self.interactions_.write_into(data_dir)
            self._save_extra(tmp)
            write_manifest(
                tmp,
                MODEL_KIND,
                self.format_version,
                model=self.name,
                params=recorded_params(self.get_params()),
                data_fingerprint=self.data_fingerprint_,
                n_items=self.n_items_,
            )
        return directory

    def _state_spec(self) -> Mapping[str, ArraySpec | CSRSpec]:
        """What ``model.npz`` must hold, checked by ``load`` before ``_set_state`` sees it.

        Shapes may name the dimensions ``users``, ``items`` (the catalogue) and any others the
        model binds in ``_state_dims``; every model declares its arrays (an undeclared one is
        refused), so a folder written by another version, a bug or a person is an error at
        load, not a crash or a wrong answer later.
        """
        raise NotImplementedError(f"{type(self).__name__} declares no state spec")

    def _state_dims(self) -> dict[str, int]:
        """Named dimensions fixed by hyperparameters (e.g. ``factors``) for ``_state_spec``."""
        return {}

    @classmethod
    def load(
        cls,
        directory: str | Path,
        interactions: Interactions | None = None,
        fingerprint: str | None = None,
    ) -> Self:
        """Load a directory written by ``save``: checks kind, model type, version, checksums,
        hyperparameters (names and types) and every array (shape, type, range) before use.

        ``interactions`` supplies the training data of a model saved with ``data=False``; its
        ``fingerprint`` (as the enclosing model's manifest records it) must match this model's.
        """
        directory = Path(directory)
        manifest = read_manifest(directory, kind=MODEL_KIND, max_version=cls.format_version)
        if manifest.get("model") != cls.name:
            raise ArtifactError(
                f"{directory}: holds a {short_repr(manifest.get('model'))} model, not {cls.name!r}"
            )
        model = cls(**checked_params(cls, manifest.get("params", {}), directory))
        try:
            model._check_rules()  # the device-dependent hook runs where the device is known
        except UsageError as exc:
            raise ArtifactError(
                f"{directory}: bad hyperparameters in the manifest ({exc})"
            ) from None
        data_fingerprint = manifest.get("data_fingerprint")
        if not isinstance(data_fingerprint, str):
            raise ArtifactError(f"{directory}: the manifest has no data_fingerprint")
        if interactions is None:
            # The parent manifest's checksums cover data/ (its manifest too): checked above.
            interactions = Interactions.load(directory / "data", verify=False)
            if interactions.fingerprint != data_fingerprint:
                raise ArtifactError(f"{directory}: data/ is not the data the model was trained on")
        elif fingerprint != data_fingerprint:
            raise ArtifactError(f"{directory}: the model was trained on other data")
        if manifest.get("n_items", interactions.n_items) != interactions.n_items:
            raise ArtifactError(
                f"{directory}: the manifest says {short_repr(manifest.get('n_items'))} items, "
                f"the training data has {interactions.n_items}"
            )
        model.user_items_ = interactions.user_items
        model.n_items_ = interactions.n_items
        model.data_fingerprint_ = data_fingerprint
        model.interactions_ = interactions
        arrays = load_arrays(directory / "model.npz")
        dims = {"users": interactions.n_users, "items": interactions.n_items}
        try:
            dims.update(model._state_dims())
            check_arrays(arrays, model._state_spec(), directory / "model.npz", dims)
            model._set_state(arrays)
            model._load_extra(directory)
        except TastemakerError:
            raise
        except Exception as exc:  # untrusted files: whatever the checks missed is one line
            raise ArtifactError(
                f"{directory}: cannot load the model ({type(exc).__name__}: {exc})"
            ) from None
        return model


def clone(model: Recommender) -> Recommender:
    """A new, unfitted model with the same hyperparameters (copied: no value is shared)."""
    return type(model)(**copy.deepcopy(model.get_params()))

"""The model being served: loaded, validated and indexed as one bundle, swapped atomically.

A request reads ``ModelHolder.current`` once and works with that bundle to the end, so a
reload that swaps in a new model never mixes two models within one answer.
"""

from __future__ import annotations

import copy
import gc
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from tastemaker.artifacts import MANIFEST
from tastemaker.errors import ArtifactError, TastemakerError
from tastemaker.models import load_model
from tastemaker.models.base import FactorModel, Recommender, read_model_manifest
from tastemaker.serving.catalogue import Catalogue
from tastemaker.serving.retrieval import AnnSettings, ExactRetriever, FactorIndex, build_retriever
from tastemaker.serving.settings import ServeSettings
from tastemaker.serving.shared_arrays import ArrayShare, share_model_arrays

log = logging.getLogger("tastemaker.serving")

# Reasons from ``model.explain`` one item at a time (models without item vectors) are given
# for at most this many items of a list.
REASONS_LIMIT = 100
# Exact scoring of up to this many items is computed on the event loop (well under 1 ms).
INLINE_ITEMS = 20_000


@dataclass
class LoadedModel:
    """One model directory, ready to serve."""

    model: Recommender
    directory: Path
    manifest: dict
    version: str  # first 12 hex digits of the manifest's SHA-256: changes with any file
    retriever: ExactRetriever | FactorIndex
    catalogue: Catalogue
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_seconds: float = 0.0
    # Factor models' item vectors (the model's own array, shared by workers where it is
    # memory-mapped) and their lengths: reasons without scoring every item.
    _item_vectors: np.ndarray | None = None
    _item_norms: np.ndarray | None = None
    _empty_history: sp.csr_matrix | None = None  # history_matrix's template

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def personalised(self) -> bool:
        return self.model.personalised

    def user_index(self, user_id: str) -> int | None:
        index = self.model.interactions_.users.get(user_id)
        return index if index >= 0 else None

    def user_history(self, user: int) -> sp.csr_matrix:
        return self.model.user_items_[user]

    def history_matrix(
        self, indices: np.ndarray | list[int], counts: np.ndarray | list[float]
    ) -> sp.csr_matrix:
        """One history row (duplicates summed, in float64, in the order given) over the
        model's item columns."""
        # Built as CSR directly: scipy's COO route checks and converts, ~100 us a request.
        # Posted histories rarely repeat an item: a sort finds out (np.unique with its
        # inverse and a bincount, only where one does, cost 8 us more).
        indices = np.asarray(indices, np.int64)
        counts = np.asarray(counts, np.float64)
        order = np.argsort(indices, kind="stable")
        columns = indices[order]
        if len(columns) > 1 and not (columns[1:] != columns[:-1]).all():
            columns, inverse = np.unique(indices, return_inverse=True)
            data = np.bincount(inverse, weights=counts, minlength=len(columns))
        else:
            data = counts[order]
        # A copy of an empty row, its three (public) arrays replaced: scipy's constructor
        # checks the arrays it is given, 11 us of Python a request against 2 us. The arrays
        # are what it would keep (float32 data, int32 sorted unique columns, int32 indptr).
        row = copy.copy(self._empty_row())
        row.data = data.astype(np.float32)
        row.indices = columns.astype(np.int32)
        row.indptr = np.asarray([0, len(columns)], np.int32)
        return row

    def _empty_row(self) -> sp.csr_matrix:
        row = self._empty_history
        if row is None:
            row = self._empty_history = sp.csr_matrix((1, len(self.catalogue)), dtype=np.float32)
        return row

    def user_row(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's heard items and plays, sliced from the CSR arrays (scipy's row
        indexing builds a matrix: tens of microseconds, per request)."""
        matrix = self.model.user_items_
        start, end = matrix.indptr[user], matrix.indptr[user + 1]
        return matrix.indices[start:end], matrix.data[start:end]

    @property
    def inline(self) -> bool:
        """Whether a recommendation is cheap enough to compute on the event loop (the ANN
        index, or exact scoring of a small catalogue), sparing the thread-pool hop."""
        return isinstance(self.retriever, FactorIndex) or len(self.catalogue) <= INLINE_ITEMS

    def reasons(self, heard: np.ndarray, plays: np.ndarray, items: np.ndarray) -> list[int | None]:
        """For each recommended item, the history item behind it ("because you listened to").

        Factor models: the base explanation of ``Recommender.explain`` (cosine of item vectors
        times log plays), for all items at once over the heard items only, about 0.1 ms a list.
        A model's own exact decomposition (ALS overrides ``explain``, /explain serves it) costs
        a Cholesky solve and a loop over the history per item, over 1 ms each, too slow for
        every list. Other models ask ``model.explain`` per item. Non-personalised models have
        no reason of this kind.
        """
        out: list[int | None] = [None] * len(items)
        if not self.personalised or len(heard) == 0 or len(items) == 0:
            return out
        if self._item_vectors is not None and self._item_norms is not None:
            # The cosine without dividing by the recommended item's length, which is the same
            # along each row and so leaves every row's argmax alone; no unit-length copy of
            # the item vectors (one per worker) is needed.
            # ``take`` rather than fancy indexing: the same rows and arithmetic, 7-9 us less a
            # list (the gather of ~90 random rows is most of the reasons' cost).
            vectors, norms = self._item_vectors, self._item_norms
            weight = np.log1p(plays) / norms.take(heard)
            scores = vectors.take(items, axis=0) @ vectors.take(heard, axis=0).T
            contribution = scores * weight[None, :]
            return heard.take(contribution.argmax(axis=1)).tolist()
        history = self.history_matrix(np.asarray(heard, np.int64), np.asarray(plays))
        for i, item in enumerate(items[:REASONS_LIMIT].tolist()):
            top, _ = self.model.explain(history, int(item), n=1)
            out[i] = int(top[0]) if len(top) else None
        return out

    def describe(self) -> dict:
        retrieval = (
            self.retriever.describe()
            if isinstance(self.retriever, FactorIndex)
            else {"kind": "exact"}
        )
        return {
            "model": self.name,
            "version": self.version,
            "data_fingerprint": self.manifest.get("data_fingerprint"),
            "params": self.manifest.get("params", {}),
            "users": int(self.model.user_items_.shape[0]),
            "items": len(self.catalogue),
            "loaded_at": self.loaded_at.isoformat(),
            "load_seconds": round(self.load_seconds, 3),
            "retrieval": retrieval,
        }


def _item_vectors(model: Recommender) -> tuple[np.ndarray | None, np.ndarray | None]:
    if not isinstance(model, FactorModel):
        return None, None
    vectors = np.asarray(model.item_vectors(), dtype=np.float32)
    return vectors, np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)


def _graph_name(settings: ServeSettings) -> str:
    return (
        f"hnsw-head{settings.ann_head_items}-m{settings.ann_hnsw_m}"
        f"-efc{settings.ann_ef_construction}.faiss"
    )


def _ann_settings(settings: ServeSettings) -> AnnSettings:
    return AnnSettings(
        head_items=settings.ann_head_items,
        hnsw_m=settings.ann_hnsw_m,
        ef_construction=settings.ann_ef_construction,
        ef_search=settings.ann_ef_search,
        search_threads=settings.faiss_threads,
    )


def load_bundle(directory: str | Path, settings: ServeSettings) -> LoadedModel:
    """Load, index and validate a model directory; ArtifactError saying why if it cannot serve.

    The directory's manifest is checked first (kind, version, every file's checksum), so a
    corrupted or foreign directory fails before any array is read.
    """
    started = time.perf_counter()
    directory = Path(directory)
    try:
        model = load_model(directory)  # checks the manifest and every file first
        manifest = read_model_manifest(directory, verify=False)
        version = hashlib.sha256((directory / MANIFEST).read_bytes()).hexdigest()[:12]
        share = None
        if settings.workers_file is not None:  # several workers: one copy of the arrays
            share = ArrayShare(Path(settings.workers_file).parent, version)
            share_model_arrays(model, share)
        bundle = LoadedModel(
            model=model,
            directory=directory.resolve(),
            manifest=manifest,
            version=version,
            retriever=build_retriever(
                model,
                settings.ann_threshold,
                _ann_settings(settings),
                settings.ann_recall_users,
                share.path(_graph_name(settings)) if share is not None else None,
            ),
            catalogue=Catalogue(model.interactions_, model),
        )
        bundle._item_vectors, bundle._item_norms = _item_vectors(model)
        if share is not None:  # the name matcher's arrays (built from the catalogue alike)
            share_model_arrays(bundle.catalogue.matcher, share, prefix="matcher.")
        validate(bundle, settings)
        model.interactions_.users.get("")  # build the id lookup now, not on the first request
    except TastemakerError:
        raise
    except Exception as exc:  # untrusted files: whatever breaks, say so in one line
        raise ArtifactError(
            f"{directory}: cannot serve this model ({type(exc).__name__}: {exc})"
        ) from None
    bundle.load_seconds = time.perf_counter() - started
    log.info(
        "serving %s model %s from %s (%d items, %s retrieval, loaded in %.1f s)",
        bundle.name,
        bundle.version,
        directory,
        len(bundle.catalogue),
        bundle.retriever.kind,
        bundle.load_seconds,
    )
    return bundle


def validate(bundle: LoadedModel, settings: ServeSettings) -> None:
    """Sample calls every endpoint relies on must work and give sane answers."""
    model, directory = bundle.model, bundle.directory
    n_users, n_items = model.user_items_.shape
    if n_users == 0 or n_items == 0:
        raise ArtifactError(f"{directory}: the model knows no users or no items")
    user = int(np.argmax(np.diff(model.user_items_.indptr)))  # the most active user
    n = min(10, n_items)
    for what, (ids, scores) in (
        ("user recommendation", bundle.retriever.for_user(user, n, True)),
        (
            "history recommendation",
            bundle.retriever.for_history(bundle.user_history(user), n, True),
        ),
        ("similar items", tuple(a[0] for a in model.similar_items(np.asarray([0]), n))),
    ):
        valid = ids >= 0
        if ids.shape != (n,) or np.any(ids >= n_items) or not np.all(np.isfinite(scores[valid])):
            raise ArtifactError(f"{directory}: sample {what} failed (bad indices or scores)")
        if (
            what != "similar items"
            and not valid.any()
            and n_items > len(bundle.user_history(user).indices)
        ):
            raise ArtifactError(f"{directory}: sample {what} returned nothing")
    if isinstance(bundle.retriever, FactorIndex):
        recall = bundle.retriever.recall_at_10 or 0.0
        if recall < settings.ann_min_recall:
            raise ArtifactError(
                f"{directory}: ANN recall@10 {recall:.3f} is below the required "
                f"{settings.ann_min_recall:.3f}"
            )


class ModelHolder:
    """The current bundle, replaced atomically; one reload at a time.

    ``generation`` counts the swaps the workers agreed on (serving.workers): a worker that
    sees a newer generation in the shared file loads that model before it answers.
    """

    def __init__(self, bundle: LoadedModel | None = None) -> None:
        self.current = bundle
        self.reload_lock = threading.Lock()
        self.generation = 0

    def swap(self, bundle: LoadedModel) -> LoadedModel | None:
        # Rebinding one attribute is atomic: a request sees the old bundle or the new one.
        old, self.current = self.current, bundle
        _freeze_loaded_objects()
        return old


def _freeze_loaded_objects() -> None:
    """Keep the model's millions of Python objects (ids, names, the name matcher) out of the
    garbage collector's full collections, which would otherwise walk them all every so many
    allocations, on the request path. Unfrozen and collected first, so that cycles of the
    previous model are still freed."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()

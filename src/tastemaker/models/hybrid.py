"""The multi-stage hybrid: several candidate generators, one learned ranker.

Stage 1 proposes candidates: the union of the top-``candidates`` unheard items of each
generator (registered models: ALS, item-KNN, EASE, popularity, and session co-listening where
the data has listen events). Stage 2 orders them with a LightGBM ``lambdarank`` model grouped
by user, over the features of ``tastemaker.models.features``.

Training the ranker never touches the evaluation split (the hybrid only ever receives training
data): ``fit`` carves an inner validation split from its training matrix
(``models.validation.holdout_split``), fits the generators and the feature statistics on the
inner training part, labels the candidates of inner-validation users by their held-out items,
and trains a ranker on those. It does so ``inner_splits`` times (2 by default), each split with
a seed and generators of its own, and averages the rankers' scores (bagging: one split's
labelled users make a noisy ranker). It then refits the generators and feature statistics on
the whole training matrix; serving applies the rankers to their candidates. The rankers thus
learn on generators that saw 80 % of each user's items and are applied to generators that saw
all of them; ranks and per-user relative scores keep the features comparable across that shift.

Items outside the candidate set are still scored (full ranking and AUC need every item): they
rank below every candidate, ordered by the first generator's score.

Saved without pickle: LightGBM's text models (``ranker.txt``, then ``ranker-1.txt`` ... for
the further inner splits' rankers), each generator's own model
directory under ``generators/<name>/`` (its own ``save`` / ``load``), the feature statistics in
``model.npz``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastemaker.artifacts import ArraySpec, CSRSpec
from tastemaker.data.interactions import Interactions
from tastemaker.data.metadata.coverage import has_item_tags
from tastemaker.errors import ArtifactError, UsageError
from tastemaker.models.base import Recommender, single_blas_thread
from tastemaker.models.candidates import propose
from tastemaker.models.features import FEATURE_GROUPS, Candidates, FeatureBuilder
from tastemaker.models.inner_splits import (
    MAX_INNER_SPLITS,
    RankerBag,
    inner_interactions,
    inner_seeds,
    ranker_file,
    summed_stats,
)
from tastemaker.models.params import Param, at_least, between
from tastemaker.models.registry import MODELS, create_model, model_class
from tastemaker.models.social import FriendListening
from tastemaker.models.sparse_rows import gather
from tastemaker.models.validation import check_lightgbm_text, holdout_split

DEFAULT_GENERATORS = "als,itemknn,ease,popularity,sessions,tags,friends"
# Generator settings the hybrid uses unless ``generator_params`` says otherwise: ALS with 32
# factors proposes better candidates than its stand-alone default of 64 (HetRec 2K, inner
# validation and test alike).
# EASE keeps the lambda of 200 the hybrid's figures were measured with (docs/hybrid.md); its
# stand-alone default became 50 for transfer (docs/defaults.md). In the hybrid 50 ties with 200
# (HetRec 2K, seeds 0-2: mean NDCG@10 0.2589 against 0.2588).
DEFAULT_GENERATOR_PARAMS: dict[str, dict[str, Any]] = {
    "als": {"factors": 32},
    "ease": {"regularization": 200.0},
}
# Generators that need listen events; left out (not an error) when the data has none.
NEEDS_EVENTS = {"sessions"}
# Generators that need item tags (metadata or tag assignments); left out where there are none.
# The content generator is how items few or nobody played enter the candidate set.
NEEDS_TAGS = {"tags"}
# Generators of the hybrid's own (not registered models): what the listener's friends play
# (``models.social``), where the data has a friendship relation (HetRec); left out elsewhere.
OWN_GENERATORS: dict[str, type[Recommender]] = {"friends": FriendListening}
# Rows scored at once inside the hybrid (dense generator scores are rows x items floats).
BLOCK = 256
# Reciprocal-rank fusion constant, used only when the data is too small to train a ranker.
RRF_K = 60.0


def ranker_threads() -> int:
    """Threads for training the ranker: every core this process may use, unless the machine is
    busy. OpenMP threads spin-waiting against other processes' threads cost far more than they
    save (measured on 2 shared cores under load: 5x the CPU time, 30x the wall time). The
    model does not depend on it: LightGBM's deterministic mode gives the same trees."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return cpus if load < cpus - 0.5 else 1


def _names(value: str | list[str] | tuple[str, ...]) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


class Hybrid(Recommender):
    """Candidates from several registered models, ordered by a LightGBM lambdarank ranker.

    Hyperparameters: ``generators`` (comma-separated registry names), ``candidates`` (top-N
    taken from each), ``features`` (feature groups, see ``models.features``),
    ``generator_params`` (``{name: {param: value}}``), the ranker's ``iterations``,
    ``learning_rate`` and ``leaves``, ``negatives`` (negative candidates kept per user when
    training the ranker; 0 keeps all), ``valid_fraction`` of each user's items held out to
    train the ranker, ``inner_splits`` (how many such inner holdouts, each with its own seed,
    generator fits and ranker; the rankers' scores are averaged), ``pool_splits`` (one ranker
    on the splits' pooled rows instead: serves at one ranker's cost, ranks a little worse),
    ``neighbours`` for the neighbour features, and ``seed``.
    """

    name = "hybrid"
    param_rules = {
        "candidates": at_least(1),
        "valid_fraction": between(0, 1, True, True),
        "inner_splits": Param(low=1, high=MAX_INNER_SPLITS, integer=True),
    }

    def __init__(
        self,
        generators: str = DEFAULT_GENERATORS,
        candidates: int = 200,
        features: str = ",".join(FEATURE_GROUPS),
        generator_params: dict[str, dict[str, Any]] | str | None = None,
        iterations: int = 100,
        learning_rate: float = 0.075,
        leaves: int = 15,
        negatives: int = 50,
        valid_fraction: float = 0.2,
        inner_splits: int = 2,
        pool_splits: bool = False,
        neighbours: int = 20,
        seed: int = 0,
    ) -> None:
        self.generators = generators
        self.candidates = candidates
        self.features = features
        self.generator_params = generator_params
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.leaves = leaves
        self.negatives = negatives
        self.valid_fraction = valid_fraction
        self.inner_splits = inner_splits
        self.pool_splits = pool_splits
        self.neighbours = neighbours
        self.seed = seed

    # -- configuration ---------------------------------------------------------------------
    def _check_params(self) -> None:
        if not isinstance(self.pool_splits, bool):  # a rule would let 0 and 1 pass
            raise UsageError(f"hybrid: pool_splits must be true or false, not {self.pool_splits!r}")

    def _params_for(self, name: str) -> dict[str, Any]:
        params = self.generator_params or {}
        if isinstance(params, str):
            try:
                params = json.loads(params) if params.strip() else {}
            except json.JSONDecodeError as exc:
                raise UsageError(f"hybrid: generator_params is not JSON ({exc})") from None
        if not isinstance(params, dict):
            raise UsageError("hybrid: generator_params must map generator names to parameters")
        return {**DEFAULT_GENERATOR_PARAMS.get(name, {}), **params.get(name, {})}

    def _make_generator(self, name: str) -> Recommender:
        if name == self.name:
            raise UsageError("hybrid: a hybrid cannot be its own generator")
        if name in OWN_GENERATORS:
            return OWN_GENERATORS[name]()
        params = self._params_for(name)
        if "seed" in model_class(name).param_names():
            params.setdefault("seed", self.seed)
        return create_model(name, **params)

    def _active_generators(self, interactions: Interactions) -> list[str]:
        names = _names(self.generators)
        if not names:
            raise UsageError("hybrid: at least one generator is needed")
        if len(set(names)) != len(names):
            raise UsageError(f"hybrid: generators listed twice in {self.generators!r}")
        has_events = interactions.events is not None and len(interactions.events) > 0
        has_tags = has_item_tags(interactions)
        has_friends = interactions.friends is not None and interactions.friends.nnz > 0
        active = [
            n
            for n in names
            if (has_events or n not in NEEDS_EVENTS)
            and (has_tags or n not in NEEDS_TAGS)
            and (has_friends or n not in OWN_GENERATORS)
        ]
        if not active:
            raise UsageError(f"hybrid: none of the generators {names} can run on this data")
        return active

    def _feature_groups(self) -> tuple[str, ...]:
        groups = _names(self.features)
        if not groups:
            raise UsageError(f"hybrid: name at least one feature group of {FEATURE_GROUPS}")
        unknown = sorted(set(groups) - set(FEATURE_GROUPS))
        if unknown:
            raise UsageError(
                f"hybrid: unknown feature group(s) {unknown}; "
                f"choose from {', '.join(FEATURE_GROUPS)}"
            )
        return tuple(g for g in FEATURE_GROUPS if g in groups)

    def _fit_generators(self, names: list[str], data: Interactions) -> dict[str, Recommender]:
        fitted = {}
        for name in names:
            start = time.perf_counter()
            fitted[name] = self._make_generator(name).fit(data)
            self.fit_seconds_[f"generator:{name}"] = (
                self.fit_seconds_.get(f"generator:{name}", 0.0) + time.perf_counter() - start
            )
        return fitted

    # -- fitting ---------------------------------------------------------------------------
    def _fit(self, interactions: Interactions) -> None:
        self.fit_seconds_: dict[str, float] = {}
        names = self._active_generators(interactions)
        groups = self._feature_groups()

        # 1. The rankers learn on inner splits of the training data: each carves its own
        # validation items, refits the generators and feature statistics on the rest, and
        # labels its validation users' candidates for a ranker of its own.
        xs, ys, sizes, stats_all = [], [], [], []
        inner_builder: FeatureBuilder | None = None
        for split_seed in inner_seeds(self.seed, self.inner_splits):
            start = time.perf_counter()
            inner_train, inner_valid = holdout_split(
                interactions.user_items, self.valid_fraction, min_items=5, seed=split_seed
            )
            inner = inner_interactions(interactions, inner_train)
            self.fit_seconds_["split"] = (
                self.fit_seconds_.get("split", 0.0) + time.perf_counter() - start
            )
            inner_generators = self._fit_generators(names, inner)
            start = time.perf_counter()
            builder = FeatureBuilder(groups, self.neighbours).fit(inner)
            if inner_builder is None:
                inner_builder = builder
            elif builder.active != inner_builder.active:
                # Every split's rows must have the same columns: those of the first split.
                builder.active = list(inner_builder.active)
            x, y, size, stats = self._training_rows(
                inner_generators, builder, inner.user_items, inner_valid, split_seed
            )
            xs.append(x)
            ys.append(y)
            sizes.append(size)
            stats_all.append(stats)
            self.fit_seconds_["features"] = (
                self.fit_seconds_.get("features", 0.0) + time.perf_counter() - start
            )
            del inner_generators
        assert inner_builder is not None  # inner_splits >= 1
        self.training_stats_ = summed_stats(stats_all)

        # 2. Generators and feature statistics on the whole training data, for serving.
        self.generators_ = self._fit_generators(names, interactions)
        start = time.perf_counter()
        self.builder_ = FeatureBuilder(groups, self.neighbours).fit(interactions)
        if self.builder_.active != inner_builder.active:
            # A group present in the full data but not in the inner part (or vice versa) would
            # shift the feature columns; serve only what the ranker was trained with.
            self.builder_.active = list(inner_builder.active)
        self.feature_names_ = inner_builder.names(names)
        self.feature_groups_ = inner_builder.group_of(names)
        self.fit_seconds_["features"] += time.perf_counter() - start

        start = time.perf_counter()
        # By default averaged rankers rather than one on the pooled rows: the same users,
        # repeated once per split, let one ranker fit their noise (the pooled ranker was worse
        # on HetRec and on the tests' checkerboard), but it serves at the cost of one ranker.
        # Splits whose users teach nothing train no ranker.
        if self.pool_splits:
            pooled = (np.vstack(xs), np.concatenate(ys), np.concatenate(sizes))
            trained = [self._train_ranker(*pooled)]
        else:
            trained = [self._train_ranker(*rows) for rows in zip(xs, ys, sizes, strict=True)]
        boosters = [b for b in trained if b is not None]
        self.booster_ = RankerBag(boosters) if boosters else None
        self.training_stats_["rankers"] = float(len(boosters))
        self.fit_seconds_["ranker"] = time.perf_counter() - start

    def _training_rows(
        self,
        generators: dict[str, Recommender],
        builder: FeatureBuilder,
        train: sp.csr_matrix,
        valid: sp.csr_matrix,
        seed: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float]]:
        """Feature rows, labels and per-user group sizes for the ranker, from one inner split
        (``seed`` draws its negatives)."""
        users = np.flatnonzero(np.diff(valid.indptr) > 0)
        rng = np.random.default_rng(seed)
        blocks_x, blocks_y, sizes = [], [], []
        reached = held_out = 0
        for start in range(0, len(users), BLOCK):
            block = users[start : start + BLOCK]
            history = train[block]
            cands, _ = propose(generators, history, block, int(self.candidates), False)
            label = gather(valid[block], cands.row, cands.item) > 0
            reached += int(label.sum())
            held_out += int(valid[block].nnz)
            # Users none of whose held-out items is a candidate teach the ranker nothing.
            has_positive = np.bincount(cands.row, weights=label, minlength=len(block)) > 0
            keep = self._keep_rows(cands.row, label, len(block), rng) & has_positive[cands.row]
            cands, y = cands.subset(keep), label[keep]
            blocks_x.append(builder.build(history, block, cands))
            blocks_y.append(y.astype(np.float32))
            sizes.append(np.bincount(cands.row, minlength=len(block))[has_positive])
        stats = {
            "users": float(len(users)),
            "held_out_items": float(held_out),
            "candidate_recall": reached / held_out if held_out else 0.0,
        }
        n_features = len(builder.names(list(generators)))
        x = np.vstack(blocks_x) if blocks_x else np.zeros((0, n_features), np.float32)
        y = np.concatenate(blocks_y) if blocks_y else np.zeros(0, np.float32)
        sizes_all = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
        stats["rows"] = float(len(y))
        stats["groups"] = float(len(sizes_all))
        return x, y, sizes_all, stats

    def _keep_rows(
        self, row: np.ndarray, label: np.ndarray, n_rows: int, rng: np.random.Generator
    ) -> np.ndarray:
        """All positives, and at most ``negatives`` random negatives per user (0: all)."""
        if self.negatives <= 0:
            return np.ones(len(row), dtype=bool)
        key = rng.random(len(row))
        key[label] = -1.0  # positives first
        order = np.lexsort((key, row))
        starts = np.searchsorted(row[order], np.arange(n_rows))
        position = np.arange(len(row)) - np.repeat(starts, np.bincount(row, minlength=n_rows))
        n_pos = np.bincount(row, weights=label, minlength=n_rows).astype(np.int64)
        keep = np.zeros(len(row), dtype=bool)
        keep[order] = position < (n_pos[row[order]] + self.negatives)
        return keep

    def _train_ranker(self, x: np.ndarray, y: np.ndarray, sizes: np.ndarray):
        """LightGBM lambdarank on one inner split's candidates (all splits' with
        ``pool_splits``); None when there is no positive to learn from (tiny data: the hybrid
        then fuses the generators' ranks)."""
        if len(sizes) == 0 or y.sum() == 0:
            return None
        import lightgbm as lgb

        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.leaves),
            "min_data_in_leaf": int(max(5, min(50, len(y) // 200))),
            "feature_fraction": 0.8,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambdarank_truncation_level": 20,
            "seed": int(self.seed),
            "deterministic": True,
            "force_row_wise": True,
            "max_bin": 63,
            # Deterministic, row-wise histograms: the same model whatever the thread count.
            "num_threads": ranker_threads(),
            "verbosity": -1,
        }
        dataset = lgb.Dataset(
            x, label=y, group=sizes, feature_name=self.feature_names_, free_raw_data=True
        )

        def report(env: Any) -> None:
            if self._report_iteration(env.iteration + 1):
                raise lgb.callback.EarlyStopException(env.iteration, [])

        return lgb.train(params, dataset, num_boost_round=int(self.iterations), callbacks=[report])

    # -- scoring ---------------------------------------------------------------------------
    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        # One BLAS thread: the generators' products here are small, and waking a sleeping BLAS
        # thread pool after LightGBM and scipy have run costs milliseconds per call.
        with single_blas_thread():
            if history.shape[0] <= BLOCK:  # one user at serving time: no slicing
                return self._score_block(history, users)
            out = np.empty(history.shape, np.float32)
            for start in range(0, history.shape[0], BLOCK):
                block_users = None if users is None else users[start : start + BLOCK]
                block = history[start : start + BLOCK]
                out[start : start + block.shape[0]] = self._score_block(block, block_users)
        return out

    def ranked_candidates(
        self, history: sp.csr_matrix, users: np.ndarray | None
    ) -> tuple[Candidates, np.ndarray, np.ndarray, np.ndarray]:
        """Stage 1 and 2 for a block of rows: candidates, their features, their ranker scores,
        and the first generator's dense scores (the order of everything else)."""
        cands, fallback = propose(self.generators_, history, users, int(self.candidates))
        assert fallback is not None  # propose keeps it by default
        x = self.builder_.build(history, users, cands)
        if self.booster_ is None:
            ranks = np.nan_to_num(cands.rank, nan=np.inf)
            predicted = (1.0 / (RRF_K + ranks)).sum(axis=1)
        else:
            # One thread for a user's few hundred rows: thread start-up costs more than it saves.
            predicted = self.booster_.predict(x, num_threads=1 if len(x) < 5000 else 0)
        return cands, x, np.asarray(predicted, np.float32), fallback

    def _score_block(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        cands, _, predicted, fallback = self.ranked_candidates(history, users)
        rows = history.shape[0]
        # Items outside the candidate set: below every candidate, in the first generator's
        # order (scaled into [floor - 2, floor - 1] per row).
        finite = np.isfinite(fallback)
        low = np.where(finite, fallback, np.inf).min(axis=1, keepdims=True)
        high = np.where(finite, fallback, -np.inf).max(axis=1, keepdims=True)
        low = np.where(np.isfinite(low), low, 0.0)
        span = np.where(np.isfinite(high), high, 1.0) - low
        scaled = np.where(finite, (fallback - low) / np.maximum(span, 1e-12), 0.0)
        floor = np.zeros(rows, np.float32)
        if len(predicted):  # candidates come sorted by row
            starts = np.flatnonzero(np.r_[True, cands.row[1:] != cands.row[:-1]])
            floor[cands.row[starts]] = np.minimum.reduceat(predicted, starts)
        out = (floor[:, None] - 2.0 + scaled).astype(np.float32)
        out[cands.row, cands.item] = predicted
        return out

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Item-to-item lists come from the first generator with a real similarity."""
        for name, generator in self.generators_.items():
            if name not in {"popularity", *OWN_GENERATORS}:
                return generator._similar(items)
        return next(iter(self.generators_.values()))._similar(items)

    # -- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {
            **self.builder_.state(),
            "generator_names": np.asarray(list(self.generators_), dtype=np.str_),
            "feature_names": np.asarray(self.feature_names_, dtype=np.str_),
            "feature_group_of": np.asarray(
                [self.feature_groups_[n] for n in self.feature_names_], dtype=np.str_
            ),
            "has_ranker": np.asarray(self.booster_ is not None),
            "rankers": np.asarray(0 if self.booster_ is None else len(self.booster_.boosters)),
        }

    def _state_dims(self) -> dict[str, int]:
        return {"cells": self.user_items_.shape[0] * self.n_items_}

    def _state_spec(self) -> dict[str, ArraySpec | CSRSpec]:
        # Arrays of a feature group are there when the group is active (checked in _set_state).
        optional: dict[str, Any] = {"required": False}
        return {
            "feat_item_log_listeners": ArraySpec(("items",)),
            "feat_item_plays_per_listener": ArraySpec(("items",)),
            "feat_active": ArraySpec((None,), "str"),
            "feat_neighbour_sim": CSRSpec.prefixed(
                "feat_neighbour_sim_",
                ("items", "items"),
                shape_array="feat_neighbour_sim_shape",
                **optional,
            ),
            "feat_tag_idf": ArraySpec(("tags",), **optional),
            "feat_tag_item_counts": ArraySpec(("items",), low=0, **optional),
            "feat_tag_own_keys": ArraySpec(("own",), "int", low=0, high="cells", **optional),
            "feat_tag_own_item_counts": ArraySpec(("own",), low=0, **optional),
            "feat_tag_item_vectors": CSRSpec.prefixed(
                "feat_tag_item_vectors_",
                ("items", "tags"),
                shape_array="feat_tag_item_vectors_shape",
                **optional,
            ),
            "feat_tag_own_vectors": CSRSpec.prefixed(
                "feat_tag_own_vectors_",
                ("own", "tags"),
                shape_array="feat_tag_own_vectors_shape",
                **optional,
            ),
            "feat_item_recent_share": ArraySpec(("items",), **optional),
            "feat_friends_graph": CSRSpec.prefixed(
                "feat_friends_graph_",
                ("users", "users"),
                shape_array="feat_friends_graph_shape",
                **optional,
            ),
            "feat_friends_plays": CSRSpec.prefixed(
                "feat_friends_plays_",
                ("users", "items"),
                shape_array="feat_friends_plays_shape",
                low=0,
                **optional,
            ),
            "generator_names": ArraySpec((None,), "str"),
            "feature_names": ArraySpec(("features",), "str"),
            "feature_group_of": ArraySpec(("features",), "str"),
            "has_ranker": ArraySpec((), "bool"),
            # Absent in models saved before there could be several: one ranker, if any.
            "rankers": ArraySpec((), "int", low=0, high=MAX_INNER_SPLITS + 1, required=False),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        active = [str(g) for g in arrays["feat_active"]]
        group_arrays = {
            "neighbours": "feat_neighbour_sim_indptr",
            "tags": "feat_tag_idf",
            "recency": "feat_item_recent_share",
            "friends": "feat_friends_graph_indptr",
        }
        if not set(active) <= set(self._feature_groups()) or len(set(active)) != len(active):
            raise ArtifactError(f"model.npz: feature groups {active} are not the model's")
        for group, array in group_arrays.items():
            if (group in active) != (array in arrays):
                raise ArtifactError(f"model.npz: the {group} features are incomplete")
        if "tags" in active and "feat_tag_own_keys" not in arrays:
            raise ArtifactError("model.npz: the tags features are incomplete")
        names = [str(n) for n in arrays["generator_names"]]
        if (
            not names
            or len(set(names)) != len(names)
            or not set(names) <= (set(MODELS) - {self.name}) | set(OWN_GENERATORS)
        ):
            raise ArtifactError(f"model.npz: {names} is not a list of generators")
        self.builder_ = FeatureBuilder(self._feature_groups(), self.neighbours)
        self.builder_.set_state(arrays)
        self._generator_names = names
        self.feature_names_ = [str(n) for n in arrays["feature_names"]]
        if self.feature_names_ != self.builder_.names(names):
            raise ArtifactError("model.npz: feature_names are not the features the model builds")
        self.feature_groups_ = dict(
            zip(self.feature_names_, [str(g) for g in arrays["feature_group_of"]], strict=True)
        )
        self._has_ranker = bool(arrays["has_ranker"])
        self._rankers = int(arrays["rankers"]) if "rankers" in arrays else int(self._has_ranker)
        if (self._rankers > 0) != self._has_ranker or self._rankers > self.inner_splits:
            raise ArtifactError(
                f"model.npz: {self._rankers} rankers for a model with has_ranker="
                f"{self._has_ranker} and {self.inner_splits} inner split(s)"
            )

    def _save_extra(self, directory: Path) -> None:
        if self.booster_ is not None:
            for index, booster in enumerate(self.booster_.boosters):
                (directory / ranker_file(index)).write_text(booster.model_to_string())
        for name, generator in self.generators_.items():
            # The generators share the hybrid's catalogue (data/): one copy, not one each.
            generator.save(directory / "generators" / name, data=False)

    def _load_extra(self, directory: Path) -> None:
        self.booster_ = None
        if self._has_ranker:
            import lightgbm as lgb

            boosters = []
            for index in range(self._rankers):
                path = directory / ranker_file(index)
                if not path.is_file():
                    raise ArtifactError(f"{directory}: the ranker model {path.name} is missing")
                # LightGBM aborts the process on a malformed text: check it (and parse it in a
                # child process) first.
                text = check_lightgbm_text(path, len(self.feature_names_))
                boosters.append(lgb.Booster(model_str=text))
            self.booster_ = RankerBag(boosters)
        self.generators_ = {
            name: (OWN_GENERATORS[name] if name in OWN_GENERATORS else model_class(name)).load(
                directory / "generators" / name,
                interactions=self.interactions_,
                fingerprint=self.data_fingerprint_,
            )
            for name in self._generator_names
        }

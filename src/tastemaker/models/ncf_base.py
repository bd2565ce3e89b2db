"""What the NCF models (``ncf``) share: training with early stopping and a refit, scoring,
fold-in and persistence of a PyTorch network (``NeuralRecommender``), and play counts as
confidences (``WeightedNeural``)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from tastemaker.artifacts import ArraySpec
from tastemaker.data.interactions import Interactions
from tastemaker.models.base import Recommender, WeightedInput
from tastemaker.models.ncf_nets import NCFNet
from tastemaker.models.ncf_training import (
    UnheardSampler,
    fold_in,
    make_optimizer,
    positive_pairs,
    sampled_epoch,
    score_block_parts,
    train_epoch,
    validation_ndcg,
    warm_start,
)
from tastemaker.models.params import Param, at_least, one_of, positive
from tastemaker.models.torch_common import (
    WEIGHTS_FILE,
    check_device,
    console,
    epoch_progress,
    load_network,
    resolve_device,
    threads_for,
    write_weights,
)
from tastemaker.models.validation import holdout_some_users

# Inner hold-out for early stopping: this share of the items of up to VALIDATION_USERS users
# (with >= 5 items). Only those users lose items, so little training signal is spent on it.
VALIDATION_FRACTION = 0.2
VALIDATION_USERS = 500
LOSSES = ("bce", "bpr")
# A fit that may run this long or longer says so after its first epoch.
LONG_FIT_SECONDS = 60.0


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``1.5 h``: a rough figure for a person deciding whether to wait."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class NeuralRecommender(Recommender):
    """Shared training, scoring, fold-in and persistence for the PyTorch models."""

    format_version = 1
    # Every subclass takes at least these hyperparameters.
    factors: int
    epochs: int
    learning_rate: float
    negatives: int
    regularization: float
    batch_size: int
    loss: str
    patience: int
    seed: int
    device: str
    net_: NCFNet
    device_: torch.device

    param_rules: ClassVar[Mapping[str, Param]] = {
        "factors": positive(integer=True),
        "epochs": positive(integer=True),
        "negatives": positive(integer=True),
        "batch_size": positive(integer=True),
        "learning_rate": positive(),
        "regularization": at_least(0),
        "patience": at_least(0, note="0 turns early stopping off"),
        "loss": one_of(*LOSSES),
    }

    def _build_net(self, n_users: int, n_items: int) -> NCFNet:
        raise NotImplementedError

    def _check_params(self) -> None:
        check_device(self.name, self.device)

    # -- fitting -----------------------------------------------------------------------------
    def _fit(self, interactions: Interactions) -> None:
        self.device_ = resolve_device(self.device)
        matrix = interactions.user_items
        for attr in ("net_", "seed_table_"):
            self.__dict__.pop(attr, None)
        if isinstance(self, WeightedInput):
            self._fit_weighting(matrix)
        devices = [self.device_] if self.device_.type == "cuda" else []
        with threads_for(matrix.shape[0] * matrix.shape[1]):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                rng = np.random.default_rng(self.seed)
                self._train(matrix, rng)
            self._after_fit()

    def _after_fit(self) -> None:
        """Hook for derived state (the seed network's lookup table)."""

    def _new_net(self, n_users: int, n_items: int) -> NCFNet:
        return self._build_net(n_users, n_items).to(self.device_)

    def _train(self, matrix: sp.csr_matrix, rng: np.random.Generator) -> None:
        """Early stopping on the inner hold-out, then a refit on all training data."""
        n_users, n_items = matrix.shape
        history_loss: list[float] = []
        history_ndcg: list[float] = []
        started = time.perf_counter()
        if self.patience > 0:
            inner, valid, valid_users = holdout_some_users(
                matrix, VALIDATION_FRACTION, VALIDATION_USERS, self.seed, rng
            )
        else:
            inner, valid, valid_users = matrix, None, np.empty(0, np.int64)
        self.net_ = self._initial_net(n_users, n_items, inner, rng)
        best_epoch, best_ndcg, best_state = 0, -np.inf, None
        epochs_run, stopped_by_callback = 0, False
        with epoch_progress(self.name, self.epochs) as advance:
            optimizer = make_optimizer(
                self.net_, self.learning_rate, self.regularization, self.device_
            )
            sampler = UnheardSampler(inner)
            positives = self._positives(inner)
            for epoch in range(1, self.epochs + 1):
                loss = self._run_epoch(optimizer, sampler, positives, rng)
                epochs_run = epoch
                if epoch == 1:
                    self._announce_duration(time.perf_counter() - started, valid is not None)
                ndcg = float("nan")
                if valid is not None and len(valid_users):
                    ndcg = validation_ndcg(
                        self.net_,
                        valid_users,
                        inner,
                        valid,
                        self.device_,
                        score_fn=self._validation_scorer(),
                    )
                history_loss.append(loss)
                history_ndcg.append(ndcg)
                advance(loss, ndcg)
                if not math.isnan(ndcg) and ndcg > best_ndcg:
                    best_epoch, best_ndcg = epoch, ndcg
                    best_state = copy.deepcopy(self.net_.state_dict())
                if self._report_iteration(epoch):
                    stopped_by_callback = True  # e.g. a pruned tuning trial: no refit either
                    break
                if valid is not None and epoch - best_epoch >= self.patience:
                    break
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        self.best_epoch_ = best_epoch if best_state is not None else epochs_run
        self.history_ = {
            "loss": np.asarray(history_loss, np.float64),
            "validation_ndcg": np.asarray(history_ndcg, np.float64),
        }
        if valid is not None and len(valid_users) and not stopped_by_callback:
            self._refit(matrix, rng)
        self.fit_seconds_ = time.perf_counter() - started

    def _announce_duration(self, first_epoch_seconds: float, early_stopping: bool) -> None:
        """Say how long the fit will take once the first epoch has shown the pace.

        Only for fits that will run long (a minute or more at most): a user who started a
        neural fit with defaults on a loaded machine should learn it is minutes, not hang.
        """
        most = self.epochs * first_epoch_seconds * (2 if early_stopping else 1)
        if most < LONG_FIT_SECONDS:
            return
        if early_stopping:
            least = min(self.patience + 1, self.epochs) * first_epoch_seconds * 2
            plan = (
                f"up to {self.epochs} epochs, stopping {self.patience} after the best, then a "
                f"refit: expect {_duration(least)} to {_duration(most)}"
            )
        else:
            plan = f"{self.epochs} epochs: expect about {_duration(most)}"
        console.print(
            f"{self.name}: the first epoch took {first_epoch_seconds:.1f} s; {plan}", soft_wrap=True
        )

    def _refit(self, matrix: sp.csr_matrix, rng: np.random.Generator) -> None:
        """Train a fresh network on all training data for the best epoch count.

        The early-stopped network never saw the validation items of its validation users;
        the refit spends the same budget again so the final model learns from everything.
        """
        n_users, n_items = matrix.shape
        torch.manual_seed(self.seed)
        self.net_ = self._initial_net(n_users, n_items, matrix, rng)
        optimizer = make_optimizer(self.net_, self.learning_rate, self.regularization, self.device_)
        sampler = UnheardSampler(matrix)
        positives = self._positives(matrix)
        with epoch_progress(f"{self.name} (refit on all)", self.best_epoch_) as advance:
            for _ in range(self.best_epoch_):
                advance(self._run_epoch(optimizer, sampler, positives, rng), float("nan"))

    def _initial_net(
        self, n_users: int, n_items: int, matrix: sp.csr_matrix, rng: np.random.Generator
    ) -> NCFNet:
        return self._new_net(n_users, n_items)

    def _positives(self, matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, items, confidence) of every listened pair; confidence from ``weighting``."""
        users, items = positive_pairs(matrix)
        return users, items, self._confidence(matrix)

    def _confidence(self, counts: sp.csr_matrix) -> np.ndarray:
        """Per-non-zero weight of a positive: the weighting of the counts (binary here)."""
        return np.ones(sp.csr_matrix(counts).nnz, np.float64)

    def _run_epoch(
        self,
        optimizer: torch.optim.Optimizer,
        sampler: UnheardSampler,
        positives: tuple[np.ndarray, np.ndarray, np.ndarray],
        rng: np.random.Generator,
    ) -> float:
        samples = sampled_epoch(positives, sampler, self.negatives, self.loss, rng)
        dev = self.device_
        users, items, targets, weights = (torch.as_tensor(a, device=dev) for a in samples)
        return train_epoch(
            self.net_, optimizer, users, items, targets, weights, self.batch_size, self.loss
        )

    def _validation_scorer(self):
        return None  # score_block_parts on the network

    # -- scoring -----------------------------------------------------------------------------
    def _user_parts(self, history: sp.csr_matrix, users: np.ndarray | None) -> list[torch.Tensor]:
        """Embedding parts of training users, or folded-in parts of unseen histories."""
        if users is not None:
            with torch.no_grad():
                return self.net_.user_parts(torch.as_tensor(users, device=self.device_))
        start = warm_start(self.net_, history, self.user_items_, self.device_)
        return fold_in(
            self.net_,
            history,
            self._confidence(history),
            start,
            self.negatives,
            self.loss,
            self.seed,
            self.device_,
        )

    def _logits(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return score_block_parts(self.net_, parts)

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        if history.shape[0] == 0:
            return np.empty((0, self.n_items_), np.float32)
        with threads_for(self.user_items_.shape[0] * self.n_items_):
            parts = self._user_parts(history, users)
            return self._logits(parts).float().cpu().numpy()

    def _similar(self, items: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            reps = self.net_.item_representation()
            chosen = reps[torch.as_tensor(items, device=self.device_)]
            return (chosen @ reps.T).float().cpu().numpy()

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {
            "history_loss": self.history_["loss"],
            "history_validation_ndcg": self.history_["validation_ndcg"],
            "best_epoch": np.asarray(self.best_epoch_, np.int64),
        }

    def _state_spec(self) -> dict[str, ArraySpec]:
        # The training history is a report (NaN: an epoch without validation), not used to score.
        return {
            "history_loss": ArraySpec(("epochs",), finite=False),
            "history_validation_ndcg": ArraySpec(("epochs",), finite=False),
            "best_epoch": ArraySpec((), "int", low=0),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.history_ = {
            "loss": arrays["history_loss"],
            "validation_ndcg": arrays["history_validation_ndcg"],
        }
        self.best_epoch_ = int(arrays["best_epoch"])

    def _save_extra(self, directory: Path) -> None:
        write_weights(directory / WEIGHTS_FILE, self.net_, self.name)

    def _load_extra(self, directory: Path) -> None:
        n_users, n_items = self.user_items_.shape
        self.net_ = load_network(self, directory, lambda: self._build_net(n_users, n_items))


class WeightedNeural(WeightedInput, NeuralRecommender):
    """Positives weighted by the play counts through ``weighting`` (log1p by default), as
    confidences: a heavily played artist counts more than one heard once."""

    def _confidence(self, counts: sp.csr_matrix) -> np.ndarray:
        return self._weigh(sp.csr_matrix(counts, dtype=np.float32)).data.astype(np.float64)

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), **self._weighting_state()}

    def _state_spec(self) -> dict[str, ArraySpec]:
        return {**super()._state_spec(), **self._weighting_spec()}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(arrays)
        self._set_weighting_state(arrays)

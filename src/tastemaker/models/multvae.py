"""Mult-VAE (Liang et al., WWW 2018, "Variational Autoencoders for Collaborative Filtering").

A history ``x`` (weighted by ``weighting``: log1p of the counts by default, binary in the paper)
is L2-normalised, dropped out (training only) and encoded by a tanh MLP into the mean and
log-variance of a Gaussian latent ``z``; the decoder (the mirror MLP) maps ``z`` to one logit
per item, and the loss is the multinomial log-likelihood of the history,
``-sum_i x_i log softmax(logits)_i``, plus ``beta`` times the KL divergence to the standard
normal, ``beta`` annealed linearly from 0 to ``beta_cap`` over ``anneal_steps`` updates. Adam
(AdamW when ``regularization`` > 0). The defaults (one 600-unit layer, latent 50, dropout
0.46, beta cap 0.4 reached in 263 updates, learning rate 0.0022, 64 histories per update, log1p
input) are the five-data-set sweep's pick (docs/defaults.md): the paper's (latent 200, binary
input) fall to 0.85x the tuned optimum on recording-level listens.

Fold-in by design: a listener is never an embedding. Every history, a training user's or a
new one, is scored by running the encoder's mean through the decoder, so ``recommend`` for a
training user is that user's training history through the network, and ``recommend_for_history``
is the same computation on the history given.

The item side is pruned as EASE prunes it: items with fewer than ``min_listeners`` training
listeners are neither inputs nor outputs (their score is ``-inf``); on HetRec 2K, 2 keeps about
6,000 of 17,632 artists and makes an epoch three times cheaper. The first layer reads the
history as a sparse matrix, so its cost is the history's length, not the catalogue's.

Early stopping as the NCF models: NDCG@10 on an inner hold-out of the *training* matrix
(20 % of the items of up to 500 users) after every epoch, ``patience`` epochs of no progress
end training and the best epoch's weights are kept. There is no refit on all data: the
held-out items are 5 % of the interactions, and the encoder sees every history whole when
it scores. Weights are saved with safetensors and checked against the network before loading.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from tastemaker.artifacts import ArraySpec
from tastemaker.data.interactions import Interactions
from tastemaker.errors import ArtifactError, UsageError
from tastemaker.models.base import Recommender, WeightedInput
from tastemaker.models.ncf_training import make_optimizer, validation_ndcg
from tastemaker.models.params import WIDTHS, at_least, between, positive
from tastemaker.models.torch_common import (
    WEIGHTS_FILE,
    check_device,
    epoch_progress,
    load_network,
    threads_for,
    write_weights,
)
from tastemaker.models.validation import holdout_some_users

# Inner hold-out for early stopping (as ncf.py).
VALIDATION_FRACTION = 0.2
VALIDATION_USERS = 500
# Histories scored at once: the decoder's output is (rows x kept items) floats.
SCORE_ROWS = 256


class MultVAENet(nn.Module):
    """Encoder ``n_items -> layers... -> 2 * latent`` (mean, log-variance) and the mirror
    decoder ``latent -> reversed(layers)... -> n_items``, tanh between layers."""

    def __init__(self, n_items: int, layers: Sequence[int], latent: int) -> None:
        super().__init__()
        widths = [n_items, *layers]
        self.encoder = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.to_latent = nn.Linear(widths[-1], 2 * latent)
        back = [latent, *reversed(layers)]
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(back, back[1:], strict=False))
        self.to_items = nn.Linear(back[-1], n_items)
        self.latent = latent
        for linear in [*self.encoder, self.to_latent, *self.decoder, self.to_items]:
            nn.init.xavier_uniform_(linear.weight)  # as the paper's code
            nn.init.normal_(linear.bias, std=0.001)

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of sparse, already normalised (and dropped-out) histories."""
        first = self.encoder[0]
        h = torch.tanh(torch.sparse.mm(inputs, first.weight.T) + first.bias)
        for linear in self.encoder[1:]:
            h = torch.tanh(linear(h))
        mean, log_variance = self.to_latent(h).chunk(2, dim=1)
        return mean, log_variance

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Item logits ``(rows, n_items)``."""
        for linear in self.decoder:
            z = torch.tanh(linear(z))
        return self.to_items(z)


def sparse_inputs(
    rows: sp.csr_matrix, dropout: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The encoder's input (rows L2-normalised, then ``dropout`` on the entries, as the
    paper's code does) as a sparse tensor, and the raw (row, column, value) entries."""
    coo = sp.coo_matrix(rows)
    norms = np.sqrt(np.bincount(coo.row, weights=coo.data**2, minlength=rows.shape[0]))
    r = torch.as_tensor(coo.row.astype(np.int64), device=device)
    c = torch.as_tensor(coo.col.astype(np.int64), device=device)
    raw = torch.as_tensor(coo.data, dtype=torch.float32, device=device)
    scale = torch.as_tensor(1.0 / np.maximum(norms, 1e-12), dtype=torch.float32, device=device)
    values = raw * scale[r]
    if dropout > 0:
        values = F.dropout(values, dropout, training=True)
    inputs = torch.sparse_coo_tensor(
        torch.stack([r, c]), values, rows.shape, device=device, check_invariants=False
    )
    return inputs, r, c, raw


def vae_loss(
    net: MultVAENet, rows: sp.csr_matrix, dropout: float, beta: float, device: torch.device
) -> torch.Tensor:
    """Mean over the rows of the negative multinomial log-likelihood plus ``beta`` x KL."""
    inputs, r, c, raw = sparse_inputs(rows, dropout, device)
    mean, log_variance = net.encode(inputs)
    z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
    log_probabilities = F.log_softmax(net.decode(z), dim=1)
    # Only the heard entries of x are non-zero: gather them instead of a dense product.
    nll = -(log_probabilities[r, c] * raw).sum() / rows.shape[0]
    kl = (-0.5 * (1 + log_variance - mean**2 - log_variance.exp()).sum(1)).mean()
    return nll + beta * kl


class MultVAE(WeightedInput, Recommender):
    """Multinomial variational autoencoder; scores any history through the encoder's mean.

    Hyperparameters: ``layers`` (hidden widths of the encoder; the decoder mirrors them),
    ``latent`` (size of z), ``dropout`` (on the normalised input), ``beta_cap`` and
    ``anneal_steps`` (KL weight schedule), ``epochs``, ``learning_rate``, ``batch_size``
    (histories per update), ``regularization`` (decoupled weight decay), ``min_listeners``
    (item pruning), ``weighting`` (+ ``bm25_k1`` / ``bm25_b``), ``patience`` (0: no early
    stopping, all ``epochs`` run), ``seed``, ``device`` (``auto``, ``cpu``, ``cuda``, ...).
    """

    name = "multvae"
    format_version = 1
    param_rules = {
        "latent": positive(integer=True),
        "epochs": positive(integer=True),
        "batch_size": positive(integer=True),
        "min_listeners": positive(integer=True),
        "layers": WIDTHS,
        "dropout": between(0, 1, high_open=True),
        "learning_rate": positive(),
        "beta_cap": at_least(0),
        "regularization": at_least(0),
        "anneal_steps": at_least(0),
        "patience": at_least(0),
    }

    def __init__(
        self,
        layers: tuple[int, ...] = (600,),
        latent: int = 50,
        dropout: float = 0.46,
        beta_cap: float = 0.4,
        anneal_steps: int = 263,
        epochs: int = 60,
        learning_rate: float = 0.0022,
        batch_size: int = 64,
        regularization: float = 0.0,
        min_listeners: int = 2,
        weighting: str = "log1p",
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        patience: int = 5,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.layers = tuple(layers) if isinstance(layers, list | tuple) else layers
        self.latent = latent
        self.dropout = dropout
        self.beta_cap = beta_cap
        self.anneal_steps = anneal_steps
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.regularization = regularization
        self.min_listeners = min_listeners
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.patience = patience
        self.seed = seed
        self.device = device

    def _check_params(self) -> None:
        check_device(self.name, self.device)

    def _build_net(self, n_kept: int) -> MultVAENet:
        return MultVAENet(n_kept, self.layers, self.latent)

    # -- fitting -----------------------------------------------------------------------------
    def _fit(self, interactions: Interactions) -> None:
        self.__dict__.pop("net_", None)
        self.device_ = check_device(self.name, self.device)
        counts = interactions.user_items
        self._fit_weighting(counts)
        listeners = np.bincount(counts.indices, minlength=counts.shape[1])
        kept = np.flatnonzero(listeners >= int(self.min_listeners))
        if len(kept) == 0:
            raise UsageError(
                f"multvae: no item has {self.min_listeners} or more listeners; lower min_listeners"
            )
        self._set_kept(kept)
        devices = [self.device_] if self.device_.type == "cuda" else []
        with threads_for(counts.shape[0] * len(kept)), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            self._train(counts, np.random.default_rng(self.seed))

    def _set_kept(self, kept: np.ndarray) -> None:
        self.kept_items_ = np.asarray(kept, dtype=np.int64)

    def _beta(self, step: int) -> float:
        if self.anneal_steps == 0:
            return float(self.beta_cap)
        return float(self.beta_cap) * min(1.0, step / self.anneal_steps)

    def _train(self, counts: sp.csr_matrix, rng: np.random.Generator) -> None:
        """Epochs of shuffled mini-batches; early stopping on the inner hold-out."""
        started = time.perf_counter()
        valid = None
        inner = counts
        if self.patience > 0:
            inner, valid, valid_users = holdout_some_users(
                counts, VALIDATION_FRACTION, VALIDATION_USERS, self.seed, rng
            )
            if not len(valid_users):
                valid = None
        inputs = sp.csr_matrix(self._weigh(inner)[:, self.kept_items_], dtype=np.float32)
        active = np.flatnonzero(np.diff(inputs.indptr) > 0)  # empty rows teach nothing
        self.net_ = self._build_net(len(self.kept_items_)).to(self.device_)
        optimizer = make_optimizer(self.net_, self.learning_rate, self.regularization, self.device_)
        losses: list[float] = []
        ndcgs: list[float] = []
        best_epoch, best_ndcg, best_state, step = 0, -np.inf, None, 0
        with epoch_progress(self.name, self.epochs) as advance:
            for epoch in range(1, self.epochs + 1):
                self.net_.train()
                total = 0.0
                order = rng.permutation(active)
                for start in range(0, len(order), self.batch_size):
                    rows = inputs[order[start : start + self.batch_size]]
                    loss = vae_loss(self.net_, rows, self.dropout, self._beta(step), self.device_)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    total += float(loss.detach()) * rows.shape[0]
                self.net_.eval()
                losses.append(total / max(len(order), 1))
                ndcg = float("nan")
                if valid is not None:
                    scorer = self._scorer(inner)
                    ndcg = validation_ndcg(
                        self.net_, valid_users, inner, valid, self.device_, score_fn=scorer
                    )
                ndcgs.append(ndcg)
                advance(losses[-1], ndcg)
                if not math.isnan(ndcg) and ndcg > best_ndcg:
                    best_epoch, best_ndcg = epoch, ndcg
                    best_state = copy.deepcopy(self.net_.state_dict())
                if self._report_iteration(epoch):
                    break
                if valid is not None and epoch - best_epoch >= self.patience:
                    break
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        self.net_.eval()
        self.best_epoch_ = best_epoch if best_state is not None else len(losses)
        self.history_ = {
            "loss": np.asarray(losses, np.float64),
            "validation_ndcg": np.asarray(ndcgs, np.float64),
        }
        self.fit_seconds_ = time.perf_counter() - started

    def _scorer(self, inner: sp.csr_matrix):
        """Scores of validation users (a tensor) from their inner-training histories."""

        def score(users: torch.Tensor) -> torch.Tensor:
            rows = inner[users.cpu().numpy()]
            return torch.as_tensor(self._scores(rows), device=self.device_)

        return score

    # -- scoring -----------------------------------------------------------------------------
    @torch.no_grad()
    def _scores(self, history: sp.csr_matrix) -> np.ndarray:
        """Decoder logits of the encoder's mean for each history row; -inf on pruned items."""
        out = np.full((history.shape[0], self.n_items_), -np.inf, np.float32)
        x = sp.csr_matrix(self._weigh(history)[:, self.kept_items_], dtype=np.float32)
        for start in range(0, x.shape[0], SCORE_ROWS):
            rows = x[start : start + SCORE_ROWS]
            inputs = sparse_inputs(rows, 0.0, self.device_)[0]
            mean, _ = self.net_.encode(inputs)
            logits = self.net_.decode(mean).float().cpu().numpy()
            out[start : start + rows.shape[0], self.kept_items_] = logits
        return out

    def _score_rows(self, history: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        # Fold-in by design: a training user is their training history (``history``).
        if history.shape[0] == 0:
            return np.empty((0, self.n_items_), np.float32)
        with threads_for(self.user_items_.shape[0] * len(self.kept_items_)):
            return self._scores(history)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the decoder's item vectors (its output rows); pruned items: -inf."""
        out = np.full((len(items), self.n_items_), -np.inf, np.float32)
        position = np.full(self.n_items_, -1, np.int64)
        position[self.kept_items_] = np.arange(len(self.kept_items_))
        known = np.flatnonzero(position[items] >= 0)
        with torch.no_grad():
            vectors = F.normalize(self.net_.to_items.weight, dim=1)
            chosen = vectors[torch.as_tensor(position[items][known], device=self.device_)]
            sims = (chosen @ vectors.T).float().cpu().numpy()
        out[np.ix_(known, self.kept_items_)] = sims
        return out

    def explain(self, history: sp.spmatrix, item: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The base's similarity-weighted history items, without pruned ones (no similarity)."""
        items, contributions = super().explain(history, item, n=self.n_items_)
        finite = np.isfinite(contributions)
        return items[finite][:n], contributions[finite][:n]

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {
            "kept_items": self.kept_items_,
            "history_loss": self.history_["loss"],
            "history_validation_ndcg": self.history_["validation_ndcg"],
            "best_epoch": np.asarray(self.best_epoch_, np.int64),
            **self._weighting_state(),
        }

    def _state_spec(self) -> dict[str, ArraySpec]:
        # The training history is a report (NaN: an epoch without validation), not used to score.
        return {
            "kept_items": ArraySpec(("kept",), "int", low=0, high="items"),
            "history_loss": ArraySpec(("epochs",), finite=False),
            "history_validation_ndcg": ArraySpec(("epochs",), finite=False),
            "best_epoch": ArraySpec((), "int", low=0),
            **self._weighting_spec(),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        kept = arrays["kept_items"]
        if len(kept) == 0 or (np.diff(kept) <= 0).any():
            raise ArtifactError("model.npz: kept_items must be increasing item indices")
        self._set_kept(kept)
        self.history_ = {
            "loss": arrays["history_loss"],
            "validation_ndcg": arrays["history_validation_ndcg"],
        }
        self.best_epoch_ = int(arrays["best_epoch"])
        self._set_weighting_state(arrays)

    def _save_extra(self, directory: Path) -> None:
        write_weights(directory / WEIGHTS_FILE, self.net_, self.name)

    def _load_extra(self, directory: Path) -> None:
        n_kept = len(self.kept_items_)
        self.net_ = load_network(self, directory, lambda: self._build_net(n_kept))

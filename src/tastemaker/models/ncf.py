"""Neural collaborative filtering (He et al., WWW 2017) and the original study's network.

- ``gmf``: generalised matrix factorisation, ``h . (p_u * q_i) + b``;
- ``mlp``: a ReLU tower on the concatenated user and item embeddings;
- ``neumf``: both side by side under one output layer, optionally started from a trained GMF
  and MLP (``pretrain=True``, as in the paper);
- ``ncf-seed``: the original study's network (5-dim embeddings, their dot product through
  dense 2048 -> 1024 -> 512 -> sigmoid), trained on the whole matrix as classification.

Training (see ``ncf_training``): fresh negatives every epoch, drawn uniformly from the items
each user has not heard; binary cross-entropy (or BPR); Adam with weight decay; mini-batches;
early stopping by NDCG@10 on an inner hold-out carved from the *training* matrix, restoring
the best epoch, then a refit on all training data for that many epochs. Scores are logits
(``ncf-seed``: probabilities, as its network ends in a sigmoid). Weights are saved with
safetensors; nothing is pickled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from tastemaker.artifacts import ArraySpec
from tastemaker.errors import ArtifactError, UsageError
from tastemaker.models.base import FactorModel
from tastemaker.models.ncf_base import NeuralRecommender, WeightedNeural
from tastemaker.models.ncf_nets import GMFNet, MLPNet, NCFNet, NeuMFNet, SeedNet
from tastemaker.models.ncf_training import (
    train_epoch,
)
from tastemaker.models.params import WIDTHS, between

# The MLP tower's hyperparameters (MLP, NeuMF).
TOWER_RULES = {"layers": WIDTHS, "dropout": between(0, 1, high_open=True)}


class GMF(WeightedNeural, FactorModel):
    """Generalised matrix factorisation, trained with sampled negatives (NCF paper, 3.2)."""

    name = "gmf"
    net_: GMFNet

    def __init__(
        self,
        factors: int = 64,
        epochs: int = 60,
        learning_rate: float = 0.002,
        negatives: int = 4,
        regularization: float = 0.3,
        weighting: str = "log1p",
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        batch_size: int = 1024,
        loss: str = "bce",
        patience: int = 5,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.negatives = negatives
        self.regularization = regularization
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.batch_size = batch_size
        self.loss = loss
        self.patience = patience
        self.seed = seed
        self.device = device

    def _build_net(self, n_users: int, n_items: int) -> NCFNet:
        return GMFNet(n_users, n_items, self.factors)

    # score = (p_u * h) . q_i + b  ->  user vector [p_u * h, 1], item vector [q_i, b]
    def _as_user_vectors(self, p: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            scaled = p * self.net_.out.weight[0]
            ones = torch.ones((p.shape[0], 1), device=p.device)
            return torch.cat([scaled, ones], dim=1).float().cpu().numpy()

    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        return self._as_user_vectors(self._user_parts(self.user_items_[users], users)[0])

    def history_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        self._check_fitted()
        history = self._check_history(history)
        return self._as_user_vectors(self._user_parts(history, None)[0])

    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        with torch.no_grad():
            q = self.net_.item_gmf.weight
            bias = self.net_.out.bias.expand(q.shape[0], 1)
            return torch.cat([q, bias], dim=1).float().cpu().numpy()


class MLP(WeightedNeural):
    """A ReLU tower on the concatenated user and item embeddings (NCF paper, 3.3)."""

    name = "mlp"
    param_rules = TOWER_RULES
    layers: tuple[int, ...]
    dropout: float

    def __init__(
        self,
        factors: int = 32,
        layers: tuple[int, ...] = (32, 16, 8),
        dropout: float = 0.0,
        epochs: int = 60,
        learning_rate: float = 0.002,
        negatives: int = 4,
        regularization: float = 0.2,
        weighting: str = "log1p",
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        batch_size: int = 1024,
        loss: str = "bce",
        patience: int = 5,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.factors = factors
        self.layers = tuple(layers) if isinstance(layers, list | tuple) else layers
        self.dropout = dropout
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.negatives = negatives
        self.regularization = regularization
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.batch_size = batch_size
        self.loss = loss
        self.patience = patience
        self.seed = seed
        self.device = device

    def _build_net(self, n_users: int, n_items: int) -> NCFNet:
        return MLPNet(n_users, n_items, self.factors, self.layers, self.dropout)


class NeuMF(WeightedNeural):
    """GMF and MLP under one output layer (NCF paper, 3.4).

    ``pretrain=True`` first trains a GMF and an MLP with the same settings (each with its own
    early stopping) and starts NeuMF from their weights, as the paper does.
    """

    name = "neumf"
    param_rules = TOWER_RULES
    layers: tuple[int, ...]
    dropout: float
    pretrain: bool

    def __init__(
        self,
        factors: int = 64,
        layers: tuple[int, ...] = (32, 16, 8),
        dropout: float = 0.5,
        epochs: int = 60,
        learning_rate: float = 0.002,
        negatives: int = 4,
        regularization: float = 0.3,
        weighting: str = "log1p",
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        batch_size: int = 1024,
        loss: str = "bce",
        patience: int = 5,
        pretrain: bool = False,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.factors = factors
        self.layers = tuple(layers) if isinstance(layers, list | tuple) else layers
        self.dropout = dropout
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.negatives = negatives
        self.regularization = regularization
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.batch_size = batch_size
        self.loss = loss
        self.patience = patience
        self.pretrain = pretrain
        self.seed = seed
        self.device = device

    def _build_net(self, n_users: int, n_items: int) -> NCFNet:
        return NeuMFNet(n_users, n_items, self.factors, self.layers, self.dropout)

    def _initial_net(
        self, n_users: int, n_items: int, matrix: sp.csr_matrix, rng: np.random.Generator
    ) -> NCFNet:
        net = self._new_net(n_users, n_items)
        if not self.pretrain:
            return net
        parts = []
        for cls in (GMF, MLP):
            # The same settings: every GMF and MLP hyperparameter is one of NeuMF's.
            part = cls(**{name: getattr(self, name) for name in cls.param_names()})
            part.device_ = self.device_
            part.weighting_statistics_ = self.weighting_statistics_
            part._callback = None
            part._train(matrix, np.random.default_rng(rng.integers(1 << 62)))
            parts.append(part.net_)
        gmf, mlp = parts
        assert isinstance(net, NeuMFNet) and isinstance(gmf, GMFNet) and isinstance(mlp, MLPNet)
        net.load_pretrained(gmf, mlp)
        return net


class NCFSeed(NeuralRecommender):
    """The original study's network, trained as the study trained it.

    Architecture: user and item embeddings of size 5, their dot product, dense layers
    2048 -> 1024 -> 512 (ReLU) and a sigmoid output. Training: binary classification over the
    *whole* user x item matrix (every unheard cell a 0), no validation, no early stopping.

    A full pass over 33 M HetRec cells through 2.6 M multiply-adds each is hours of CPU, so
    each epoch draws ``samples_per_epoch`` cells: heard cells and ``negatives`` unheard cells
    per heard one, each class weighted by (its count in the matrix / its count in the sample).
    The weighted loss is an unbiased estimate of the study's full-matrix loss, class imbalance
    (99.7 % zeros on HetRec) included, so the network learns what the study's learned.

    Scores are the network's probabilities. The dense layers see only the dot product, so the
    network is a function of one number; ranking tabulates it at ``TABLE_SIZE`` points over the
    range of trained dot products and interpolates (checked against the network in the tests),
    evaluating the network directly for dot products outside that range.
    """

    name = "ncf-seed"
    param_rules = {"layers": WIDTHS}
    net_: SeedNet
    layers: tuple[int, ...]
    samples_per_epoch: int
    TABLE_SIZE = 1 << 14

    def __init__(
        self,
        factors: int = 5,
        layers: tuple[int, ...] = (2048, 1024, 512),
        epochs: int = 3,
        learning_rate: float = 0.001,
        negatives: int = 1,
        samples_per_epoch: int = 65536,
        regularization: float = 0.0,
        batch_size: int = 1024,
        loss: str = "bce",
        patience: int = 0,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.factors = factors
        self.layers = tuple(layers) if isinstance(layers, list | tuple) else layers
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.negatives = negatives
        self.samples_per_epoch = samples_per_epoch
        self.regularization = regularization
        self.batch_size = batch_size
        self.loss = loss
        self.patience = patience
        self.seed = seed
        self.device = device

    def _check_params(self) -> None:
        super()._check_params()
        if self.loss != "bce":
            raise UsageError("ncf-seed: the study trained with binary cross-entropy (loss='bce')")
        if self.samples_per_epoch < 1 + self.negatives:
            raise UsageError("ncf-seed: samples_per_epoch must exceed negatives")

    def _build_net(self, n_users: int, n_items: int) -> NCFNet:
        return SeedNet(n_users, n_items, self.factors, self.layers)

    def _run_epoch(self, optimizer, sampler, positives, rng) -> float:
        pos_users, pos_items, _ = positives
        n_pos = max(1, self.samples_per_epoch // (1 + self.negatives))
        n_neg = n_pos * self.negatives
        picked = rng.integers(0, len(pos_users), n_pos)
        neg_users, neg_items = sampler.sample_cells(n_neg, rng)
        n_neg = len(neg_users)  # 0 when the matrix has no zero left
        total_zero = float(sampler.n_unheard.sum())
        users = np.concatenate([pos_users[picked], neg_users])
        items = np.concatenate([pos_items[picked], neg_items])
        labels = np.concatenate([np.ones(n_pos), np.zeros(n_neg)]).astype(np.float32)
        weights = np.concatenate(
            [np.full(n_pos, len(pos_users) / n_pos), np.full(n_neg, total_zero / max(n_neg, 1))]
        ).astype(np.float32)
        weights /= weights.mean()  # the scale is Adam's business; the ratio is the point
        order = rng.permutation(len(users))
        dev = self.device_
        users_t, items_t, labels_t, weights_t = (
            torch.as_tensor(a[order], device=dev) for a in (users, items, labels, weights)
        )
        return train_epoch(
            self.net_, optimizer, users_t, items_t, labels_t, weights_t, self.batch_size, "bce"
        )

    # -- the tabulated curve -----------------------------------------------------------------
    @torch.no_grad()
    def _tabulate(self) -> tuple[float, float, torch.Tensor]:
        """(lo, hi, logits at TABLE_SIZE evenly spaced dot products from lo to hi)."""
        net = self.net_
        net.eval()
        lo, hi = np.inf, -np.inf
        users = net.user.weight
        for start in range(0, users.shape[0], 256):
            dots = users[start : start + 256] @ net.item.weight.T
            lo, hi = min(lo, float(dots.min())), max(hi, float(dots.max()))
        margin = 0.5 * (hi - lo) + 1e-3
        lo, hi = lo - margin, hi + margin
        knots = torch.linspace(lo, hi, self.TABLE_SIZE, device=self.device_, dtype=torch.float64)
        table = torch.cat([net.curve(chunk.float()) for chunk in knots.split(4096)])
        return lo, hi, table

    def _after_fit(self) -> None:
        lo, hi, table = self._tabulate()
        self.seed_table_ = (lo, hi, table)

    def _curve_logits(self, dots: torch.Tensor, lo: float, hi: float, table: torch.Tensor):
        steps = len(table) - 1
        position = (dots.double() - lo) * (steps / (hi - lo))
        inside = (position >= 0) & (position <= steps)
        index = position.clamp(0, steps - 1).floor()
        fraction = (position - index).float()
        index = index.long()
        logits = torch.lerp(table[index], table[index + 1], fraction)
        if not bool(inside.all()):
            logits[~inside] = self.net_.curve(dots[~inside])
        return logits

    def _validation_scorer(self):
        lo, hi, table = self._tabulate()

        def score(users: torch.Tensor) -> torch.Tensor:
            dots = self.net_.block_dots(self.net_.user_parts(users))
            return self._curve_logits(dots, lo, hi, table)

        return score

    @torch.no_grad()
    def _logits(self, parts: list[torch.Tensor]) -> torch.Tensor:
        lo, hi, table = self.seed_table_
        dots = self.net_.block_dots(parts)
        return torch.sigmoid(self._curve_logits(dots, lo, hi, table))

    def _state(self) -> dict[str, np.ndarray]:
        lo, hi, table = self.seed_table_
        return {
            **super()._state(),
            "table_range": np.asarray([lo, hi], np.float64),
            "table": table.float().cpu().numpy(),
        }

    def _state_spec(self) -> dict[str, ArraySpec]:
        return {
            **super()._state_spec(),
            "table_range": ArraySpec((2,)),
            "table": ArraySpec((self.TABLE_SIZE,)),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(arrays)
        lo, hi = arrays["table_range"]
        if not lo < hi:
            raise ArtifactError(f"model.npz: table_range [{lo}, {hi}] is empty")
        self._table_arrays = (arrays["table_range"], arrays["table"])

    def _load_extra(self, directory: Path) -> None:
        super()._load_extra(directory)
        (lo, hi), table = self._table_arrays
        del self._table_arrays
        self.seed_table_ = (float(lo), float(hi), torch.as_tensor(table, device=self.device_))

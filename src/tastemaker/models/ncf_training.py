"""Networks, negative sampling, training loop and fold-in for neural collaborative filtering.

The model classes in ``tastemaker.models.ncf`` put these behind the common ``Recommender``
interface; this module holds the PyTorch parts:

- ``GMFNet``, ``MLPNet``, ``NeuMFNet`` (He et al., WWW 2017) and ``SeedNet`` (the original
  study's network: a dot product of two 5-dim embeddings fed through 2048 -> 1024 -> 512);
- ``UnheardSampler``: uniform draws of items a user has *not* heard, exact and vectorised;
- ``train_epoch``: one pass over mini-batches with BCE or BPR loss;
- ``validation_ndcg``: NDCG@10 on an inner hold-out, for early stopping;
- ``fold_in``: user embeddings for unseen histories, items frozen.

Every network scores pairs (``pair_logits``) for training and blocks of users against many
items (``block_logits``) for ranking; the block path splits the first MLP layer into a user
half and an item half, so only the layers after it run per (user, item) pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from tastemaker.models.torch_common import resolve_device  # noqa: F401  (bench/ncf.py)
from tastemaker.models.validation import ndcg_at_k

# Block scoring materialises (users x items x first hidden layer) floats; keep a block near
# this many elements (64 MB of float32).
BLOCK_ELEMENTS = 1 << 24
# Fold-in: Adam steps, step size and the number of fixed candidate negatives per history.
FOLD_IN_STEPS = 60
FOLD_IN_LEARNING_RATE = 0.05
FOLD_IN_CANDIDATES = 2000
# Strength of the pull towards the warm start (per-row loss is a mean of BCE terms).
FOLD_IN_PRIOR = 1e-2
# Warm start: the nearest trained users by history cosine, weighted by cosine ** power.
WARM_START_USERS = 10
WARM_START_POWER = 4


# -- networks -----------------------------------------------------------------------------------


class NCFNet(nn.Module):
    """Common shape: user-side embedding tables, item-side tables, a pairwise scorer."""

    user_tables: tuple[str, ...] = ()
    item_tables: tuple[str, ...] = ()

    def user_parts(self, users: torch.Tensor) -> list[torch.Tensor]:
        return [getattr(self, name)(users) for name in self.user_tables]

    def mean_user_parts(self) -> list[torch.Tensor]:
        return [getattr(self, name).weight.mean(0) for name in self.user_tables]

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.pair_logits(self.user_parts(users), items)

    def pair_logits(self, parts: list[torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Logits ``(N,)`` of N (user, item) pairs; ``parts`` are the N users' embeddings."""
        raise NotImplementedError

    def block_logits(
        self, parts: list[torch.Tensor], items: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``(B, n)`` of B users against ``items`` (all items when None)."""
        raise NotImplementedError

    def block_rows(self, n_items: int) -> int:
        """How many users ``block_logits`` should take at once against ``n_items`` items."""
        return 512

    def embedding_tables(self) -> list[nn.Embedding]:
        return [getattr(self, name) for name in self.user_tables + self.item_tables]

    def item_representation(self) -> torch.Tensor:
        """Item vectors for cosine similarity: each table L2-normalised, then concatenated."""
        parts = [F.normalize(getattr(self, name).weight, dim=1) for name in self.item_tables]
        return torch.cat(parts, dim=1) / math.sqrt(len(parts))


def _embedding(n: int, dim: int, std: float) -> nn.Embedding:
    table = nn.Embedding(n, dim)
    nn.init.normal_(table.weight, std=std)
    return table


class _Tower(nn.Module):
    """The MLP tower on concatenated (user, item) embeddings: Linear-ReLU(-Dropout) layers."""

    def __init__(self, in_dim: int, layers: Sequence[int], dropout: float) -> None:
        super().__init__()
        dims = [in_dim, *layers]
        linears = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        self.linears = nn.ModuleList(linears)
        self.dropout = dropout
        for linear in linears:
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    @property
    def first(self) -> nn.Linear:
        # nn.ModuleList's items are typed as any Module; every one here is a Linear. (A
        # property, not an attribute: an attribute would add a submodule to the state dict.)
        return cast(nn.Linear, self.linears[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._rest(F.relu(self.linears[0](x)), start=1)

    def _rest(self, x: torch.Tensor, start: int) -> torch.Tensor:
        x = F.dropout(x, self.dropout, self.training)
        for linear in self.linears[start:]:
            x = F.dropout(F.relu(linear(x)), self.dropout, self.training)
        return x

    def block(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Tower output ``(B, n, last)`` for every pair of B users and n items.

        The first layer acts on ``[user, item]``, so ``W [u; i] = W_u u + W_i i``: both halves
        are computed once per user and once per item, and only the rest runs per pair.
        """
        first = self.first
        dim = user.shape[1]
        user_half = user @ first.weight[:, :dim].T + first.bias
        item_half = item @ first.weight[:, dim:].T
        return self._rest(F.relu(user_half[:, None, :] + item_half[None, :, :]), start=1)


class GMFNet(NCFNet):
    """Generalised matrix factorisation: ``h . (p_u * q_i) + b``."""

    user_tables = ("user_gmf",)
    item_tables = ("item_gmf",)

    def __init__(self, n_users: int, n_items: int, factors: int) -> None:
        super().__init__()
        self.user_gmf = _embedding(n_users, factors, 0.01)
        self.item_gmf = _embedding(n_items, factors, 0.01)
        self.out = nn.Linear(factors, 1)
        nn.init.uniform_(self.out.weight, 0.9, 1.1)  # start near a plain dot product
        nn.init.zeros_(self.out.bias)

    def pair_logits(self, parts, items):
        return self.out(parts[0] * self.item_gmf(items)).squeeze(-1)

    def block_logits(self, parts, items=None):
        q = self.item_gmf.weight if items is None else self.item_gmf(items)
        return (parts[0] * self.out.weight[0]) @ q.T + self.out.bias


class MLPNet(NCFNet):
    """Multi-layer perceptron on ``[p_u, q_i]``."""

    user_tables = ("user_mlp",)
    item_tables = ("item_mlp",)

    def __init__(
        self, n_users: int, n_items: int, factors: int, layers: Sequence[int], dropout: float
    ) -> None:
        super().__init__()
        self.user_mlp = _embedding(n_users, factors, 0.01)
        self.item_mlp = _embedding(n_items, factors, 0.01)
        self.tower = _Tower(2 * factors, layers, dropout)
        self.out = nn.Linear(layers[-1], 1)

    def pair_logits(self, parts, items):
        x = torch.cat([parts[0], self.item_mlp(items)], dim=-1)
        return self.out(self.tower(x)).squeeze(-1)

    def block_logits(self, parts, items=None):
        q = self.item_mlp.weight if items is None else self.item_mlp(items)
        return self.out(self.tower.block(parts[0], q)).squeeze(-1)

    def block_rows(self, n_items: int) -> int:
        return max(1, BLOCK_ELEMENTS // (n_items * self.tower.first.out_features))


class NeuMFNet(NCFNet):
    """Neural matrix factorisation: GMF and MLP side by side, joined by one output layer."""

    user_tables = ("user_gmf", "user_mlp")
    item_tables = ("item_gmf", "item_mlp")

    def __init__(
        self, n_users: int, n_items: int, factors: int, layers: Sequence[int], dropout: float
    ) -> None:
        super().__init__()
        self.user_gmf = _embedding(n_users, factors, 0.01)
        self.item_gmf = _embedding(n_items, factors, 0.01)
        self.user_mlp = _embedding(n_users, factors, 0.01)
        self.item_mlp = _embedding(n_items, factors, 0.01)
        self.tower = _Tower(2 * factors, layers, dropout)
        self.out = nn.Linear(factors + layers[-1], 1)
        self.factors = factors

    def pair_logits(self, parts, items):
        gmf = parts[0] * self.item_gmf(items)
        mlp = self.tower(torch.cat([parts[1], self.item_mlp(items)], dim=-1))
        return self.out(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    def block_logits(self, parts, items=None):
        q_gmf = self.item_gmf.weight if items is None else self.item_gmf(items)
        q_mlp = self.item_mlp.weight if items is None else self.item_mlp(items)
        w = self.out.weight[0]
        gmf = (parts[0] * w[: self.factors]) @ q_gmf.T
        mlp = self.tower.block(parts[1], q_mlp) @ w[self.factors :]
        return gmf + mlp + self.out.bias

    def block_rows(self, n_items: int) -> int:
        return max(1, BLOCK_ELEMENTS // (n_items * self.tower.first.out_features))

    def load_pretrained(self, gmf: GMFNet, mlp: MLPNet, alpha: float = 0.5) -> None:
        """Start from trained GMF and MLP (the paper's pre-training): copy their embeddings
        and tower, and join their output layers weighted ``alpha`` and ``1 - alpha``."""
        with torch.no_grad():
            for name in ("user_gmf", "item_gmf"):
                getattr(self, name).weight.copy_(getattr(gmf, name).weight)
            for name in ("user_mlp", "item_mlp"):
                getattr(self, name).weight.copy_(getattr(mlp, name).weight)
            self.tower.load_state_dict(mlp.tower.state_dict())
            weight = torch.cat([alpha * gmf.out.weight, (1 - alpha) * mlp.out.weight], dim=1)
            self.out.weight.copy_(weight)
            self.out.bias.copy_(alpha * gmf.out.bias + (1 - alpha) * mlp.out.bias)


class SeedNet(NCFNet):
    """The original study's network: ``dense(p_u . q_i)`` with dense = 2048 -> 1024 -> 512 -> 1.

    The dense layers see one number per pair, the dot product, so the whole network is a
    function of that scalar: ``curve(s)``. Ranking tabulates ``curve`` once (see ncf.NCFSeed).
    """

    user_tables = ("user",)
    item_tables = ("item",)

    def __init__(self, n_users: int, n_items: int, factors: int, layers: Sequence[int]) -> None:
        super().__init__()
        # Keras' default embedding initialiser (uniform +-0.05), as the study's code used.
        self.user = nn.Embedding(n_users, factors)
        self.item = nn.Embedding(n_items, factors)
        nn.init.uniform_(self.user.weight, -0.05, 0.05)
        nn.init.uniform_(self.item.weight, -0.05, 0.05)
        self.tower = _Tower(1, layers, 0.0)
        self.out = nn.Linear(layers[-1], 1)

    def curve(self, dots: torch.Tensor) -> torch.Tensor:
        """Logit as a function of the dot product (any shape)."""
        flat = dots.reshape(-1, 1)
        return self.out(self.tower(flat)).reshape(dots.shape)

    def pair_logits(self, parts, items):
        return self.curve((parts[0] * self.item(items)).sum(-1))

    def block_dots(self, parts, items=None) -> torch.Tensor:
        q = self.item.weight if items is None else self.item(items)
        return parts[0] @ q.T

    def block_logits(self, parts, items=None):
        return self.curve(self.block_dots(parts, items))

    def block_rows(self, n_items: int) -> int:
        return max(1, (1 << 20) // (n_items * self.tower.first.out_features))


# -- sampling -----------------------------------------------------------------------------------


class UnheardSampler:
    """Uniform draws of items a user has not heard, exact and vectorised (no rejection loop).

    For a row with sorted heard items ``h_0 < h_1 < ...``, the r-th unheard item (0-based) is
    ``r + #{j : h_j - j <= r}``; ``h_j - j`` is non-decreasing, so one ``searchsorted`` over
    all rows (keys offset by row) finds every draw at once.
    """

    def __init__(self, matrix: sp.csr_matrix) -> None:
        m = sp.csr_matrix(matrix)
        if not m.has_sorted_indices:
            m = m.sorted_indices()
        self.n_items = m.shape[1]
        self.indptr = m.indptr.astype(np.int64)
        lengths = np.diff(self.indptr)
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), lengths)
        rank = np.arange(m.nnz, dtype=np.int64) - np.repeat(self.indptr[:-1], lengths)
        self.keys = rows * (self.n_items + 1) + (m.indices.astype(np.int64) - rank)
        self.n_unheard = self.n_items - lengths

    def sample(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One unheard item per entry of ``users`` (each user must have one left)."""
        users = np.asarray(users, dtype=np.int64)
        available = self.n_unheard[users]
        if len(users) and available.min() <= 0:
            raise ValueError("a user has heard every item; no negative can be drawn")
        r = rng.integers(0, available, dtype=np.int64) if len(users) else users.copy()
        skipped = np.searchsorted(self.keys, users * (self.n_items + 1) + r, side="right")
        return r + skipped - self.indptr[users]

    def sample_cells(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` cells drawn uniformly from all unheard (user, item) cells of the matrix."""
        cumulative = np.cumsum(self.n_unheard)
        if cumulative[-1] == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        users = np.searchsorted(cumulative, rng.integers(0, cumulative[-1], n), side="right")
        return users.astype(np.int64), self.sample(users, rng)


def positive_pairs(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) of every non-zero, as int64."""
    m = sp.csr_matrix(matrix)
    users = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return users, m.indices.astype(np.int64)


# -- training -----------------------------------------------------------------------------------


def make_optimizer(
    net: nn.Module, learning_rate: float, weight_decay: float, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW: weight decay decoupled from the gradient, so rarely seen items shrink towards zero
    at the same rate as popular ones (L2 added to Adam's gradient barely touches rows that
    Adam's per-parameter scaling has already normalised). The fused kernel where torch has one
    for the device: several times faster on CPU, where the dense update of the embedding
    tables dominates a step."""
    params = [p for p in net.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)


def train_epoch(
    net: NCFNet,
    optimizer: torch.optim.Optimizer,
    users: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    batch_size: int,
    loss: str,
) -> float:
    """One pass over the (already shuffled) samples; returns the mean weighted loss.

    ``bce``: ``items`` are the items, ``targets`` the 0/1 labels. ``bpr``: ``items`` are the
    positives, ``targets`` the sampled negative items. ``weights`` scale each sample's loss
    (the positive's confidence).
    """
    net.train()
    total, count = 0.0, 0
    for start in range(0, len(users), batch_size):
        stop = start + batch_size
        u = users[start:stop]
        parts = net.user_parts(u)
        logits = net.pair_logits(parts, items[start:stop])
        if loss == "bpr":
            diff = logits - net.pair_logits(parts, targets[start:stop])
            per_sample = F.softplus(-diff)
        else:
            per_sample = F.binary_cross_entropy_with_logits(
                logits, targets[start:stop], reduction="none"
            )
        batch_loss = (per_sample * weights[start:stop]).mean()
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()
        total += float(batch_loss.detach()) * len(u)
        count += len(u)
    return total / max(count, 1)


def sampled_epoch(
    positives: tuple[np.ndarray, np.ndarray, np.ndarray],
    sampler: UnheardSampler,
    negatives: int,
    loss: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fresh samples for one epoch, shuffled: ``negatives`` unheard items per positive.

    ``positives`` are (users, items, confidence weights). Returns ``bce``: (users, items,
    labels, weights), positives labelled 1 with their weight, negatives 0 with weight 1;
    ``bpr``: (users, positive items, negative items, weights), ``negatives`` triples per
    positive, each with the positive's weight.
    """
    pos_users, pos_items, pos_weights = positives
    # A user who has heard every item has no negative to offer; their positives still count.
    has_unheard = sampler.n_unheard[pos_users] > 0
    neg_users = np.repeat(pos_users[has_unheard], negatives)
    neg_items = sampler.sample(neg_users, rng)
    if loss == "bpr":
        order = rng.permutation(len(neg_users))
        return (
            neg_users[order],
            np.repeat(pos_items[has_unheard], negatives)[order],
            neg_items[order],
            np.repeat(pos_weights[has_unheard], negatives)[order],
        )
    users = np.concatenate([pos_users, neg_users])
    items = np.concatenate([pos_items, neg_items])
    labels = np.concatenate([np.ones(len(pos_users)), np.zeros(len(neg_users))])
    weights = np.concatenate([pos_weights, np.ones(len(neg_users))])
    order = rng.permutation(len(users))
    return (
        users[order],
        items[order],
        labels[order].astype(np.float32),
        weights[order].astype(np.float32),
    )


# -- scoring ------------------------------------------------------------------------------------


@torch.no_grad()
def score_block_parts(
    net: NCFNet, parts: list[torch.Tensor], items: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits of users (given by their embedding parts) against items, in memory-sized blocks."""
    net.eval()
    n_items = getattr(net, net.item_tables[0]).num_embeddings if items is None else len(items)
    rows = net.block_rows(n_items)
    blocks = [
        net.block_logits([p[start : start + rows] for p in parts], items)
        for start in range(0, parts[0].shape[0], rows)
    ]
    return torch.cat(blocks) if blocks else torch.empty((0, n_items), device=parts[0].device)


@torch.no_grad()
def validation_ndcg(
    net: nn.Module,
    users: np.ndarray,
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
    device: torch.device,
    k: int = 10,
    score_fn=None,
) -> float:
    """NDCG@k of ``users`` on ``valid``, ranking every item not in their ``train`` row."""
    ranked = np.full((len(users), k), -1, np.int64)  # -1 pads catalogues under k items
    chunk = 256
    for start in range(0, len(users), chunk):
        block = users[start : start + chunk]
        u = torch.as_tensor(block, device=device)
        if score_fn:
            scores = score_fn(u)
        else:
            assert isinstance(net, NCFNet)  # any other network comes with its score_fn
            scores = score_block_parts(net, net.user_parts(u))
        rows = train[block]
        r = np.repeat(np.arange(len(block)), np.diff(rows.indptr))
        scores[
            torch.as_tensor(r, device=device), torch.as_tensor(rows.indices, device=device)
        ] = -torch.inf
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices.cpu().numpy()
        ranked[start : start + len(block), : top.shape[1]] = top
    return ndcg_at_k(ranked, valid[users], k)


# -- fold-in ------------------------------------------------------------------------------------


def warm_start(
    net: NCFNet, history: sp.csr_matrix, train: sp.csr_matrix, device: torch.device
) -> list[torch.Tensor]:
    """Starting embeddings for unseen histories: a similarity-weighted mean of the trained
    users whose histories are most alike (cosine over binary rows, the ``WARM_START_USERS``
    nearest, weights ``cos ** WARM_START_POWER``); the mean trained user where none overlap."""
    mean = [p.detach() for p in net.mean_user_parts()]
    n_rows = history.shape[0]
    k = min(WARM_START_USERS, train.shape[0])
    starts = [m.repeat(n_rows, 1) for m in mean]
    if n_rows == 0 or k == 0:
        return starts

    def unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
        binary = sp.csr_matrix((np.ones(m.nnz, np.float32), m.indices, m.indptr), m.shape)
        norms = np.sqrt(np.diff(binary.indptr)).astype(np.float32)
        return sp.diags(1.0 / np.maximum(norms, 1.0)) @ binary

    train_unit = unit_rows(train).T.tocsr()
    for start in range(0, n_rows, 256):
        block = slice(start, min(start + 256, n_rows))
        sims = (unit_rows(history[block]) @ train_unit).toarray()
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(sims, nearest, axis=1) ** WARM_START_POWER
        totals = weights.sum(1)
        found = totals > 0
        if not found.any():
            continue
        shares = torch.as_tensor(weights[found] / totals[found, None], device=device)
        rows = torch.as_tensor(np.arange(block.start, block.stop)[found], device=device)
        with torch.no_grad():
            parts = net.user_parts(torch.as_tensor(nearest[found], device=device))
            for target, part in zip(starts, parts, strict=True):
                target[rows] = (shares[..., None].to(part.dtype) * part).sum(1)
    return starts


def fold_in(
    net: NCFNet,
    history: sp.csr_matrix,
    weights: np.ndarray,
    start: list[torch.Tensor],
    negatives: int,
    loss: str,
    seed: int,
    device: torch.device,
) -> list[torch.Tensor]:
    """User embeddings for unseen histories, every network weight frozen.

    Each history row gets its own embedding(s), started at ``start`` (``warm_start``) and
    moved by ``FOLD_IN_STEPS`` Adam steps on the training objective, with a weak L2 pull
    towards the start standing in for weight decay: its heard items (weighted by confidence)
    as positives against a fixed, seeded set of ``FOLD_IN_CANDIDATES`` candidate items (those
    it has not heard) as negatives, weighted so that each positive faces ``negatives``
    negatives as in training. Rows do not interact (Adam is element-wise), so a batch gives
    the same result as one history at a time, and the result depends only on the history,
    the trained model and the seed.
    """
    history = sp.csr_matrix(history)
    n_rows, n_items = history.shape
    rng = np.random.default_rng(seed)
    n_candidates = min(FOLD_IN_CANDIDATES, n_items)
    candidates = np.sort(rng.choice(n_items, n_candidates, replace=False))
    cand_t = torch.as_tensor(candidates, device=device)

    binary = history.copy()
    binary.data[:] = 1.0
    heard_candidates = np.asarray(binary[:, candidates].todense(), dtype=bool)
    n_pos = np.diff(history.indptr)
    n_neg = n_candidates - heard_candidates.sum(1)
    pos_rows, pos_items = positive_pairs(history)

    anchor = [p.detach() for p in start]
    params = [p.clone().requires_grad_(True) for p in anchor]
    frozen = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    net.eval()
    try:
        optimizer = torch.optim.Adam(params, lr=FOLD_IN_LEARNING_RATE)
        # Large steps first to travel from the mean user, then smaller ones to settle.
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(0.02, 1.0 - step / max(FOLD_IN_STEPS, 1))
        )
        pos_rows_t = torch.as_tensor(pos_rows, device=device)
        pos_items_t = torch.as_tensor(pos_items, device=device)
        neg_mask = torch.as_tensor(~heard_candidates, device=device, dtype=torch.float32)
        # Per-row normalisation: each row's loss is a mean over its (1 + negatives) * n_pos
        # terms, so short and long histories move at the same rate.
        pos_weight = torch.as_tensor(weights, device=device, dtype=torch.float32)
        row_weight = np.bincount(pos_rows, weights=weights, minlength=n_rows)
        norm = torch.as_tensor(
            np.maximum(row_weight + negatives * n_pos, 1e-6), device=device, dtype=torch.float32
        )
        neg_weight = torch.as_tensor(
            negatives * n_pos / np.maximum(n_neg, 1), device=device, dtype=torch.float32
        )
        for _ in range(FOLD_IN_STEPS):
            optimizer.zero_grad(set_to_none=True)
            pos_logits = net.pair_logits([p[pos_rows_t] for p in params], pos_items_t)
            cand_logits = net.block_logits(params, cand_t)
            if loss == "bpr":
                # Each positive against the row's unheard candidates, as BPR's triples.
                diff = pos_logits[:, None] - cand_logits[pos_rows_t]
                pair_loss = F.softplus(-diff) * neg_mask[pos_rows_t]
                per_pos = pair_loss.sum(1) / neg_mask[pos_rows_t].sum(1).clamp(min=1)
                per_pos = per_pos * pos_weight
                row_loss = torch.zeros(n_rows, device=device).index_add(0, pos_rows_t, per_pos)
                row_loss = row_loss * (1 + negatives) / norm
            else:
                pos_loss = F.softplus(-pos_logits) * pos_weight
                row_loss = torch.zeros(n_rows, device=device).index_add(0, pos_rows_t, pos_loss)
                neg_loss = (F.softplus(cand_logits) * neg_mask).sum(1) * neg_weight
                row_loss = (row_loss + neg_loss) / norm
            # The prior is the warm start (not zero), so an empty history stays there.
            penalty = (
                sum(((p - m) ** 2).sum(1) for p, m in zip(params, anchor, strict=True))
                * FOLD_IN_PRIOR
            )
            (row_loss + penalty).sum().backward()
            optimizer.step()
            schedule.step()
    finally:
        for p, flag in zip(net.parameters(), frozen, strict=True):
            p.requires_grad_(flag)
    return [p.detach() for p in params]

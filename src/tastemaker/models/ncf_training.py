"""Negative sampling, training loop and fold-in for neural collaborative filtering.

The model classes in ``tastemaker.models.ncf`` put these behind the common ``Recommender``
interface; this module and ``ncf_nets`` (the networks) hold the PyTorch parts:

- ``UnheardSampler``: uniform draws of items a user has *not* heard, exact and vectorised;
- ``train_epoch``: one pass over mini-batches with BCE or BPR loss;
- ``validation_ndcg``: NDCG@10 on an inner hold-out, for early stopping;
- ``fold_in``: user embeddings for unseen histories, items frozen.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from tastemaker.models.ncf_nets import NCFNet
from tastemaker.models.torch_common import resolve_device  # noqa: F401  (bench/ncf.py)
from tastemaker.models.validation import ndcg_at_k

# Fold-in: Adam steps, step size and the number of fixed candidate negatives per history.
FOLD_IN_STEPS = 60
FOLD_IN_LEARNING_RATE = 0.05
FOLD_IN_CANDIDATES = 2000
# Strength of the pull towards the warm start (per-row loss is a mean of BCE terms).
FOLD_IN_PRIOR = 1e-2
# Warm start: the nearest trained users by history cosine, weighted by cosine ** power.
WARM_START_USERS = 10
WARM_START_POWER = 4


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


class FoldInTargets(NamedTuple):
    """What fold-in's objective compares, on the device: the heard (row, item) pairs and
    their weights, the candidate negatives per row, and each row's normalisation."""

    n_rows: int
    pos_rows: torch.Tensor
    pos_items: torch.Tensor
    pos_weight: torch.Tensor
    candidates: torch.Tensor
    neg_mask: torch.Tensor  # rows x candidates: 1 where the row has not heard the candidate
    neg_weight: torch.Tensor
    norm: torch.Tensor


def fold_in_targets(
    history: sp.csr_matrix,
    weights: np.ndarray,
    negatives: int,
    seed: int,
    device: torch.device,
) -> FoldInTargets:
    """The seeded candidate set and the weights of ``fold_in``'s objective."""
    n_rows, n_items = history.shape
    rng = np.random.default_rng(seed)
    n_candidates = min(FOLD_IN_CANDIDATES, n_items)
    candidates = np.sort(rng.choice(n_items, n_candidates, replace=False))
    binary = history.copy()
    binary.data[:] = 1.0
    heard_candidates = np.asarray(binary[:, candidates].todense(), dtype=bool)
    n_pos = np.diff(history.indptr)
    n_neg = n_candidates - heard_candidates.sum(1)
    pos_rows, pos_items = positive_pairs(history)
    # Per-row normalisation: each row's loss is a mean over its (1 + negatives) * n_pos
    # terms, so short and long histories move at the same rate.
    row_weight = np.bincount(pos_rows, weights=weights, minlength=n_rows)

    def tensor(values: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.as_tensor(values, device=device, dtype=dtype)

    return FoldInTargets(
        n_rows=n_rows,
        pos_rows=tensor(pos_rows),
        pos_items=tensor(pos_items),
        pos_weight=tensor(weights, torch.float32),
        candidates=tensor(candidates),
        neg_mask=tensor(~heard_candidates, torch.float32),
        neg_weight=tensor(negatives * n_pos / np.maximum(n_neg, 1), torch.float32),
        norm=tensor(np.maximum(row_weight + negatives * n_pos, 1e-6), torch.float32),
    )


def fold_in_row_loss(
    net: NCFNet, params: list[torch.Tensor], t: FoldInTargets, loss: str, negatives: int
) -> torch.Tensor:
    """Each row's training loss (``bce`` or ``bpr``) at its current embedding(s)."""
    device = t.norm.device
    pos_logits = net.pair_logits([p[t.pos_rows] for p in params], t.pos_items)
    cand_logits = net.block_logits(params, t.candidates)
    if loss == "bpr":
        # Each positive against the row's unheard candidates, as BPR's triples.
        diff = pos_logits[:, None] - cand_logits[t.pos_rows]
        pair_loss = F.softplus(-diff) * t.neg_mask[t.pos_rows]
        per_pos = pair_loss.sum(1) / t.neg_mask[t.pos_rows].sum(1).clamp(min=1)
        per_pos = per_pos * t.pos_weight
        row_loss = torch.zeros(t.n_rows, device=device).index_add(0, t.pos_rows, per_pos)
        return row_loss * (1 + negatives) / t.norm
    pos_loss = F.softplus(-pos_logits) * t.pos_weight
    row_loss = torch.zeros(t.n_rows, device=device).index_add(0, t.pos_rows, pos_loss)
    neg_loss = (F.softplus(cand_logits) * t.neg_mask).sum(1) * t.neg_weight
    return (row_loss + neg_loss) / t.norm


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
    targets = fold_in_targets(sp.csr_matrix(history), weights, negatives, seed, device)
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
        for _ in range(FOLD_IN_STEPS):
            optimizer.zero_grad(set_to_none=True)
            row_loss = fold_in_row_loss(net, params, targets, loss, negatives)
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

"""The NCF networks: ``GMFNet``, ``MLPNet``, ``NeuMFNet`` (He et al., WWW 2017) and
``SeedNet`` (the original study's network: a dot product of two 5-dim embeddings fed through
2048 -> 1024 -> 512).

Every network scores pairs (``pair_logits``) for training and blocks of users against many
items (``block_logits``) for ranking; the block path splits the first MLP layer into a user
half and an item half, so only the layers after it run per (user, item) pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

# Block scoring materialises (users x items x first hidden layer) floats; keep a block near
# this many elements (64 MB of float32).
BLOCK_ELEMENTS = 1 << 24


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

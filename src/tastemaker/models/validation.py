"""Validation in the two senses models need.

- Inner hold-outs carved from training data, for models that stop early or learn a ranker.
  Models may not look at the evaluation split (and may not import ``tastemaker.evaluation``);
  NCF's early stopping and the hybrid's ranker use this inner hold-out of the training matrix.
- Checks of saved third-party model files before native code reads them: LightGBM's text
  format (``check_lightgbm_text``). Arrays are checked by ``artifacts.check_arrays`` against
  each model's ``_state_spec``.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from tastemaker.errors import ArtifactError

# A child process that parses a LightGBM text model and predicts with it; it may crash, the
# caller may not. It prints the number of features and trees.
_LIGHTGBM_CHILD = """
import sys
import numpy as np
import lightgbm as lgb
booster = lgb.Booster(model_str=open(sys.argv[1], encoding="utf-8").read())
n = booster.num_feature()
rows = np.vstack([np.zeros(n), np.full(n, np.nan), np.linspace(-1e3, 1e3, 8 * n).reshape(8, n)])
booster.predict(rows, num_threads=1)
print(n, booster.num_trees())
"""
LIGHTGBM_CHECK_SECONDS = 120
# Digests of texts that passed (the same bytes parse the same way): a reload of the same
# ranker does not pay for the child process again.
_checked_lightgbm: set[str] = set()
_checked_lock = threading.Lock()


def holdout_split(
    user_items: sp.csr_matrix, fraction: float = 0.2, min_items: int = 5, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each user with >= ``min_items`` items: ``round(fraction * n)`` go to validation.

    Returns ``(train, valid)`` with the shape of ``user_items``; train keeps the play counts,
    valid is binary. Vectorised: one random key per non-zero, ranked within its row.
    """
    m = sp.csr_matrix(user_items)
    rng = np.random.default_rng(seed)
    lengths = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), lengths)
    keys = rng.random(m.nnz)
    order = np.lexsort((keys, rows))  # within each row, a random permutation
    rank = np.empty(m.nnz, np.int64)
    rank[order] = np.arange(m.nnz) - np.repeat(m.indptr[:-1], lengths)
    n_valid = np.where(lengths >= min_items, np.round(fraction * lengths).astype(np.int64), 0)
    is_valid = rank < n_valid[rows]
    coo = m.tocoo()
    train = sp.csr_matrix(
        (coo.data[~is_valid], (coo.row[~is_valid], coo.col[~is_valid])), shape=m.shape
    )
    valid = sp.csr_matrix(
        (np.ones(is_valid.sum(), np.float32), (coo.row[is_valid], coo.col[is_valid])),
        shape=m.shape,
    )
    return train, valid


def holdout_some_users(
    matrix: sp.csr_matrix,
    fraction: float,
    max_users: int,
    seed: int,
    rng: np.random.Generator,
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """``holdout_split`` for at most ``max_users`` users (with >= 5 items, drawn with ``rng``):
    (inner train, validation, those users). Only they lose items, so early stopping spends
    little training signal."""
    inner, valid = holdout_split(matrix, fraction, 5, seed=seed)
    candidates = np.flatnonzero(np.diff(valid.indptr) > 0)
    chosen = np.sort(rng.permutation(candidates)[:max_users])
    keep = np.zeros(matrix.shape[0], np.float32)
    keep[chosen] = 1.0
    chosen_rows = sp.diags(keep)
    inner = sp.csr_matrix(chosen_rows @ inner + sp.diags(1.0 - keep) @ matrix)
    inner.eliminate_zeros()
    valid = sp.csr_matrix(chosen_rows @ valid)
    valid.eliminate_zeros()
    return inner, valid, chosen


def ndcg_at_k(ranked: np.ndarray, relevant: sp.csr_matrix, k: int = 10) -> float:
    """Mean NDCG@k (binary relevance) over rows with at least one relevant item.

    ``ranked`` is ``(rows, >=k)`` item indices (``-1`` for padding), row i ranked for
    ``relevant`` row i.
    """
    relevant = sp.csr_matrix(relevant)
    n_relevant = np.diff(relevant.indptr)
    keep = n_relevant > 0
    if not keep.any():
        return 0.0
    top = ranked[:, :k]
    hits = np.zeros(top.shape, dtype=bool)
    for i in np.flatnonzero(keep):
        hits[i] = np.isin(top[i], relevant.indices[relevant.indptr[i] : relevant.indptr[i + 1]])
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return float((dcg[keep] / ideal[keep]).mean())


# -- LightGBM text models ------------------------------------------------------------------------
def check_lightgbm_text(path: Path, n_features: int) -> str:
    """The text of a LightGBM model file, once it is known not to crash LightGBM.

    LightGBM trusts its text format: a truncated file or a bad child index aborts the whole
    process (it parses trees in OpenMP threads, where an error terminates) or reads out of
    bounds when predicting. So the text is first checked here (every tree a proper binary
    tree over ``n_features`` features, finite values, no categorical or linear trees, which
    tastemaker never trains), then parsed and used in a child process; only then may the
    caller load it. ArtifactError naming the file otherwise.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: cannot read the ranker ({exc})") from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    with _checked_lock:
        if digest in _checked_lightgbm:
            return text
    n_trees = _check_lightgbm_structure(text, n_features, path)
    _parse_in_child(path, n_features, n_trees)
    with _checked_lock:
        _checked_lightgbm.add(digest)
    return text


def _check_lightgbm_structure(text: str, n_features: int, path: Path) -> int:
    blocks = text.split("\nTree=")
    header = _fields(blocks[0], path)
    if blocks[0].split("\n", 1)[0].strip() != "tree":
        raise ArtifactError(f"{path}: not a LightGBM text model")
    if "end of trees" not in text:
        raise ArtifactError(f"{path}: truncated LightGBM model (no 'end of trees')")
    max_feature = _int(header, "max_feature_idx", path)
    names = header.get("feature_names", "").split()
    if max_feature + 1 != n_features or len(names) != n_features:
        raise ArtifactError(
            f"{path}: the ranker uses {max_feature + 1} features; the model has {n_features}"
        )
    if _int(header, "num_class", path) != 1 or _int(header, "num_tree_per_iteration", path) != 1:
        raise ArtifactError(f"{path}: not a ranking model (one tree per iteration)")
    trees = blocks[1:]
    sizes = header.get("tree_sizes", "").split()
    if len(sizes) != len(trees):
        raise ArtifactError(
            f"{path}: tree_sizes lists {len(sizes)} trees; the file has {len(trees)}"
        )
    for number, block in enumerate(trees):
        _check_tree(
            _fields(block.split("end of trees")[0], path), n_features, f"{path}: tree {number}"
        )
    return len(trees)


def _fields(block: str, path: Path) -> dict[str, str]:
    fields = {}
    for line in block.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _int(fields: dict[str, str], key: str, where: Path | str) -> int:
    try:
        return int(fields[key])
    except (KeyError, ValueError):
        raise ArtifactError(f"{where}: {key} missing or not an integer") from None


def _numbers(
    fields: dict[str, str], key: str, count: int, kind: type, where: str, finite: bool = True
) -> list:
    values = fields.get(key, "").split()
    if len(values) != count:
        raise ArtifactError(f"{where}: {key} has {len(values)} values; expected {count}")
    try:
        numbers = [kind(v) for v in values]
    except ValueError:
        raise ArtifactError(f"{where}: {key} holds a value that is not a number") from None
    if kind is float and any(math.isnan(v) or (finite and math.isinf(v)) for v in numbers):
        raise ArtifactError(f"{where}: {key} holds NaN or infinite values")
    return numbers


def _check_tree(fields: dict[str, str], n_features: int, where: str) -> None:
    leaves = _int(fields, "num_leaves", where)
    if leaves < 1:
        raise ArtifactError(f"{where}: num_leaves must be at least 1")
    if fields.get("num_cat", "0") != "0" or fields.get("is_linear", "0") != "0":
        raise ArtifactError(f"{where}: categorical or linear trees are not supported")
    _numbers(fields, "leaf_value", leaves, float, where)
    _numbers(fields, "shrinkage", 1, float, where)
    if leaves == 1:
        return
    internal = leaves - 1
    features = _numbers(fields, "split_feature", internal, int, where)
    _numbers(fields, "threshold", internal, float, where, finite=False)  # inf: "all go left"
    decisions = _numbers(fields, "decision_type", internal, int, where)
    left = _numbers(fields, "left_child", internal, int, where)
    right = _numbers(fields, "right_child", internal, int, where)
    if any(not 0 <= f < n_features for f in features):
        raise ArtifactError(f"{where}: split_feature names a feature outside 0..{n_features - 1}")
    if any(not 0 <= d < 256 or d & 1 for d in decisions):
        raise ArtifactError(f"{where}: decision_type holds a categorical or invalid split")
    # A proper binary tree: node 0 the root, every other node and every leaf the child of
    # exactly one node, each node's children deeper (no cycle for prediction to loop in).
    children = left + right
    nodes = [c for c in children if c >= 0]
    leaves_reached = [~c for c in children if c < 0]
    if (
        sorted(nodes) != list(range(1, internal))
        or sorted(leaves_reached) != list(range(leaves))
        or any(0 <= c <= parent for parent, c in enumerate(left) if c >= 0)
        or any(0 <= c <= parent for parent, c in enumerate(right) if c >= 0)
    ):
        raise ArtifactError(f"{where}: left_child / right_child do not form a binary tree")


def _parse_in_child(path: Path, n_features: int, n_trees: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LIGHTGBM_CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=LIGHTGBM_CHECK_SECONDS,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise ArtifactError(
            f"{path}: LightGBM did not finish reading the ranker in {LIGHTGBM_CHECK_SECONDS} s"
        ) from None
    if done.returncode != 0:
        how = (
            f"crashed (signal {-done.returncode})"
            if done.returncode < 0
            else "refused it: " + (done.stderr.strip().splitlines() or ["?"])[-1][:200]
        )
        raise ArtifactError(f"{path}: LightGBM cannot read the ranker; a check process {how}")
    if done.stdout.split() != [str(n_features), str(n_trees)]:
        raise ArtifactError(f"{path}: LightGBM reads the ranker differently than its text says")

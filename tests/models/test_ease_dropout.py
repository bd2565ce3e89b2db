"""EASE's ``dropout`` option (Steck 2020's emphasised denoising, EDLAE): the closed form with
the diagonal penalty ``lambda + p / (1 - p) * G_jj``, checked against a direct NumPy solve; the
contract with the option on; and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tastemaker.errors import UsageError
from tastemaker.models import create_model
from tastemaker.testing import check_model, clusters


def edlae_weights(x: np.ndarray, regularization: float, p: float) -> np.ndarray:
    """Steck's closed form, written out: B = I - P dMat(1 / diag P), P = (G + Lambda)^-1."""
    gram = x.T @ x
    penalty = regularization + p / (1 - p) * np.diag(gram)
    inverse = np.linalg.inv(gram + np.diag(penalty))
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9])
def test_the_weights_are_the_emphasised_denoising_closed_form(p):
    data = clusters(seed=3, n_users=80)
    model = create_model("ease", regularization=5.0, min_listeners=1, dropout=p).fit(data)
    x = (data.user_items > 0).astype(np.float64).toarray()
    expected = edlae_weights(x, 5.0, p)
    np.testing.assert_allclose(model.weights_, expected, rtol=2e-3, atol=2e-5)


def test_dropout_changes_the_ranking_towards_less_identity():
    """A larger drop probability penalises each item's own column by its listeners: the weights
    shrink, and the lists differ from plain EASE's."""
    data = clusters(seed=4, n_users=80)
    plain = create_model("ease", regularization=5.0, min_listeners=1).fit(data)
    dropped = create_model("ease", regularization=5.0, min_listeners=1, dropout=0.8).fit(data)
    assert np.abs(dropped.weights_).sum() < np.abs(plain.weights_).sum()
    users = np.arange(data.n_users)
    assert (dropped.recommend(users, 5)[0] != plain.recommend(users, 5)[0]).any()


def test_the_contract_holds_with_dropout():
    check_model(lambda: create_model("ease", regularization=5.0, min_listeners=1, dropout=0.7))


@pytest.mark.parametrize("p", [1.0, -0.1])
def test_a_drop_probability_outside_0_1_is_refused(p):
    with pytest.raises(UsageError, match="dropout"):
        create_model("ease", dropout=p).fit(clusters())


def test_dropout_with_the_sparse_solver_is_refused_in_one_line():
    with pytest.raises(UsageError, match="dropout needs the exact solver") as caught:
        create_model("ease", min_listeners=1, dropout=0.5, solver="sparse").fit(clusters())
    assert "\n" not in str(caught.value)

"""Hyperparameters the scikit-learn way, for every registered model (neural ones included:
nothing here trains): ``get_params`` round-trips through the constructor, ``clone`` copies a
model unfitted, ``set_params`` validates against the declared rules and changes nothing when
it refuses, and every default passes its own rules."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.data.interactions import Interactions
from tastemaker.errors import UsageError
from tastemaker.models import available_models, create_model, model_class
from tastemaker.models.base import Recommender, clone
from tastemaker.models.params import Param, at_least, between, one_of, positive

NAMES = available_models()


def breaking_value(rule: Param):
    """A value the rule refuses."""
    if rule.choices is not None:
        return "no-such-choice"
    if rule.widths:
        return ()
    if rule.low is not None:
        return rule.low if rule.low_open else rule.low - 1
    assert rule.high is not None
    return rule.high if rule.high_open else rule.high + 1


@pytest.mark.parametrize("name", NAMES)
def test_get_params_round_trips_through_the_constructor(name):
    model = create_model(name)
    params = model.get_params()
    assert set(params) == set(model.param_names())
    assert type(model)(**params).get_params() == params


@pytest.mark.parametrize("name", NAMES)
def test_the_defaults_pass_their_own_rules(name):
    create_model(name).validate_params()


@pytest.mark.parametrize("name", NAMES)
def test_every_rule_names_a_parameter(name):
    cls = model_class(name)
    assert set(cls.rules()) <= set(cls.param_names()), set(cls.rules()) - set(cls.param_names())


@pytest.mark.parametrize("name", NAMES)
def test_clone_has_equal_params_and_shares_no_value(name):
    model = create_model(name)
    copy = clone(model)
    assert copy is not model and type(copy) is type(model)
    assert copy.get_params() == model.get_params()
    for key, value in model.get_params().items():
        if isinstance(value, dict | list):
            assert copy.get_params()[key] is not value, key


@pytest.mark.parametrize("name", [n for n in NAMES if model_class(n).rules()])
def test_set_params_refuses_what_a_rule_refuses_and_changes_nothing(name):
    model = create_model(name)
    rules = model.rules()
    before = model.get_params()
    for param, rule in rules.items():
        with pytest.raises(UsageError, match=param):
            model.set_params(**{param: breaking_value(rule)})
        assert model.get_params() == before, param


@pytest.mark.parametrize("name", NAMES)
def test_set_params_changes_a_value_and_returns_the_model(name):
    model = create_model(name)
    names = model.param_names()
    if not names:
        assert model.set_params() is model
        return
    param = names[0]
    value = model.get_params()[param]
    assert model.set_params(**{param: value}) is model
    assert model.get_params()[param] == value
    with pytest.raises(UsageError, match="no parameter"):
        model.set_params(no_such_parameter=1)


def test_set_params_stores_a_value_as_the_constructor_does():
    model = create_model("als").set_params(factors=12, regularization=0.5)
    assert (model.factors, model.regularization) == (12, 0.5)
    pytest.importorskip("torch")
    mlp = create_model("mlp").set_params(layers=[8, 4])
    assert mlp.get_params()["layers"] == (8, 4)  # a JSON list becomes the declared tuple


def _data() -> Interactions:
    coo = sp.random(30, 20, density=0.3, random_state=0, format="coo")
    return Interactions.from_arrays(
        [f"u{r}" for r in coo.row], [f"i{c}" for c in coo.col], np.ceil(coo.data * 9)
    )


def test_clone_of_a_fitted_model_is_unfitted():
    model = create_model("als", factors=4, iterations=2).fit(_data())
    copy = clone(model)
    assert hasattr(model, "user_factors_")
    assert not hasattr(copy, "user_factors_") and not hasattr(copy, "user_items_")
    with pytest.raises(UsageError, match="not fitted"):
        copy.recommend(np.arange(2))
    assert copy.get_params() == model.get_params()


def test_fit_validates_a_value_set_as_an_attribute():
    model = create_model("itemknn")
    model.neighbours = 0  # bypassing set_params: fit still checks
    with pytest.raises(UsageError, match="neighbours must be >= 1, not 0"):
        model.fit(_data())


def test_rules_read_as_a_person_would():
    assert positive().describe() == "> 0"
    assert at_least(1).describe() == ">= 1"
    assert between(0, 1, high_open=True).describe() == "in [0, 1)"
    with pytest.raises(UsageError, match="m: x must be > 0, not 'a'"):
        positive().check("m", "x", "a")
    with pytest.raises(UsageError, match="must be an integer >= 1, not 2.5"):
        positive(integer=True).check("m", "x", 2.5)
    with pytest.raises(UsageError, match="choose one of: a, b"):
        one_of("a", "b").check("m", "x", "c")
    with pytest.raises(UsageError, match="not True"):
        positive().check("m", "x", True)  # a bool is not a number here
    positive().check("m", "x", np.float32(0.5))


def test_capabilities_are_declared_by_the_models():
    assert model_class("popularity").personalised is False
    personal = [n for n in NAMES if n != "popularity"]
    assert all(model_class(n).personalised for n in personal)
    assert all(model_class(n).fold_in for n in NAMES)
    assert Recommender.personalised and Recommender.fold_in

"""Property-based API test: schemathesis generates requests from the app's own OpenAPI spec
(in-process over ASGI) and checks that nothing answers 5xx and every answer fits its schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tastemaker.data.synth import synthetic_interactions
from tastemaker.models import create_model
from tastemaker.serving import ServeSettings, create_app, load_bundle

MAX_EXAMPLES = 40
# An admin token puts the reload route in the spec; generated requests lack it (401).
ADMIN_TOKEN = "schemathesis-token-0123456789abcdef"


def _settings(model_dir: Path) -> ServeSettings:
    return ServeSettings(model_dir=model_dir, admin_token=ADMIN_TOKEN)


# The spec comes from the routes' declarations alone: the app is built without a model (it
# would load one at startup), so collecting this file trains nothing. schemathesis' own
# fixture loader does not work with pytest 9, hence the spec as a dict and the app per call.
schema = schemathesis.openapi.from_dict(create_app(_settings(Path("unused"))).openapi())


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The service over a small ALS model, trained when the test runs."""
    interactions = synthetic_interactions(users=120, artists=200, listens=8_000, seed=1)
    model = create_model("als", factors=8, iterations=3, seed=0).fit(interactions)
    directory = model.save(tmp_path_factory.mktemp("schemathesis") / "model")
    config = _settings(directory)
    return create_app(config, load_bundle(directory, config))


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_never_fails_and_matches_its_spec(app, case):
    case.call_and_validate(
        app=app,
        base_url="http://localhost",
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )

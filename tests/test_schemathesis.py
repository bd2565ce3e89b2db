"""Property-based API test: schemathesis generates requests from the app's own OpenAPI spec
(in-process over ASGI) and checks that nothing answers 5xx and every answer fits its schema."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

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


def build_app():
    # Built at import: schemathesis' fixture-based loader does not work with pytest 9.
    root = Path(tempfile.mkdtemp(prefix="tastemaker-schemathesis-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    interactions = synthetic_interactions(users=120, artists=200, listens=8_000, seed=1)
    model = create_model("als", factors=8, iterations=3, seed=0).fit(interactions)
    directory = model.save(root / "model")
    # An admin token puts the reload route in the spec; generated requests lack it (401).
    config = ServeSettings(model_dir=directory, admin_token="schemathesis-token-0123456789abcdef")
    return create_app(config, load_bundle(directory, config))


schema = schemathesis.openapi.from_asgi("/openapi.json", build_app())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_never_fails_and_matches_its_spec(case):
    case.call_and_validate(
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance]
    )

"""Fuzz: schemathesis generates requests from the committed ``openapi.json`` and sends them to the local stack.

Every documented operation is exercised (none is excluded: the open ones, ``GET /``, ``GET /assets/{name}``,
``GET /openapi.json`` and ``GET /health``, are fuzzed too; Swagger UI's page and assets are not in the document),
always with a brand-new tenant's key in ``x-api-key``, with data that fits the schema and data that does not
(schemathesis' examples, coverage and fuzzing phases, positive and negative modes). Each answer must be no 5xx, a
documented status code, a documented content type, documented headers, and a body that fits the documented schema.

Bounded and reproducible: a fixed seed, derandomized Hypothesis, at most ``MAX_EXAMPLES`` cases per operation in the
fuzzing phase (the coverage phase adds the schema's boundary cases), no example database written to disk.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import ROOT, Client

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 40

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 6,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        # Methods a route does not declare are sent too, but only those API Gateway REST APIs route (and the local
        # gateway emulates): TRACE and QUERY never reach a REST API's integration, and http.server answers them 501.
        "phases": {"coverage": {"unexpected-methods": ["get", "put", "post", "delete", "options", "patch"]}},
    }
)

schema = schemathesis.openapi.from_path(ROOT / "openapi.json", config=CONFIG)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_every_documented_operation_is_fuzzed() -> None:
    # Given the committed document, When schemathesis reads it, Then every operation in it is generated for
    operations = [result.ok() for result in schema.get_all_operations()]

    documented = {(method.upper(), path) for path, item in schema.raw_schema["paths"].items() for method in item}
    assert {(op.method.upper(), op.path) for op in operations} == documented
    assert len(documented) >= 18


@schema.parametrize()
# The tenant is made once per operation and shared by its examples on purpose: it only holds the key.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
def test_every_operation_answers_within_its_contract(case: schemathesis.Case, tenant: Client) -> None:
    # Given any request the schema describes (or nearly describes), sent with a valid tenant's key
    # When it reaches the local stack
    # Then the answer is never a 5xx, and its status code, content type, headers and body are the documented ones
    case.call_and_validate(base_url=tenant.base, headers={"x-api-key": tenant.key}, checks=CHECKS, timeout=30)

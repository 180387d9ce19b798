"""Fuzz: schemathesis generates requests from the committed ``openapi.json`` and sends them to the local stack.

Every documented operation is exercised (none is excluded: the open ones, ``GET /``, ``GET /assets/{name}``,
``GET /openapi.json`` and ``GET /health``, are fuzzed too; Swagger UI's page and assets are not in the document),
always with a brand-new tenant's key in ``x-api-key``, with data that fits the schema and data that does not
(schemathesis' examples, coverage and fuzzing phases, positive and negative modes). Each answer must be no 5xx, a
documented status code, a documented content type, documented headers, and a body that fits the documented schema.

Every check schemathesis has (``--checks all``: conformance of status, content type, headers and body; positive data
accepted and negative data refused; undeclared methods answered 405 with ``Allow``; missing headers; auth; resources
after delete...). Refusals of rules no schema can state are accepted, narrowly: ``GET /jobs``'s and
``GET /schedules``' opaque ``cursor``, a cron expression whose days never come (``0 0 31 2 *``), batch-import
items sharing an ``id``, a ``runAt`` more than a year ahead (a bound that moves with the clock), an AI ``model``
the deployment does not allow (deploy-time configuration), an image ``key`` outside the caller's own
``uploads/<tenant>/`` (the caller is not in the document) and ``dependsOn`` ids that name no job of the tenant.
A case whose only invalid part is its headers, on an operation that documents none, is not held to "negative data
refused": this test replaces them with a valid key.
A body over 5 MiB whose Lambda event reaches 6 MB may get API Gateway's own 500 (documented in docs/api.md).

Bounded and reproducible: a random seed each run, printed (``FUZZ_SEED=<seed>`` repeats it), at most
``MAX_EXAMPLES`` cases per operation in the fuzzing phase (the coverage phase adds the schema's boundary cases), no
example database written to disk.
"""

from __future__ import annotations

import os
import random
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks, not_a_server_error
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    status_code_conformance,
)

from functions.logic.schedules_cron import NEVER_RUNS
from tests.e2e.conftest import ROOT, Client

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 15
SEED = int(os.environ.get("FUZZ_SEED") or random.randrange(2**31))
# Printed past pytest's capture, so that a failing run says how to repeat it.
sys.__stderr__.write(f"\nschemathesis seed: {SEED} (FUZZ_SEED={SEED} repeats this run)\n")

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        # Every check: what `--checks all` runs.
        "checks": {
            "enabled": True,
            # Refusing a body that is too large (413, documented on each route that takes one) is a refusal too.
            "negative_data_rejection": {"expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]},
        },
        # Methods a route does not declare are sent too, but only those API Gateway REST APIs route (and the local
        # gateway emulates): TRACE and QUERY never reach a REST API's integration.
        "phases": {"coverage": {"unexpected-methods": ["get", "put", "post", "delete", "options", "patch"]}},
    }
)

schema = schemathesis.openapi.from_path(ROOT / "openapi.json", config=CONFIG)


def test_every_check_schemathesis_has_is_enabled() -> None:
    # Given every check schemathesis registers, When the run's configuration is read, Then each one is enabled
    load_all_checks()
    config = schema.config.checks_config_for(operation=None, phase=None)
    for name in CHECKS.get_all_names():
        assert getattr(config, name).enabled, name


def test_every_documented_operation_is_fuzzed() -> None:
    # Given the committed document, When schemathesis reads it, Then every operation in it is generated for
    operations = [result.ok() for result in schema.get_all_operations()]

    documented = {(method.upper(), path) for path, item in schema.raw_schema["paths"].items() for method in item}
    assert {(op.method.upper(), op.path) for op in operations} == documented
    assert len(documented) >= 18


@schema.parametrize()
# The tenant is made once per operation and shared by its examples on purpose: it only holds the key.
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_every_operation_answers_within_its_contract(case: schemathesis.Case, tenant: Client) -> None:
    # Given any request the schema describes (or nearly describes), sent with a valid tenant's key
    # When it reaches the local stack
    # Then every check holds: no 5xx, the documented status, content type, headers and body, valid data accepted,
    # invalid data refused, undeclared methods 405 with Allow
    response = case.call(base_url=tenant.base, headers={"x-api-key": tenant.key}, timeout=30)
    # The exceptions, each a rule JSON Schema cannot state: an opaque cursor (no schema can tell a good one),
    # batch-import's ids being unique (uniqueItems compares whole items, not one property of them), and a runAt at
    # most a year ahead (the bound moves with the clock; a document is static), the deployment's allowed AI models
    # (deploy-time configuration) and an upload key under the caller's own prefix (the document names no caller).
    refused_for_what_no_schema_says = (
        _opaque_cursor_refused(case, response)
        or _only_refused_for(response, "(ids must be unique)")
        or _only_refused_for(response, "is not allowed in this deployment")
        or _only_refused_for(response, "not your upload: the key must be under uploads/")
        or _run_at_too_far_refused(case, response)
        or _unknown_dependencies_refused(case, response)
        or _cron_that_never_runs_refused(response)
    )
    excluded = [positive_data_acceptance] if refused_for_what_no_schema_says else []
    if _only_the_replaced_key_was_negative(case):
        excluded.append(negative_data_rejection)
    if _refused_by_lambdas_invoke_limit(response):
        excluded.extend([not_a_server_error, status_code_conformance])
    case.validate_response(response, excluded_checks=excluded, headers={"x-api-key": tenant.key})


def _opaque_cursor_refused(case: schemathesis.Case, response: Any) -> bool:
    """GET /jobs refused this request for its ``cursor`` (which no schema can check) and for nothing else."""
    if (case.method.upper(), case.path) not in {("GET", "/jobs"), ("GET", "/schedules")}:
        return False
    if "cursor" not in (case.query or {}):
        return False
    if response.status_code != 400 or response.json().get("code") != "INVALID_QUERY":
        return False
    return "cursor" in response.json().get("error", "")


def _cron_that_never_runs_refused(response: Any) -> bool:
    """A cron expression of the document's grammar whose days never come (``0 0 31 2 *``): a calendar rule."""
    if response.status_code != 400 or response.json().get("code") != "INVALID_SCHEDULE":
        return False
    return NEVER_RUNS in response.json().get("error", "")


def _refused_by_lambdas_invoke_limit(response: Any) -> bool:
    """A body over the API's 5 MiB whose Lambda event reaches 6 MB: API Gateway answers its own 500 (``UNAVAILABLE``,
    docs/api.md), as the local gateway does; the handler, which would say 413, is never invoked."""
    body = response.request.body or b""
    if response.status_code != 500 or len(body) <= 5 * 1024 * 1024:
        return False
    try:
        return response.json().get("code") == "UNAVAILABLE"
    except ValueError:
        return False


def _only_the_replaced_key_was_negative(case: schemathesis.Case) -> bool:
    """The case's invalid part is only its headers (a missing or odd ``x-api-key``) and the operation documents no
    header: this test sends the tenant's valid key in their place, so the request on the wire is valid."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return False
    negative = {location for location, info in meta.components.items() if info.mode.is_negative}
    item = schema.raw_schema["paths"].get(case.path, {})
    parameters = [*item.get("parameters", []), *item.get(case.method.lower(), {}).get("parameters", [])]
    documents_a_header = any(parameter.get("in") == "header" for parameter in parameters)
    return negative == {ParameterLocation.HEADER} and not documents_a_header


def _only_refused_for(response: Any, reason: str) -> bool:
    """A payload (of the job, of a batch's spec or its onComplete) refused only for ``reason``, in each detail."""
    if response.status_code != 400 or response.json().get("code") != "INVALID_PAYLOAD":
        return False
    details = response.json().get("details")
    if isinstance(details, dict):  # a batch's spec: {at, index, details}
        details = details.get("details")
    if not isinstance(details, list) or not details:
        return False
    return all(isinstance(detail, dict) and reason in str(detail.get("message", "")) for detail in details)


def _unknown_dependencies_refused(case: schemathesis.Case, response: Any) -> bool:
    """POST /jobs refused only because ``dependsOn`` names jobs the (brand-new) tenant does not have: whether a job
    exists is no schema's to say."""
    if response.status_code != 400 or response.json().get("code") != "INVALID_OPTION":
        return False
    details = response.json().get("details")
    named = case.body.get("dependsOn") if isinstance(case.body, dict) else None
    if not isinstance(details, dict) or details.get("field") != "dependsOn" or not isinstance(named, list):
        return False
    unknown = details.get("unknownIds")
    return isinstance(unknown, list) and bool(unknown) and set(unknown) <= set(named)


def _run_at_too_far_refused(case: schemathesis.Case, response: Any) -> bool:
    """Refused for a ``runAt`` (of the job or of a batch's spec) that is more than a year ahead, and it is."""
    if response.status_code != 400 or response.json().get("code") != "INVALID_OPTION":
        return False
    if "'runAt' must be" not in response.json().get("error", ""):
        return False
    body = case.body if isinstance(case.body, dict) else {}
    specs = [body, body.get("onComplete"), *(body.get("jobs") or [])]
    year_ahead = datetime.now(UTC) + timedelta(days=365)
    for spec in specs:
        try:
            if isinstance(spec, dict) and datetime.fromisoformat(spec["runAt"]) > year_ahead:
                return True
        except (KeyError, TypeError, ValueError):
            continue
    return False

"""The OpenAPI document: generated from the routes, committed as openapi.json, complete (routes, bodies, codes)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from functions.handlers import openapi as doc
from functions.handlers.api import app, openapi_json
from functions.logic.batches import BATCH_FIELDS, MAX_BATCH_JOBS
from functions.logic.enqueue import ENQUEUE_FIELDS
from functions.logic.job_types import get_job_type, registered_types
from functions.logic.uploads import UPLOAD_TYPES
from functions.models import errors, responses
from functions.models.job import JobStatus

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")
# Routes outside the document: Swagger UI's page and its assets.
# Swagger UI; and the generic webhook path, documented as one path per job type (/hooks/message, ...).
UNDOCUMENTED = {("GET", "/swagger"), ("GET", "/assets/swagger/{name}"), ("POST", "/hooks/{type}")}
OPEN = {("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/"), ("GET", "/assets/{name}")}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return dict(json.loads(openapi_json()))


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def app_routes() -> set[tuple[str, str]]:
    routes = set()
    for route in app._static_routes + app._dynamic_routes:
        path = re.sub(r"<(\w+)>", r"{\1}", route.path) or "/"
        routes.add((route.method, path))
    return routes


def documented_codes(operation: dict[str, Any]) -> dict[str, int]:
    """Error code -> status, from the examples of each error response (and checked against its description)."""
    codes = {}
    for status, response in operation["responses"].items():
        if int(status) < 400:
            continue
        content = response["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/Error"}
        for code, example in content["examples"].items():
            assert example["value"]["code"] == code
            assert f"`{code}`" in response["description"]
            codes[code] = int(status)
    return codes


def test_the_committed_openapi_json_is_the_one_the_code_generates() -> None:
    # Given the committed document and the one generated from the routes now
    committed = COMMITTED.read_text(encoding="utf-8")

    # Then they are the same, byte for byte (regenerate with: python scripts/export_openapi.py)
    assert committed == openapi_json() + "\n", "openapi.json is out of date: run python scripts/export_openapi.py"


def test_every_route_is_documented(spec: dict[str, Any]) -> None:
    # Then every route of the function is in the document, and nothing else is
    assert set(operations(spec)) == app_routes() - UNDOCUMENTED
    # And each has its own operation id, a summary and a tag
    ids = [operation["operationId"] for operation in operations(spec).values()]
    assert len(ids) == len(set(ids))
    for route, operation in operations(spec).items():
        assert operation["summary"] and operation["tags"], route


def test_every_error_code_the_api_answers_is_documented(spec: dict[str, Any]) -> None:
    # Given every code the function and the gateway answer with (but the internal 500 and the gateway's catch-alls)
    # (METHOD_NOT_ALLOWED answers a method an operation does not declare: the document's description says so)
    api_codes = {cls.code for cls in _subclasses(errors.ApiError)} - {"METHOD_NOT_ALLOWED"}

    # When the codes of all operations are collected
    documented: dict[str, int] = {}
    for operation in operations(spec).values():
        documented.update(documented_codes(operation))

    # Then each is documented, with its status
    assert set(documented) == api_codes
    for cls in _subclasses(errors.ApiError):
        if cls.code in documented:
            assert documented[cls.code] == cls.status_code, cls.code
    assert (documented["CONFLICT"], documented["UNAVAILABLE"], documented["THROTTLED"]) == (409, 503, 429)
    assert documented["RATE_LIMITED"] == 429
    assert "405 METHOD_NOT_ALLOWED" in spec["info"]["description"]


@pytest.mark.parametrize(
    ("route", "codes"),
    [
        (
            ("POST", "/jobs"),
            {
                "INVALID_BODY",
                "INVALID_TYPE",
                "INVALID_PAYLOAD",
                "INVALID_OPTION",
                "IDEMPOTENCY_CONFLICT",
                "PAYLOAD_TOO_LARGE",
            },
        ),
        (("POST", "/enqueue"), {"INVALID_BODY", "INVALID_MESSAGE", "PAYLOAD_TOO_LARGE"}),
        (
            ("POST", "/hooks/message"),
            {
                "INVALID_BODY",
                "INVALID_PAYLOAD",
                "INVALID_QUERY",
                "INVALID_SIGNATURE",
                "PAYLOAD_TOO_LARGE",
            },
        ),
        (("GET", "/jobs"), {"INVALID_QUERY"}),
        (
            ("POST", "/jobs/batch"),
            {
                "INVALID_BODY",
                "INVALID_TYPE",
                "INVALID_PAYLOAD",
                "INVALID_OPTION",
                "IDEMPOTENCY_CONFLICT",
                "PAYLOAD_TOO_LARGE",
            },
        ),
        (("GET", "/batches/{batch_id}"), {"NOT_FOUND"}),
        (("GET", "/jobs/{job_id}"), {"NOT_FOUND", "INVALID_QUERY"}),
        (("GET", "/jobs/{job_id}/result"), {"NOT_FOUND", "INVALID_STATE", "INVALID_QUERY"}),
        (("DELETE", "/jobs/{job_id}"), {"NOT_FOUND", "INVALID_STATE", "CONFLICT"}),
        (("POST", "/jobs/{job_id}/retry"), {"NOT_FOUND", "INVALID_STATE", "CONFLICT"}),
        (("POST", "/uploads"), {"INVALID_BODY", "INVALID_UPLOAD", "PAYLOAD_TOO_LARGE"}),
        (("GET", "/stats"), set()),
        (("GET", "/stats/throughput"), {"INVALID_QUERY"}),
        (("GET", "/types"), set()),
        (
            ("POST", "/schedules"),
            {
                "INVALID_BODY",
                "INVALID_TYPE",
                "INVALID_PAYLOAD",
                "INVALID_OPTION",
                "INVALID_SCHEDULE",
                "SCHEDULE_EXISTS",
                "PAYLOAD_TOO_LARGE",
            },
        ),
        (("GET", "/schedules"), {"INVALID_QUERY"}),
        (("GET", "/schedules/preview"), {"INVALID_SCHEDULE", "INVALID_QUERY"}),
        (("GET", "/schedules/{schedule_id}"), {"NOT_FOUND"}),
        (("DELETE", "/schedules/{schedule_id}"), {"NOT_FOUND", "CONFLICT"}),
        (("POST", "/schedules/{schedule_id}/run"), {"NOT_FOUND", "INVALID_TYPE", "INVALID_PAYLOAD", "INVALID_OPTION"}),
    ],
)
def test_each_keyed_route_lists_its_codes_and_the_key_codes(
    spec: dict[str, Any], route: tuple[str, str], codes: set[str]
) -> None:
    operation = operations(spec)[route]

    assert set(documented_codes(operation)) == codes | {"FORBIDDEN", "RATE_LIMITED", "THROTTLED", "UNAVAILABLE"}
    # And it needs the key (the document's default security)
    assert "security" not in operation


def test_only_health_the_document_and_the_dashboard_need_no_key(spec: dict[str, Any]) -> None:
    # Then the document's default is the x-api-key header
    assert spec["security"] == [{"apiKey": []}]
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "The tenant's API key (`jobs keys create`).",
    }
    # And exactly the open routes override it with "no requirement"
    assert {route for route, op in operations(spec).items() if op.get("security") == [{}]} == OPEN
    for route in OPEN:
        assert "FORBIDDEN" not in documented_codes(operations(spec)[route])


def test_request_bodies_describe_what_the_logic_accepts(spec: dict[str, Any]) -> None:
    ops = operations(spec)

    def body_schema(route: tuple[str, str]) -> dict[str, Any]:
        body = ops[route]["requestBody"]
        assert body["required"] is True
        return dict(body["content"]["application/json"]["schema"])

    def variants(union: dict[str, Any]) -> dict[str, dict[str, Any]]:
        # A job spec is a union over the job types, told apart by `type`: one request model per type
        assert union["discriminator"]["propertyName"] == "type"
        found = {}
        for ref in union["oneOf"]:
            model = spec["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]
            found[model["properties"]["type"]["const"]] = model
        assert sorted(found) == registered_types()
        return found

    for name, job in variants(body_schema(("POST", "/jobs"))).items():
        assert "type" in job["required"]
        assert job["additionalProperties"] is False  # unknown fields are INVALID_OPTION
        assert set(job["properties"]) == ENQUEUE_FIELDS
        assert (job["properties"]["priority"]["minimum"], job["properties"]["priority"]["maximum"]) == (1, 10)
        assert (job["properties"]["maxAttempts"]["minimum"], job["properties"]["maxAttempts"]["maximum"]) == (1, 25)
        # delaySeconds and runAt exclude each other, and dependsOn excludes both
        assert job["not"] == {
            "anyOf": [
                {"required": ["delaySeconds", "runAt"]},
                {"required": ["dependsOn", "delaySeconds"]},
                {"required": ["dependsOn", "runAt"]},
            ]
        }
        assert (
            job["properties"]["dependsOn"]["anyOf"][0]["minItems"],
            job["properties"]["dependsOn"]["anyOf"][0]["maxItems"],
        ) == (1, 100)
        # And the payload is the type's own model
        payload_model = get_job_type(name).payload_model.__name__
        assert job["properties"]["payload"] == {"$ref": f"#/components/schemas/{payload_model}"} or any(
            item.get("$ref", "").endswith(payload_model) for item in job["properties"]["payload"].get("anyOf", [])
        )
    message = body_schema(("POST", "/enqueue"))
    assert "{0,498}" in message["properties"]["message"]["pattern"]  # 1 to 500 characters once trimmed
    upload = body_schema(("POST", "/uploads"))
    assert upload["properties"]["contentType"]["enum"] == sorted(UPLOAD_TYPES)
    assert upload["properties"]["size"]["maximum"] == 10 * 1024 * 1024
    # One webhook path per type, its body that type's payload model
    hooks = {path.removeprefix("/hooks/") for method, path in ops if path.startswith("/hooks/")}
    assert hooks == set(registered_types())
    for name in registered_types():
        hook = body_schema(("POST", f"/hooks/{name}"))
        assert hook["title"] == get_job_type(name).payload_model.__name__
    batch = body_schema(("POST", "/jobs/batch"))
    assert batch["required"] == ["jobs"] and batch["additionalProperties"] is False
    assert set(batch["properties"]) == BATCH_FIELDS
    jobs = batch["properties"]["jobs"]
    assert (jobs["minItems"], jobs["maxItems"]) == (1, MAX_BATCH_JOBS)
    for spec_schema in (jobs["items"], batch["properties"]["onComplete"]["anyOf"][0]):
        for job in variants(spec_schema).values():
            # refused inside a batch
            assert set(job["properties"]) == ENQUEUE_FIELDS - {"idempotencyKey", "dependsOn"}
            assert job["additionalProperties"] is False
    # And no other route takes a body
    assert {route for route, op in ops.items() if "requestBody" in op} == {
        ("POST", "/jobs"),
        ("POST", "/jobs/batch"),
        ("POST", "/enqueue"),
        ("POST", "/uploads"),
        *(("POST", f"/hooks/{name}") for name in registered_types()),
        ("POST", "/jobs/cancel"),
        ("POST", "/schedules"),
        ("PATCH", "/schedules/{schedule_id}"),
    }
    # A schedule's job is a job spec without what says when it runs (the schedule does) or keys it
    create = body_schema(("POST", "/schedules"))
    assert (create["required"], create["additionalProperties"]) == (["name", "cron", "job"], False)
    update = body_schema(("PATCH", "/schedules/{schedule_id}"))
    assert set(update["properties"]) == {"cron", "timezone", "job", "enabled"} and "required" not in update
    for job in variants(create["properties"]["job"]).values():
        assert set(job["properties"]) == ENQUEUE_FIELDS - {"idempotencyKey", "delaySeconds", "runAt"}
    assert ops[("POST", "/jobs/cancel")]["requestBody"]["required"] is False  # no body: every cancellable job
    cancel = ops[("POST", "/jobs/cancel")]["requestBody"]["content"]["application/json"]["schema"]
    assert cancel["properties"]["status"]["enum"] == ["pending", "retrying", "scheduled", "waiting"]
    assert cancel["properties"]["type"]["enum"] == registered_types()
    assert cancel["additionalProperties"] is False


def test_success_responses_reference_their_models(spec: dict[str, Any]) -> None:
    ops = operations(spec)
    expected = {
        ("POST", "/jobs"): ("202", "Job"),
        ("GET", "/jobs/{job_id}"): ("200", "Job"),
        ("DELETE", "/jobs/{job_id}"): ("200", "Job"),
        ("POST", "/jobs/{job_id}/retry"): ("202", "Job"),
        ("GET", "/jobs"): ("200", "JobPage"),
        ("GET", "/stats"): ("200", "Stats"),
        ("GET", "/stats/throughput"): ("200", "Throughput"),
        ("GET", "/types"): ("200", "JobTypes"),
        ("GET", "/health"): ("200", "Health"),
        ("POST", "/enqueue"): ("202", "Enqueued"),
        ("POST", "/uploads"): ("201", "UploadTicket"),
        ("POST", "/jobs/batch"): ("202", "BatchAccepted"),
        ("GET", "/batches/{batch_id}"): ("200", "Batch"),
        ("POST", "/hooks/message"): ("202", "Job"),
        ("POST", "/jobs/cancel"): ("200", "CancelledJobs"),
        ("POST", "/types/{type}/pause"): ("200", "TypePause"),
        ("POST", "/types/{type}/resume"): ("200", "TypePause"),
        ("POST", "/schedules"): ("201", "Schedule"),
        ("GET", "/schedules"): ("200", "SchedulePage"),
        ("GET", "/schedules/{schedule_id}"): ("200", "Schedule"),
        ("PATCH", "/schedules/{schedule_id}"): ("200", "Schedule"),
        ("DELETE", "/schedules/{schedule_id}"): ("200", "Schedule"),
        ("POST", "/schedules/{schedule_id}/run"): ("202", "Job"),
        ("GET", "/schedules/preview"): ("200", "RunTimes"),
    }
    for route, (status, model) in expected.items():
        schema = ops[route]["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}, route
    for route in (
        ("POST", "/jobs"),
        ("POST", "/jobs/{job_id}/retry"),
        ("POST", "/enqueue"),
        ("POST", "/hooks/message"),
    ):
        assert "Location" in ops[route]["responses"]["202"]["headers"]
    job = spec["components"]["schemas"]["Job"]
    assert job["properties"]["status"] == {"$ref": "#/components/schemas/JobStatus"}
    assert spec["components"]["schemas"]["JobStatus"]["enum"] == [status.value for status in JobStatus]


def test_query_and_path_parameters_are_documented(spec: dict[str, Any]) -> None:
    ops = operations(spec)

    def params(route: tuple[str, str]) -> dict[str, str]:
        return {p["name"]: p["in"] for p in ops[route].get("parameters", [])}

    assert params(("GET", "/jobs")) == {"status": "query", "type": "query", "limit": "query", "cursor": "query"}
    assert params(("GET", "/jobs/{job_id}/result")) == {"job_id": "path", "redirect": "query"}
    assert params(("GET", "/stats/throughput")) == {"minutes": "query"}
    assert params(("POST", "/hooks/message")) == {"priority": "query", "X-Jobs-Signature": "header"}
    assert params(("GET", "/jobs/{job_id}")) == {"job_id": "path", "wait": "query"}
    assert params(("POST", "/jobs")) == {"Idempotency-Key": "header"}
    assert params(("GET", "/schedules")) == {"limit": "query", "cursor": "query"}
    assert params(("GET", "/schedules/preview")) == {"cron": "query", "timezone": "query", "count": "query"}
    for route in (("DELETE", "/jobs/{job_id}"), ("POST", "/jobs/{job_id}/retry")):
        assert params(route) == {"job_id": "path"}


def test_the_document_for_a_stage_names_the_stage_as_its_server() -> None:
    assert json.loads(openapi_json())["servers"] == [{"url": "/"}]
    assert json.loads(openapi_json("/prod"))["servers"] == [{"url": "/prod"}]


def test_error_examples_have_the_error_shape() -> None:
    table = errors.error_table()
    for status, response in doc.errors(*table).items():
        for example in response["content"]["application/json"]["examples"].values():
            body = responses.Error.model_validate(example["value"])
            assert table[body.code].status_code == status


def _subclasses(cls: type[errors.ApiError]) -> list[type[errors.ApiError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found

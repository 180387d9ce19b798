"""The API's self-description and its browser-facing routes against moto: the OpenAPI document, Swagger UI, the
dashboard's files, GET /types and GET /stats/throughput; the tenant is checked before the body; and every response
fits the model the document gives it."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from jsonschema import Draft202012Validator

from functions.handlers import api as api_handler
from functions.handlers import static
from functions.logic import manage
from functions.logic.job_types import registered_types
from local.gateway import authorize, build_event
from local.lambda_context import LocalContext
from tests.integration.harness import API_TIMEOUT_SECONDS, Service, failing_job, ok_job

ROOT = Path(__file__).resolve().parents[2]


class RawResponse(NamedTuple):
    status: int
    body: str
    headers: dict[str, str]


def call(
    service: Service,
    method: str,
    path: str,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    context_path: str | None = None,
) -> RawResponse:
    """The API handler's raw answer (the harness's ``api()`` parses JSON; these routes also answer HTML and JS)."""
    value = service.key_values.get(key) if key else None
    all_headers = {"user-agent": "integration-tests", **(headers or {})}
    if value:
        all_headers["x-api-key"] = value
    event = build_event(method, path, all_headers, b"", authorize(value) if value else None, "127.0.0.1")
    if context_path is not None:
        event["requestContext"]["path"] = context_path
    response = api_handler.handler(event, LocalContext("api", API_TIMEOUT_SECONDS))
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    out = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        out[name.lower()] = ", ".join(values)
    return RawResponse(int(response["statusCode"]), body, out)


def fits(component: str, body: Any) -> None:
    """``body`` validates against the document's schema ``component`` and has exactly its fields."""
    schemas = json.loads(api_handler.openapi_json())["components"]["schemas"]
    root = {"$ref": f"#/components/schemas/{component}", "components": {"schemas": schemas}}
    Draft202012Validator(root).validate(body)
    schema = schemas[component]
    assert set(schema.get("required", [])) <= set(body) <= set(schema["properties"]), (component, sorted(body))


@pytest.fixture
def dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dashboard directory of our own (the real one is written separately)."""
    directory = tmp_path / "dashboard"
    directory.mkdir()
    (directory / "index.html").write_text('<!doctype html><script src="assets/app.js"></script>')
    (directory / "app.js").write_text("fetch('stats')")
    (directory / "style.css").write_text("body{color:#111}")
    monkeypatch.setattr(static, "DASHBOARD_DIR", directory)
    return directory


# --- the document and Swagger UI ---


def test_the_openapi_document_is_served_without_a_key_and_is_the_committed_one(service: Service) -> None:
    response = call(service, "GET", "/openapi.json")

    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.body) == json.loads((ROOT / "openapi.json").read_text())


def test_on_the_stage_url_the_document_names_the_stage_as_its_server(service: Service) -> None:
    event_path = "/prod/openapi.json"
    event = build_event("GET", "/openapi.json", {}, b"", None, "127.0.0.1")
    event["requestContext"]["stage"] = "prod"
    event["requestContext"]["path"] = event_path
    response = api_handler.handler(event, LocalContext("api", API_TIMEOUT_SECONDS))

    assert json.loads(response["body"])["servers"] == [{"url": "/prod"}]


def test_swagger_ui_is_served_without_a_key_and_loads_only_same_origin_assets(service: Service) -> None:
    response = call(service, "GET", "/swagger")

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    sources = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", response.body)
    assert sorted(sources) == ["assets/swagger/swagger-ui-bundle.min.js", "assets/swagger/swagger-ui.min.css"]
    assert "http://" not in response.body.split("<script>")[0] and "https://" not in response.body.split("<script>")[0]
    # And the page carries the same operations as the document
    assert '"operationId": "createJob"' in response.body
    for source in sources:
        asset = call(service, "GET", "/" + source)
        assert asset.status == 200, source
        assert asset.headers["cache-control"] == "public, max-age=86400"
        assert asset.headers["content-type"].startswith(("text/javascript", "text/css"))


def test_only_swagger_uis_own_assets_are_served_from_its_folder(service: Service) -> None:
    for name in ("html.py", "__init__.py", "oauth2.py", "..", "swagger-ui.min.css.map"):
        response = call(service, "GET", f"/assets/swagger/{name}")
        assert response.status == 404, name
        assert json.loads(response.body)["code"] == "NOT_FOUND"


# --- the dashboard ---


def test_the_dashboard_page_is_served_without_a_key(service: Service, dashboard: Path) -> None:
    response = call(service, "GET", "/")

    assert response.status == 200
    assert response.body == (dashboard / "index.html").read_text()
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_the_stage_root_without_a_slash_redirects_to_it_with_one(service: Service, dashboard: Path) -> None:
    response = call(service, "GET", "/", context_path="/prod")

    assert (response.status, response.headers["location"]) == (301, "/prod/")
    assert call(service, "GET", "/", context_path="/prod/").status == 200


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8")],
)
def test_dashboard_files_are_served_with_their_type_and_an_etag(
    service: Service, dashboard: Path, name: str, content_type: str
) -> None:
    response = call(service, "GET", f"/assets/{name}")

    assert response.status == 200
    assert response.body == (dashboard / name).read_text()
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    # And asking again with its ETag is a 304 without a body
    again = call(service, "GET", f"/assets/{name}", headers={"if-none-match": response.headers["etag"]})
    assert (again.status, again.body) == (304, "")


@pytest.mark.parametrize("path", ["/assets/nope.js", "/assets/..", "/assets/.env", "/assets/app.py", "/assets/a/b.js"])
def test_other_asset_paths_are_not_found(service: Service, dashboard: Path, path: str) -> None:
    (dashboard / ".env").write_text("SECRET=1")
    (dashboard / "app.py").write_text("secret = 1")

    response = call(service, "GET", path)

    assert response.status == 404
    assert json.loads(response.body)["code"] == "NOT_FOUND"


def test_without_the_dashboards_files_the_page_is_404_json(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(static, "DASHBOARD_DIR", tmp_path / "none")

    response = call(service, "GET", "/")

    assert response.status == 404
    assert json.loads(response.body)["code"] == "NOT_FOUND"


# --- /types and /stats/throughput ---


def test_types_lists_every_registered_type_with_its_payload_schema(service: Service) -> None:
    status, body, _ = service.api("GET", "/types")

    assert status == 200
    fits("JobTypes", body)
    assert [t["name"] for t in body["types"]] == registered_types()
    simulate = next(t for t in body["types"] if t["name"] == "simulate")
    assert simulate["schema"]["type"] == "object"
    assert {"target", "durationMs", "failureRate", "shouldFail", "action"} <= set(simulate["schema"]["properties"])
    assert "target" in simulate["schema"]["required"]
    assert all(isinstance(t["description"], str) for t in body["types"])


def test_types_needs_a_key(service: Service) -> None:
    status, body, _ = service.api("GET", "/types", key=None)

    assert (status, body["code"]) == (403, "FORBIDDEN")


needs_throughput = pytest.mark.skipif(not hasattr(manage, "throughput"), reason="manage.throughput not written yet")


@needs_throughput
def test_throughput_has_one_bucket_a_minute_oldest_first(service: Service) -> None:
    # Given one completed and one failed job
    done = service.create_job(ok_job())
    broken = service.create_job(failing_job(max_attempts=1))
    service.drain()
    assert service.job(done["id"])["status"] == "completed"
    assert service.job(broken["id"])["status"] == "failed"

    # When the last 5 minutes are read
    status, body, _ = service.api("GET", "/stats/throughput", query={"minutes": "5"})

    # Then there are 5 buckets, oldest first, and the jobs are counted
    assert status == 200, body
    fits("Throughput", body)
    assert body["minutes"] == 5
    minutes = [bucket["minute"] for bucket in body["buckets"]]
    assert len(minutes) == 5 and minutes == sorted(minutes)
    assert sum(b["completed"] for b in body["buckets"]) == 1
    assert sum(b["failed"] for b in body["buckets"]) == 1
    # And the default is an hour
    assert len(service.api("GET", "/stats/throughput").body["buckets"]) == 60


@needs_throughput
@pytest.mark.parametrize("minutes", ["0", "1441", "-1", "x", "1.5", ""])
def test_throughput_minutes_out_of_range_is_invalid_query(service: Service, minutes: str) -> None:
    status, body, _ = service.api("GET", "/stats/throughput", query={"minutes": minutes})

    assert (status, body["code"]) == (400, "INVALID_QUERY")


@needs_throughput
def test_throughput_needs_a_key(service: Service) -> None:
    status, body, _ = service.api("GET", "/stats/throughput", key=None, query={"minutes": "x"})

    assert (status, body["code"]) == (403, "FORBIDDEN")


# --- the tenant first ---


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/jobs", "not json"),
        ("/jobs", '{"type": "nope"}'),
        ("/jobs", '{"type": "simulate", "payload": {}}'),
        ("/enqueue", "[]"),
        ("/enqueue", '{"message": ""}'),
        ("/uploads", '{"contentType": "text/plain", "size": 1}'),
        ("/jobs", "x" * (6 * 1024 * 1024)),
    ],
)
def test_without_a_known_key_a_bad_body_is_403_not_400(service: Service, path: str, raw: str) -> None:
    # Before, the body was judged first: a caller without a valid key learnt about its body (400/413) instead of
    # being refused. The tenant is resolved first now.
    for key in (None, "nosuchkey1"):
        status, body, _ = service.api("POST", path, raw=raw, key=key)
        assert (status, body["code"]) == (403, "FORBIDDEN")


# --- responses fit the document ---


def test_every_response_fits_its_documented_model(service: Service) -> None:
    job = service.create_job(ok_job(delaySeconds=3600))
    fits("Job", job)
    for entry in job["history"]:
        fits("HistoryEntry", entry)

    status, page, _ = service.api("GET", "/jobs", query={"limit": "1"})
    assert status == 200
    fits("JobPage", page)

    fits("Job", service.job(job["id"]))
    status, cancelled, _ = service.api("DELETE", f"/jobs/{job['id']}")
    fits("Job", cancelled)
    status, retried, _ = service.api("POST", f"/jobs/{job['id']}/retry")
    assert status == 202
    fits("Job", retried)

    fits("Stats", service.stats())
    fits("Health", service.api("GET", "/health", key=None).body)
    status, enqueued, _ = service.api("POST", "/enqueue", {"message": "hello"})
    assert status == 202
    fits("Enqueued", enqueued)
    status, ticket, _ = service.api("POST", "/uploads", {"contentType": "image/png", "size": 10})
    assert status == 201
    fits("UploadTicket", ticket)

    done = service.create_job(ok_job())
    service.drain()
    status, result, _ = service.api("GET", f"/jobs/{done['id']}/result")
    assert status == 200
    fits("InlineResult", result)

    status, error, _ = service.api("GET", "/jobs/nope")
    fits("Error", error)

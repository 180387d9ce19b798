"""Files against moto: presigned uploads that really upload, result downloads, tenant scoping, large payloads.

The handlers run in-process against ``mock_aws``; a moto server on a free port serves the same state over HTTP, so
presigned URLs (built for ``JOBS_S3_PUBLIC_ENDPOINT``) are exercised with real HTTP requests, as a client would.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer
from pydantic import BaseModel, ConfigDict

from functions.handlers import runtime
from functions.logic.job_types import JobContext, JobType, registry
from tests.integration.harness import TENANT_A, Service

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 56  # only the service's bookkeeping looks at these bytes here


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def files_service(service: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The service, with presigned URLs pointing at a moto server that shares the in-process state."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("JOBS_S3_PUBLIC_ENDPOINT", f"http://{host}:{port}")
    # Only the settings and the file store are rebuilt: the harness keeps its hooks on the shared clients.
    runtime.runtime.cache_clear()
    runtime.files.cache_clear()
    try:
        yield service
    finally:
        server.stop()


class OutputPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str | None = None


@pytest.fixture
def output_type(monkeypatch: pytest.MonkeyPatch) -> str:
    """A job type that writes processed/<job id>.png, or returns a key it is given (to test what may be shared)."""

    def handler(payload: OutputPayload, ctx: JobContext) -> dict[str, Any]:
        if payload.key is not None:
            return {"key": payload.key}
        key = f"processed/{ctx.job_id}.png"
        ctx.client("s3").put_object(Bucket=ctx.settings.files_bucket, Key=key, Body=PNG, ContentType="image/png")
        return {"key": key, "contentType": "image/png"}

    monkeypatch.setitem(registry._REGISTRY, "test-output", JobType("test-output", OutputPayload, handler))
    return "test-output"


class BlobPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blob: str


@pytest.fixture
def blob_type(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A job type that records the payload its handler was given."""
    seen: list[str] = []

    def handler(payload: BlobPayload, ctx: JobContext) -> int:
        seen.append(payload.blob)
        return len(payload.blob)

    monkeypatch.setitem(registry._REGISTRY, "test-blob", JobType("test-blob", BlobPayload, handler))
    return seen


def _upload(service: Service, size: int = len(PNG), key: Any = None) -> dict[str, Any]:
    kwargs = {} if key is None else {"key": key}
    status, body, _ = service.api("POST", "/uploads", {"contentType": "image/png", "size": size}, **kwargs)
    assert status == 201, body
    return dict(body)


# --- uploads ---


def test_a_presigned_put_uploads_the_file_under_the_tenants_prefix(files_service: Service) -> None:
    # Given an upload created through the API
    upload = _upload(files_service)
    assert upload["key"].startswith(f"uploads/{TENANT_A}/") and upload["key"].endswith(".png")
    assert upload["uploadUrl"].startswith(files_service.settings.s3_public_endpoint or "http://127.0.0.1:")

    # When the client PUTs the bytes to the URL with the headers it was given
    response = requests.put(upload["uploadUrl"], data=PNG, headers=upload["headers"], timeout=10)

    # Then S3 has the object, with its type
    assert response.status_code == 200, response.text
    stored = boto3.client("s3").get_object(Bucket=files_service.settings.files_bucket, Key=upload["key"])
    assert stored["Body"].read() == PNG
    assert stored["ContentType"] == "image/png"


def test_the_upload_url_signs_the_type_and_the_size_so_s3_enforces_them(files_service: Service) -> None:
    # Given an upload of 1234 bytes
    upload = _upload(files_service, size=1234)
    # When its URL is read
    query = parse_qs(urlsplit(upload["uploadUrl"]).query)
    # Then it is SigV4 with Content-Type and Content-Length among the signed headers (AWS refuses other values),
    # path-style at the local endpoint, expiring with the configured expiry
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert set(query["X-Amz-SignedHeaders"][0].split(";")) >= {"content-length", "content-type", "host"}
    assert query["X-Amz-Expires"] == [str(files_service.settings.presign_expiry_seconds)]
    assert urlsplit(upload["uploadUrl"]).path == f"/{files_service.settings.files_bucket}/{upload['key']}"
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "image/png", "Content-Length": "1234"}


@pytest.mark.parametrize(
    "body",
    [
        {"contentType": "image/gif", "size": 10},
        {"contentType": "image/png", "size": 10 * 1024 * 1024 + 1},
        {"contentType": "image/png", "size": 0},
        {"contentType": "image/png"},
        {"contentType": "image/png", "size": 10, "key": "uploads/tenant-b/mine.png"},
        [],
    ],
)
def test_an_invalid_upload_request_is_a_400_never_a_500(service: Service, body: Any) -> None:
    status, answer, _ = service.api("POST", "/uploads", body)
    assert status == 400 and answer["code"] == "INVALID_UPLOAD", answer
    assert answer["details"]["maxBytes"] == 10 * 1024 * 1024


# --- results ---


def test_a_completed_jobs_file_is_downloadable_by_presigned_url_and_redirect(
    files_service: Service, output_type: str
) -> None:
    # Given a job whose handler writes processed/<id>.png
    job = files_service.create_job({"type": output_type})

    # Then before it has run, there is no result yet
    status, body, _ = files_service.api("GET", f"/jobs/{job['id']}/result")
    assert status == 409 and body["code"] == "INVALID_STATE"

    # When it has run
    files_service.drain()
    status, body, _ = files_service.api("GET", f"/jobs/{job['id']}/result")

    # Then the result is a download URL for that key, which serves the file
    assert status == 200, body
    assert body["key"] == f"processed/{job['id']}.png" and body["contentType"] == "image/png"
    assert set(body) == {"url", "key", "expiresAt", "contentType"}
    download = requests.get(body["url"], timeout=10)
    assert download.status_code == 200 and download.content == PNG
    # And ?redirect=1 answers 302 to such a URL
    status, _, headers = files_service.api("GET", f"/jobs/{job['id']}/result", query={"redirect": "1"})
    assert status == 302
    assert requests.get(headers["Location"], timeout=10).content == PNG


def test_another_tenant_gets_404_for_the_result(files_service: Service, output_type: str) -> None:
    # Given tenant A's completed job
    job = files_service.create_job({"type": output_type})
    files_service.drain()
    # When tenant B asks for its result (or for a job that does not exist)
    status, body, _ = files_service.api("GET", f"/jobs/{job['id']}/result", key=files_service.key_b)
    missing, _, _ = files_service.api("GET", "/jobs/00000000-0000-4000-8000-000000000000/result")
    # Then it is not found, as any other tenant's job
    assert (status, body["code"], missing) == (404, "NOT_FOUND", 404)


def test_a_result_naming_another_tenants_upload_is_never_presigned(files_service: Service, output_type: str) -> None:
    # Given tenant B's upload, and a job of tenant A whose result names it
    theirs = _upload(files_service, key=files_service.key_b)["key"]
    job = files_service.create_job({"type": output_type, "payload": {"key": theirs}})
    files_service.drain()
    # When tenant A asks for the result
    status, body, _ = files_service.api("GET", f"/jobs/{job['id']}/result")
    # Then it gets the plain result, and no URL
    assert status == 200 and body == {"result": {"key": theirs}}
    # While its own upload named the same way is downloadable
    mine = _upload(files_service)["key"]
    job = files_service.create_job({"type": output_type, "payload": {"key": mine}})
    files_service.drain()
    status, body, _ = files_service.api("GET", f"/jobs/{job['id']}/result")
    assert status == 200 and body["key"] == mine and "url" in body


def test_a_result_naming_no_file_is_returned_as_is(service: Service) -> None:
    job = service.create_job({"type": "message", "payload": {"message": "hi"}})
    service.drain()
    status, body, _ = service.api("GET", f"/jobs/{job['id']}/result", query={"redirect": "1"})
    assert (status, body) == (200, {"result": "hi"})


# --- large payloads ---


def test_a_body_over_5_mib_is_payload_too_large(service: Service) -> None:
    skeleton = json.dumps({"type": "message", "payload": {"message": ""}})
    over = skeleton.replace('""', '"' + "x" * (5 * 1024 * 1024 + 1 - len(skeleton)) + '"')
    status, body, _ = service.api("POST", "/jobs", raw=over)
    assert status == 413 and body["code"] == "PAYLOAD_TOO_LARGE"
    assert service.queue_is_empty()


def test_a_300_kib_payload_round_trips_through_s3_sqs_and_the_consumer(service: Service, blob_type: list[str]) -> None:
    # Given a payload of 300 KiB, over the 256 KiB a record keeps inline
    blob = "b" * (300 * 1024)
    # When it is enqueued
    job = service.create_job({"type": "test-blob", "payload": {"blob": blob}})
    # Then the answer holds it whole, the record only a pointer, and S3 the payload itself
    assert job["payload"] == {"blob": blob}
    item = service.dynamodb.get_item(
        TableName=service.settings.jobs_table, Key={"pk": {"S": f"{TENANT_A}#{job['id']}"}}
    )
    key = f"payloads/{TENANT_A}/{job['id']}.json"
    assert item["Item"]["payloadRef"] == {"S": key}
    assert len(item["Item"]["payloadJson"]["S"]) < 100
    stored = boto3.client("s3").get_object(Bucket=service.settings.files_bucket, Key=key)
    assert json.loads(stored["Body"].read()) == {"blob": blob}
    # And the SQS message is the usual pointer to the record
    (message,) = service.receive()
    assert json.loads(message["Body"]) == {"v": 1, "tenant": TENANT_A, "jobId": job["id"], "type": job["type"]}
    service.deliver([message])

    # Then the handler saw all of it, and the job completed
    assert blob_type == [blob]
    done = service.job(job["id"])
    assert done["status"] == "completed" and done["result"] == len(blob)
    # And GET /jobs/{id} returns the whole payload, while the listing shows the placeholder
    assert done["payload"] == {"blob": blob}
    status, page, _ = service.api("GET", "/jobs", query={"type": "test-blob"})
    size = len(json.dumps({"blob": blob}, separators=(",", ":")))
    assert status == 200 and page["jobs"][0]["payload"] == {"$offloaded": True, "bytes": size}


@pytest.mark.parametrize(("days_ahead", "accepted"), [(28, True), (29, False), (365, False)])
def test_an_offloaded_payloads_job_is_never_scheduled_past_the_payloads_expiry(
    service: Service, blob_type: list[str], days_ahead: int, accepted: bool
) -> None:
    # Given a 300 KiB payload (kept in the files bucket, whose lifecycle expires it after 30 days)
    run_at = datetime.now(UTC) + timedelta(days=days_ahead)
    body = {"type": "test-blob", "payload": {"blob": "b" * (300 * 1024)}, "runAt": run_at.isoformat()}
    # When its job is scheduled that far ahead
    status, answer, _ = service.api("POST", "/jobs", body)
    # Then it is accepted only if the payload outlives the job's attempts; otherwise a 400 says how far it may go
    if accepted:
        assert status == 202 and answer["status"] == "scheduled"
        return
    assert status == 400 and answer["code"] == "INVALID_OPTION" and answer["details"]["maxDaysAhead"] == 28
    # And nothing was stored: no object, no record, no message
    listed = boto3.client("s3").list_objects_v2(Bucket=service.settings.files_bucket, Prefix="payloads/")
    assert listed.get("KeyCount", 0) == 0
    assert service.stats()["enqueued"] == 0 and service.queue_is_empty()

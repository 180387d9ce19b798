"""The catalogue's job types against moto: SES, the imports table, S3 with real Pillow images, the local AI provider.

The handlers run as the consumer runs them: a ``JobContext`` with the local stack's settings and boto3 clients.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends
from PIL import Image

from functions.handlers import runtime
from functions.logic.job_types import JobContext, get_job_type
from functions.models.errors import PermanentJobError
from functions.settings import Settings
from infra.config import local_config
from local.aws import REGION, create_resources
from tests.integration.harness import Service

TENANT = "acme"


class Aws:
    """moto with the local stack's resources, and a context factory like the consumer's."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, Any] = {}
        self.overrides: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service in self.overrides:
            return self.overrides[service]
        if service not in self._clients:
            self._clients[service] = boto3.client(service, region_name=REGION)
        return self._clients[service]

    def context(self, job_id: str = "job-1", tenant: str = TENANT, **settings: Any) -> JobContext:
        return JobContext(
            job_id=job_id,
            tenant=tenant,
            attempt=1,
            max_attempts=3,
            logger=logging.getLogger("test"),
            settings=replace(self.settings, **settings),
            client=self.client,
        )

    def run(self, type_name: str, payload: dict[str, Any], **context: Any) -> Any:
        """Validate as enqueue does (and round-trip as the record does), then run the handler."""
        job_type = get_job_type(type_name)
        stored = job_type.parse_payload(payload).model_dump(mode="json", by_alias=True)
        return job_type.handler(job_type.parse_payload(stored), self.context(**context))


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        config = local_config()
        create_resources(config)
        yield Aws(config.settings())


# --- send-email ---


def test_an_email_is_sent_through_ses_from_the_verified_sender(aws: Aws) -> None:
    # Given moto's SES with the stack's verified sender
    backend = ses_backends[DEFAULT_ACCOUNT_ID][REGION]
    # When a send-email job runs
    result = aws.run(
        "send-email",
        {"to": ["ann@example.com", "bob@example.org"], "subject": "Report", "body": "Attached.", "html": "<b>Hi</b>"},
    )
    # Then SES accepted one message from the sender to both recipients
    assert result["messageId"] and result["recipients"] == 2
    [message] = backend.sent_messages
    assert message.id == result["messageId"]
    assert message.source == aws.settings.email_sender
    assert message.destinations["ToAddresses"] == ["ann@example.com", "bob@example.org"]
    assert message.subject == "Report"
    assert aws.client("ses").get_send_quota()["SentLast24Hours"] == 2


def test_an_unverified_sender_is_a_permanent_failure(aws: Aws) -> None:
    # Given a sender SES has not verified
    # When the job runs
    with pytest.raises(PermanentJobError, match="MessageRejected"):
        aws.run("send-email", {"to": "ann@example.com", "subject": "s", "body": "b"}, email_sender="x@unverified.test")
    # Then nothing was sent
    assert ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages == []


# --- batch-import ---


class UnprocessedOnce:
    """The DynamoDB client, except that its first BatchWriteItem leaves the last ``keep`` requests unprocessed."""

    def __init__(self, client: Any, keep: int) -> None:
        self._client = client
        self.keep = keep
        self.calls: list[int] = []

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        [(table, requests)] = RequestItems.items()
        self.calls.append(len(requests))
        if self.keep:
            done, left = requests[: -self.keep], requests[-self.keep :]
            self.keep = 0
            self._client.batch_write_item(RequestItems={table: done})
            return {"UnprocessedItems": {table: left}}
        return dict(self._client.batch_write_item(RequestItems=RequestItems))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _stored(aws: Aws, pk: str) -> dict[str, dict[str, Any]]:
    paginator = aws.client("dynamodb").get_paginator("query")
    pages = paginator.paginate(
        TableName=aws.settings.imports_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
    )
    return {item["sk"]["S"]: item for page in pages for item in page["Items"]}


def test_a_thousand_items_are_imported_in_40_batches_with_unprocessed_items_re_sent(aws: Aws) -> None:
    # Given DynamoDB that leaves 7 items of the first batch unprocessed
    wrapped = UnprocessedOnce(aws.client("dynamodb"), keep=7)
    aws.overrides["dynamodb"] = wrapped
    items = [{"id": i, "name": f"item {i}", "price": i / 3} for i in range(1000)]
    # When 1,000 items are imported
    result = aws.run("batch-import", {"namespace": "products", "items": items})
    # Then 40 batches went out, the 7 were sent again, and every item is stored under the tenant's namespace
    assert result == {"namespace": "products", "written": 1000, "batches": 40, "retries": 1}
    assert wrapped.calls[:2] == [25, 7] and len(wrapped.calls) == 41
    stored = _stored(aws, f"{TENANT}#products")
    assert len(stored) == 1000
    assert json.loads(stored["999"]["item"]["S"]) == {"id": 999, "name": "item 999", "price": 999 / 3}
    assert stored["0"]["jobId"]["S"] == "job-1" and stored["0"]["updatedAt"]["S"].endswith("Z")


def test_running_an_import_again_overwrites_the_same_items(aws: Aws) -> None:
    # Given an import that ran once
    items = [{"id": f"sku-{i}", "stock": i} for i in range(60)]
    aws.run("batch-import", {"namespace": "stock", "items": items}, job_id="job-1")
    # When it runs again (a retry or a duplicate delivery) with changed values
    again = aws.run("batch-import", {"namespace": "stock", "items": [{**i, "stock": 0} for i in items]}, job_id="job-2")
    # Then the same 60 keys hold the latest values: nothing duplicated
    assert again["written"] == 60
    stored = _stored(aws, f"{TENANT}#stock")
    assert len(stored) == 60
    assert {json.loads(item["item"]["S"])["stock"] for item in stored.values()} == {0}
    assert {item["jobId"]["S"] for item in stored.values()} == {"job-2"}


def test_imports_of_two_tenants_do_not_mix(aws: Aws) -> None:
    aws.run("batch-import", {"namespace": "n", "items": [{"id": 1, "v": "a"}]}, tenant="a")
    aws.run("batch-import", {"namespace": "n", "items": [{"id": 1, "v": "b"}]}, tenant="b")
    assert json.loads(_stored(aws, "a#n")["1"]["item"]["S"])["v"] == "a"
    assert json.loads(_stored(aws, "b#n")["1"]["item"]["S"])["v"] == "b"


# --- images ---


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    image = Image.new("RGB", size)
    for x in range(size[0]):  # a gradient, so that grayscale has something to do
        for y in range(0, size[1], 7):
            image.putpixel((x, y), (x % 256, 255 - y % 256, 90))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def _upload(aws: Aws, key: str, data: bytes, content_type: str = "image/png") -> str:
    aws.client("s3").put_object(Bucket=aws.settings.files_bucket, Key=key, Body=data, ContentType=content_type)
    return key


def _processed(aws: Aws, key: str) -> tuple[Image.Image, str]:
    obj = aws.client("s3").get_object(Bucket=aws.settings.files_bucket, Key=key)
    image = Image.open(io.BytesIO(obj["Body"].read()))
    image.load()
    return image, obj["ContentType"]


@pytest.mark.parametrize(
    ("fmt", "extension", "content_type"), [("PNG", "png", "image/png"), ("JPEG", "jpg", "image/jpeg")]
)
def test_grayscale_of_a_real_image(aws: Aws, fmt: str, extension: str, content_type: str) -> None:
    # Given an uploaded colour image
    key = _upload(aws, f"uploads/{TENANT}/photo.{extension}", _image(fmt, (64, 48)), content_type)
    # When the grayscale job runs
    result = aws.run("image-grayscale", {"key": key}, job_id="job-gray")
    # Then processed/<job id>.<ext> holds a single-channel image of the same size, with its content type
    assert result["key"] == f"processed/job-gray.{extension}"
    image, stored_type = _processed(aws, result["key"])
    assert (image.format, image.mode, image.size) == (fmt, "L", (64, 48))
    assert stored_type == content_type == result["contentType"]
    assert (result["width"], result["height"]) == (64, 48) and result["size"] > 0


@pytest.mark.parametrize(
    ("fmt", "extension", "size", "expected"),
    [
        ("PNG", "png", {"width": 32}, (32, 24)),
        ("JPEG", "jpg", {"height": 12}, (16, 12)),
        ("JPEG", "jpg", {"width": 100, "height": 10}, (100, 10)),
    ],
)
def test_resize_of_a_real_image(
    aws: Aws, fmt: str, extension: str, size: dict[str, int], expected: tuple[int, int]
) -> None:
    key = _upload(aws, f"uploads/{TENANT}/photo.{extension}", _image(fmt, (64, 48)))
    result = aws.run("image-resize", {"key": key, **size}, job_id="job-resize")
    image, _ = _processed(aws, f"processed/job-resize.{extension}")
    assert (image.format, image.mode, image.size) == (fmt, "RGB", expected)
    assert (result["width"], result["height"]) == expected


def _permanent(aws: Aws, type_name: str, payload: dict[str, Any], **context: Any) -> Callable[[str], None]:
    def check(match: str) -> None:
        with pytest.raises(PermanentJobError, match=match):
            aws.run(type_name, payload, **context)
        listed = aws.client("s3").list_objects_v2(Bucket=aws.settings.files_bucket, Prefix="processed/")
        assert listed.get("KeyCount", 0) == 0  # nothing written

    return check


def test_a_file_that_is_not_an_image_is_permanent(aws: Aws) -> None:
    key = _upload(aws, f"uploads/{TENANT}/notes.png", b"GIF89a" + b"\0" * 100)
    _permanent(aws, "image-grayscale", {"key": key})("not a PNG or JPEG")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_image_over_the_pixel_limit_is_permanent(aws: Aws) -> None:
    key = _upload(aws, f"uploads/{TENANT}/big.png", _image("PNG", (200, 100)))
    _permanent(aws, "image-grayscale", {"key": key}, image_max_pixels=10_000)("at most 10000")


def test_another_tenants_upload_is_permanent(aws: Aws) -> None:
    key = _upload(aws, "uploads/other-tenant/photo.png", _image("PNG", (8, 8)))
    _permanent(aws, "image-resize", {"key": key, "width": 4})("not your upload")


def test_a_missing_upload_is_permanent(aws: Aws) -> None:
    _permanent(aws, "image-grayscale", {"key": f"uploads/{TENANT}/never-uploaded.png"})("does not exist")


# --- AI, with the local provider (what make run uses) ---


def test_embeddings_and_content_run_on_the_local_provider(aws: Aws) -> None:
    assert aws.settings.ai_provider == "local"
    embedding = aws.run("generate-embedding", {"text": "Serverless queues decouple producers"})
    assert (embedding["provider"], embedding["dimensions"], len(embedding["embedding"])) == ("local", 384, 384)
    content = aws.run("generate-content", {"prompt": "Summarise: queues decouple producers", "maxTokens": 64})
    assert content["provider"] == "local" and content["text"].startswith("[local provider]")
    assert content["usage"]["outputTokens"] <= 64


# --- what the deployment allows, refused at enqueue through the API (never a failure after acceptance) ---


@pytest.fixture
def without_a_sender(service: Service, monkeypatch: pytest.MonkeyPatch) -> Service:
    """The service as deployed without -c senderEmail: the functions' JOBS_EMAIL_SENDER is empty."""
    monkeypatch.setenv("JOBS_EMAIL_SENDER", "")
    runtime.reset()
    return service


def test_without_a_sender_send_email_is_refused_at_enqueue(without_a_sender: Service) -> None:
    service = without_a_sender
    # When a send-email job is submitted, alone, in a batch and as a webhook
    email = {"type": "send-email", "payload": {"to": "ann@example.com", "subject": "s", "body": "b"}}
    status, body, _ = service.api("POST", "/jobs", email)
    batch_status, batch_body, _ = service.api("POST", "/jobs/batch", {"jobs": [email]})
    hook_status, hook_body, _ = service.api("POST", "/hooks/send-email", email["payload"])
    # Then each is a 400 naming the setting, and nothing was accepted or queued
    assert (status, body["code"]) == (400, "INVALID_TYPE"), body
    assert "JOBS_EMAIL_SENDER" in body["error"] and "senderEmail" in body["error"]
    assert (batch_status, batch_body["code"]) == (400, "INVALID_TYPE"), batch_body
    assert (hook_status, hook_body["code"]) == (400, "INVALID_TYPE"), hook_body
    assert "JOBS_EMAIL_SENDER" in hook_body["error"]
    assert service.api("GET", "/jobs")[1]["jobs"] == []
    assert set(service.queue_counts().values()) == {0}


def test_make_run_has_a_sender_so_send_email_is_accepted(service: Service) -> None:
    email = {"type": "send-email", "payload": {"to": "ann@example.com", "subject": "s", "body": "b"}}
    assert service.settings.email_sender == "jobs@example.com"
    assert service.api("POST", "/jobs", email).status == 202


def test_a_model_outside_the_allowed_list_is_refused_at_enqueue(service: Service) -> None:
    # When a job names a model the deployment does not allow (IAM would deny it at run time), alone, in a batch
    # and as a webhook
    job = {"type": "generate-content", "payload": {"prompt": "hi", "model": "anthropic.claude-3-haiku-20240307-v1:0"}}
    status, body, _ = service.api("POST", "/jobs", job)
    batch_status, batch_body, _ = service.api("POST", "/jobs/batch", {"jobs": [job]})
    hook_status, hook_body, _ = service.api("POST", "/hooks/generate-content", job["payload"])
    # Then each is 400 INVALID_PAYLOAD at the model field; an allowed inference profile is accepted
    assert (status, body["code"]) == (400, "INVALID_PAYLOAD"), body
    assert [detail["field"] for detail in body["details"]] == ["model"]
    assert (batch_status, batch_body["code"]) == (400, "INVALID_PAYLOAD"), batch_body
    assert (hook_status, hook_body["code"]) == (400, "INVALID_PAYLOAD"), hook_body
    assert service.api("GET", "/jobs")[1]["jobs"] == []
    allowed = {"type": "generate-content", "payload": {"prompt": "hi", "model": "us.amazon.nova-lite-v1:0"}}
    assert service.api("POST", "/jobs", allowed).status == 202

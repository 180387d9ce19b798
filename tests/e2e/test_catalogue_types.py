"""The catalogue's job types over HTTP against the local stack (moto S3/SES/DynamoDB, the local AI provider)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import FIRST_KEY, Client, LocalStackProcess, tenant_of

pytestmark = pytest.mark.e2e

BUCKET = "jobs-files"
IMPORTS_TABLE = "job-imports"


def tenant_name(stack: LocalStackProcess, client: Client) -> str:
    """The tenant of a key: its ``tenant`` tag, as the API maps it."""
    return tenant_of(stack, client.key)


def _png(size: tuple[int, int]) -> bytes:
    image = Image.new("RGB", size, (220, 40, 40))
    image.putpixel((0, 0), (0, 255, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_catalogue_jobs_complete_over_http(stack: LocalStackProcess, tenant: Client) -> None:
    # Given an image uploaded under the tenant's prefix in the stack's bucket
    name = tenant_name(stack, tenant)
    s3 = stack.aws("s3")
    upload = f"uploads/{name}/e2e.png"
    s3.put_object(Bucket=BUCKET, Key=upload, Body=_png((30, 20)), ContentType="image/png")

    # When one job of each kind is enqueued
    jobs = {
        "image-grayscale": tenant.enqueue({"type": "image-grayscale", "payload": {"key": upload}}),
        "batch-import": tenant.enqueue(
            {
                "type": "batch-import",
                "payload": {"namespace": "e2e", "items": [{"id": i, "score": i / 2} for i in range(30)]},
            }
        ),
        "send-email": tenant.enqueue(
            {"type": "send-email", "payload": {"to": "ann@example.com", "subject": "Hi", "body": "Hello"}}
        ),
        "generate-embedding": tenant.enqueue({"type": "generate-embedding", "payload": {"text": "hello world"}}),
    }

    # Then each completes with the documented result
    done = {kind: tenant.wait_for(job["id"], {"completed", "failed"}) for kind, job in jobs.items()}
    assert {kind: job["status"] for kind, job in done.items()} == dict.fromkeys(jobs, "completed"), done

    image = done["image-grayscale"]["result"]
    assert image["key"] == f"processed/{jobs['image-grayscale']['id']}.png"
    assert (image["contentType"], image["width"], image["height"]) == ("image/png", 30, 20)
    stored = s3.get_object(Bucket=BUCKET, Key=image["key"])
    assert stored["ContentType"] == "image/png"
    with Image.open(io.BytesIO(stored["Body"].read())) as processed:
        assert (processed.mode, processed.size) == ("L", (30, 20))

    assert done["batch-import"]["result"] == {"namespace": "e2e", "written": 30, "batches": 2, "retries": 0}
    count = stack.aws("dynamodb").query(
        TableName=IMPORTS_TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"{name}#e2e"}},
        Select="COUNT",
    )["Count"]
    assert count == 30

    assert done["send-email"]["result"]["messageId"]
    embedding = done["generate-embedding"]["result"]
    assert (embedding["provider"], embedding["dimensions"], len(embedding["embedding"])) == ("local", 384, 384)


@pytest.mark.parametrize(
    ("type_name", "payload", "field"),
    [
        ("send-email", {"to": ["not-an-address"], "subject": "s", "body": "b"}, "to.0"),
        ("batch-import", {"namespace": "n", "items": [{"id": 1}, {"id": 1}]}, "items"),
        ("image-grayscale", {"key": "elsewhere/x.png"}, "key"),
        # The caller's own upload prefix (tenant e2e-a), so the only fault is the missing width and height
        ("image-resize", {"key": "uploads/e2e-a/x.png"}, "payload"),
        ("generate-embedding", {"text": ""}, "text"),
        ("generate-content", {"prompt": "hi", "maxTokens": 5000}, "maxTokens"),
    ],
)
def test_an_invalid_payload_is_a_400_at_enqueue(
    stack: LocalStackProcess, type_name: str, payload: dict[str, Any], field: str
) -> None:
    # Nothing is stored, so the stack's own key will do (a fresh tenant costs a second of key propagation)
    response = Client(stack.url, FIRST_KEY).post("/jobs", {"type": type_name, "payload": payload})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "INVALID_PAYLOAD"
    assert field in [detail["field"] for detail in body["details"]]

"""Files over HTTP against the local stack: upload with the presigned URL, results before and after completion, and
the image flow (upload a PNG, turn it grey, download the result)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import requests
from PIL import Image

from functions.logic.job_types import registered_types
from tests.e2e.conftest import SECOND_KEY, Client, LocalStackProcess

pytestmark = pytest.mark.e2e

FINAL = {"completed", "failed", "cancelled"}


def _png(width: int = 64, height: int = 48) -> bytes:
    """A colourful RGB PNG: a red-to-blue gradient with a green stripe."""
    image = Image.new("RGB", (width, height))
    for x in range(width):
        for y in range(height):
            image.putpixel((x, y), (255 * x // width, 200 if 10 <= y < 20 else 0, 255 - 255 * x // width))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _upload(tenant: Client, data: bytes, content_type: str = "image/png") -> dict[str, Any]:
    response = tenant.post("/uploads", {"contentType": content_type, "size": len(data)})
    assert response.status_code == 201, response.text
    upload = dict(response.json())
    put = requests.request(upload["method"], upload["uploadUrl"], data=data, headers=upload["headers"], timeout=10)
    assert put.status_code == 200, put.text
    return upload


def test_an_upload_through_the_presigned_url_lands_in_s3_under_the_tenants_key(
    stack: LocalStackProcess, tenant: Client
) -> None:
    # Given a PNG
    data = _png()
    # When it is uploaded with the URL and headers POST /uploads returned
    upload = _upload(tenant, data)
    # Then the key is in the tenant's prefix and the local S3 (moto server) holds exactly those bytes
    assert upload["key"].startswith("uploads/t-") and upload["key"].endswith(".png")
    assert upload["uploadUrl"].startswith(stack.moto_url + "/")
    stored = stack.aws("s3").get_object(Bucket="jobs-files", Key=upload["key"])
    assert stored["Body"].read() == data and stored["ContentType"] == "image/png"


def test_bad_upload_requests_are_400_invalid_upload(tenant: Client) -> None:
    for body in ({"contentType": "image/gif", "size": 10}, {"contentType": "image/png", "size": 10 * 1024 * 1024 + 1}):
        response = tenant.post("/uploads", body)
        assert response.status_code == 400 and response.json()["code"] == "INVALID_UPLOAD"


def test_the_result_is_409_until_the_job_completes_and_404_for_other_tenants(
    stack: LocalStackProcess, tenant: Client
) -> None:
    # Given a job scheduled an hour ahead
    job = tenant.enqueue({"type": "message", "payload": {"message": "later"}, "delaySeconds": 3600})
    # Then its result is not there yet
    response = tenant.get(f"/jobs/{job['id']}/result")
    assert response.status_code == 409 and response.json()["code"] == "INVALID_STATE"
    # And for another tenant the job does not exist
    other = Client(stack.url, SECOND_KEY)
    assert other.get(f"/jobs/{job['id']}/result").status_code == 404


def test_upload_grayscale_and_download_the_result(tenant: Client) -> None:
    if "image-grayscale" not in registered_types():
        pytest.skip("needs the image-grayscale job type")
    # Given an uploaded colour PNG
    upload = _upload(tenant, _png())
    # When an image-grayscale job runs on it
    job = tenant.enqueue({"type": "image-grayscale", "payload": {"key": upload["key"]}})
    done = tenant.wait_for(job["id"], FINAL)
    assert done["status"] == "completed", done
    # Then its result is a presigned download of processed/<job id>.png
    response = tenant.get(f"/jobs/{job['id']}/result")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["key"] == f"processed/{job['id']}.png" and result["contentType"] == "image/png"
    download = requests.get(result["url"], timeout=10)
    assert download.status_code == 200
    # And what it serves is a grayscale (mode L) PNG of the same size
    image = Image.open(io.BytesIO(download.content))
    assert image.format == "PNG" and image.mode == "L" and image.size == (64, 48)
    # And ?redirect=1 sends a client straight there
    redirect = tenant.get(f"/jobs/{job['id']}/result?redirect=1", allow_redirects=False)
    assert redirect.status_code == 302
    assert requests.get(redirect.headers["Location"], timeout=10).content == download.content


def test_a_completed_job_without_a_file_answers_its_result(tenant: Client) -> None:
    job = tenant.enqueue({"type": "message", "payload": {"message": "no file here"}})
    tenant.wait_for(job["id"], FINAL)
    response = tenant.get(f"/jobs/{job['id']}/result")
    assert response.status_code == 200 and response.json() == {"result": "no file here"}

"""``fetch``: GET a URL (address policy, time and size limits, redirects re-vetted) and store the body in S3.

The body lands at ``fetched/<job id>`` in ``Settings.files_bucket`` with the response's content type; the result
names it (``key``), so ``GET /jobs/{id}/result`` can hand out a presigned URL. 2xx → completed; 408, 429, 5xx,
timeouts and network errors → retried; other statuses, refused addresses and bodies over the limit → failed.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator

from functions.adapters.net import NetError, SafeHttpClient, job_failure, status_failure, validate_http_url
from functions.logic.job_types.registry import JobContext, Payload, job_type, settings_of
from functions.models.bounds import HTTP_URL_PATTERN
from functions.models.errors import RetryableJobError
from functions.settings import Settings

HttpUrl = Annotated[
    str, Field(min_length=1, max_length=2048, pattern=HTTP_URL_PATTERN), AfterValidator(validate_http_url)
]
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def fetched_key(job_id: str) -> str:
    return f"fetched/{job_id}"


class FetchPayload(Payload):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: HttpUrl
    # The limit is the deployment's (JOBS_FETCH_MAX_BYTES); the document states the default one, as for uploads.
    max_bytes: int | None = Field(
        default=None, ge=1, alias="maxBytes", json_schema_extra={"maximum": Settings.fetch_max_bytes}
    )

    @field_validator("max_bytes")
    @classmethod
    def _within_limit(cls, value: int | None, info: ValidationInfo) -> int | None:
        limit = settings_of(info).fetch_max_bytes
        if value is not None and value > limit:
            raise ValueError(f"must be at most {limit} (JOBS_FETCH_MAX_BYTES)")
        return value


@job_type("fetch", payload=FetchPayload)
def fetch(payload: FetchPayload, ctx: JobContext) -> dict[str, Any]:
    limit = min(payload.max_bytes or ctx.settings.fetch_max_bytes, ctx.settings.fetch_max_bytes)
    client = SafeHttpClient.from_settings(ctx.settings)
    try:
        response = client.request("GET", payload.url, max_bytes=limit)
    except NetError as exc:
        raise job_failure(exc, "fetch") from exc
    if not response.ok:
        raise status_failure(response.status, response.reason, f"fetch of {response.url}")
    key = fetched_key(ctx.job_id)
    content_type = response.content_type or DEFAULT_CONTENT_TYPE
    try:
        ctx.client("s3").put_object(
            Bucket=ctx.settings.files_bucket, Key=key, Body=response.body, ContentType=content_type
        )
    except (ClientError, BotoCoreError) as exc:
        raise RetryableJobError(f"storing the fetched body in S3 failed: {exc}") from exc
    return {
        "key": key,
        "contentType": content_type,
        "size": len(response.body),
        "sha256": hashlib.sha256(response.body).hexdigest(),
        "status": response.status,
        "url": response.url,
    }

"""``batch-import``: up to 1,000 objects into the imports table, 25 per ``BatchWriteItem``.

Each item is one DynamoDB item: ``pk = "<tenant>#<namespace>"``, ``sk = str(id)``, the object itself as a JSON
string (``item``; floats stay exact and need no Decimal), ``updatedAt`` and the ``jobId`` that wrote it. Writes are
puts of fixed keys, so a re-run (a retry, a duplicate delivery, the same import again) overwrites the same items:
idempotent. Unprocessed items are re-sent with bounded exponential backoff; still unprocessed after that, the attempt
is retried as a whole.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ConfigDict, Field, field_validator

from functions.adapters.aws_errors import SdkError
from functions.logic.job_types.registry import JobContext, Payload, job_type
from functions.models.bounds import NOT_BLANK_PATTERN
from functions.models.errors import JobFailure, PermanentJobError, RetryableJobError

MAX_ITEMS = 1000
BATCH_SIZE = 25  # BatchWriteItem's limit
MAX_ID_CHARS = 512
# DynamoDB items are at most 400 KB; keys, updatedAt and attribute names fit in the rest.
MAX_ITEM_JSON_BYTES = 390_000
# Unprocessed items: this many BatchWriteItem calls per chunk at most, waiting base * 2^n (full jitter) in between.
MAX_TRIES = 6
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0


def item_key(value: object) -> str:
    return str(value)


def item_json(item: dict[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# What `_ids` checks, for the document: an `id` each (the ids being unique and the size bounded are only described).
_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": NOT_BLANK_PATTERN},
                {"type": "integer"},
            ]
        }
    },
}


class BatchImportPayload(Payload):
    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    items: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_ITEMS,
        description="Objects, each with a unique `id` (a non-blank string or an integer)",
        json_schema_extra={"uniqueItems": True, "items": _ITEM_SCHEMA},
    )

    @field_validator("items")
    @classmethod
    def _ids(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            if "id" not in item:
                raise ValueError(f"items[{index}] has no 'id'")
            item_id = item["id"]
            if isinstance(item_id, bool) or not isinstance(item_id, (str, int)):
                raise ValueError(f"items[{index}].id must be a string or an integer")
            key = item_key(item_id)
            if not key.strip() or len(key) > MAX_ID_CHARS:
                raise ValueError(f"items[{index}].id must be 1-{MAX_ID_CHARS} characters and not blank")
            if key in seen:
                raise ValueError(f"items[{index}].id {key!r} repeats items[{seen[key]}].id (ids must be unique)")
            seen[key] = index
            try:
                size = len(item_json(item).encode())
            except ValueError as exc:  # NaN or Infinity
                raise ValueError(f"items[{index}] is not valid JSON: {exc}") from exc
            if size > MAX_ITEM_JSON_BYTES:
                raise ValueError(f"items[{index}] is {size} bytes as JSON; at most {MAX_ITEM_JSON_BYTES}")
        return items


_DDB_RETRYABLE = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)


def dynamodb_failure(exc: ClientError | BotoCoreError, table: str) -> JobFailure:
    if isinstance(exc, BotoCoreError):
        return RetryableJobError(f"DynamoDB did not answer: {exc}")
    error = SdkError.of(exc)
    code, message, status = error.code, error.message, error.status
    text = f"BatchWriteItem on {table} failed: {code}: {message}"
    if code in _DDB_RETRYABLE or status >= 500 or status == 429:
        return RetryableJobError(text)
    # ValidationException, ResourceNotFoundException, AccessDeniedException...: a retry meets the same answer.
    return PermanentJobError(text)


def _backoff(retry: int, rng: random.Random) -> float:
    return rng.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**retry))


def write_items(
    client: Any,
    table: str,
    pk: str,
    items: list[dict[str, Any]],
    job_id: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    now: datetime | None = None,
    progress: Callable[..., None] | None = None,
) -> dict[str, int]:
    """Put the items in chunks of 25; re-send unprocessed items. Returns {written, batches, retries}."""
    rng = rng or random.Random()
    updated_at = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    requests = [
        {
            "PutRequest": {
                "Item": {
                    "pk": {"S": pk},
                    "sk": {"S": item_key(item["id"])},
                    "item": {"S": item_json(item)},
                    "updatedAt": {"S": updated_at},
                    "jobId": {"S": job_id},
                }
            }
        }
        for item in items
    ]
    batches = retries = 0
    for start in range(0, len(requests), BATCH_SIZE):
        pending: list[dict[str, Any]] = requests[start : start + BATCH_SIZE]
        batches += 1
        for attempt in range(MAX_TRIES):
            if attempt:
                retries += 1
                sleep(_backoff(attempt - 1, rng))
            try:
                response = client.batch_write_item(RequestItems={table: pending})
            except (ClientError, BotoCoreError) as exc:
                raise dynamodb_failure(exc, table) from exc
            pending = response.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                break
        else:
            raise RetryableJobError(
                f"{len(pending)} items still unprocessed after {MAX_TRIES} BatchWriteItem calls "
                f"(items {start}-{start + BATCH_SIZE - 1}); the import is retried (its writes are idempotent)"
            )
        if progress is not None:
            done = min(start + BATCH_SIZE, len(requests))
            progress(100 * done / len(requests), f"{done}/{len(requests)} items written")
    return {"written": len(requests), "batches": batches, "retries": retries}


@job_type("batch-import", payload=BatchImportPayload)
def batch_import(payload: BatchImportPayload, ctx: JobContext) -> dict[str, Any]:
    counts = write_items(
        ctx.client("dynamodb"),
        ctx.settings.imports_table,
        f"{ctx.tenant}#{payload.namespace}",
        payload.items,
        ctx.job_id,
        progress=ctx.report_progress,
    )
    return {"namespace": payload.namespace, **counts}

"""Webhook ingest: ``POST /hooks/{type}`` turns an external service's raw body into a job of that type.

The external service gets its answer (202) as soon as the job is stored and queued; the slow work runs in the
consumer. The checks, in order:

1. the raw body is at most ``MAX_BODY_BYTES`` (256 KiB) → otherwise ``PAYLOAD_TOO_LARGE``;
2. when the tenant configured an ingest secret, ``X-Jobs-Signature: t=<unix s>,v1=<hex HMAC-SHA256>`` must sign
   ``f"{t}."`` + the raw body bytes with it, ``t`` within ``SIGNATURE_TOLERANCE_SECONDS`` of now (the scheme of the
   service's own outbound webhooks; several ``v1=`` values are accepted, for rotation) → otherwise
   ``INVALID_SIGNATURE``. No secret configured: no verification (the API key still authenticates the caller);
3. the query may set ``priority`` (``PRIORITY_MIN``-``PRIORITY_MAX``, default ``PRIORITY_DEFAULT``); anything else is
   ``INVALID_QUERY``;
4. the type is registered (``INVALID_TYPE``), the body is a JSON object (``INVALID_BODY``) and fits the type's
   payload model (``INVALID_PAYLOAD``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from functions.dal.files import FileStore
from functions.dal.jobs_repository import JobsRepository
from functions.logic import json_body
from functions.logic.clock import Clock
from functions.logic.enqueue import EnqueueSettings, JobSpec, submit
from functions.logic.job_types import get_job_type
from functions.logic.lanes import JobQueue
from functions.models.bounds import HOOK_BODY_MAX_BYTES, PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN
from functions.models.errors import InvalidBody, InvalidQuery, InvalidSignature, PayloadTooLarge
from functions.models.job import Job
from functions.settings import Settings

MAX_BODY_BYTES = HOOK_BODY_MAX_BYTES
SIGNATURE_TOLERANCE_SECONDS = 300
QUERY_OPTIONS = frozenset({"priority"})


def check_size(raw: bytes) -> None:
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is {len(raw)} bytes; webhooks may be at most {MAX_BODY_BYTES}")


def verify(raw: bytes, signature: str | None, secret: str | None, now_ms: int) -> None:
    """Raise ``InvalidSignature`` unless no secret is configured or ``signature`` signs ``raw`` with it, recently."""
    if secret is None:
        return
    if not signature:
        raise InvalidSignature("this tenant verifies webhooks: the X-Jobs-Signature header is required")
    from functions.logic.job_types.webhook import verify_signature  # with its HTTP side: only signed webhooks

    if not verify_signature(secret, signature, raw, tolerance_seconds=SIGNATURE_TOLERANCE_SECONDS, now=now_ms / 1000):
        raise InvalidSignature(
            "X-Jobs-Signature does not match the body, is malformed, or its timestamp is more than "
            f"{SIGNATURE_TOLERANCE_SECONDS} s away"
        )


def parse_hook(
    type_name: str,
    raw: bytes,
    query: Mapping[str, str],
    settings: Settings | None = None,
    tenant: str | None = None,
) -> JobSpec:
    """The job a verified webhook asks for: its body, validated by the type's model, is the payload.
    ``settings`` and ``tenant``: what it is validated under, as ``parse_job_spec``'s."""
    unknown = sorted(set(query) - QUERY_OPTIONS)
    if unknown:
        raise InvalidQuery(f"unknown query parameter(s): {', '.join(unknown)}; only 'priority' is accepted")
    priority = PRIORITY_DEFAULT
    if "priority" in query:
        raw_priority = query["priority"]
        in_range = (
            raw_priority.isascii() and raw_priority.isdigit() and PRIORITY_MIN <= int(raw_priority) <= PRIORITY_MAX
        )
        if not in_range:
            raise InvalidQuery(f"'priority' must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}")
        priority = int(raw_priority)
    job_type = get_job_type(type_name)
    body = _json_object(raw)
    validated = job_type.parse_payload(body, settings, at_enqueue=True, tenant=tenant)
    return JobSpec(type=job_type.name, payload=validated.model_dump(mode="json", by_alias=True), priority=priority)


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise InvalidBody("the body must be a JSON object (it becomes the job's payload)")
    body = json_body.loads(raw, payload_at_root=True, not_json="the body is not valid JSON (UTF-8)")
    if not isinstance(body, dict):
        raise InvalidBody("the body must be a JSON object (it becomes the job's payload)")
    return body


def ingest(
    type_name: str,
    raw: bytes,
    *,
    tenant: str,
    signature: str | None,
    secret_for: Callable[[str], str | None],
    query: Mapping[str, str],
    repo: JobsRepository,
    queue: JobQueue,
    clock: Clock,
    settings: EnqueueSettings,
    files: Callable[[], FileStore] | None = None,
) -> Job:
    """Check, verify and enqueue one inbound webhook (see the module's docstring); returns the accepted job."""
    check_size(raw)
    verify(raw, signature, secret_for(tenant), clock())
    spec = parse_hook(type_name, raw, query, settings.job_settings, tenant)
    return submit(spec, tenant, repo, queue, clock, settings, files=files).job

"""The API's requests as pydantic models: each one validates its request and is what the OpenAPI document says.

Strict: a number is a JSON number of the right kind (``"5"`` and ``true`` are not an integer; ``5.0`` is 5, as the
body's parser reads it, ``functions/logic/json_body.py``), a string a JSON string; unknown fields are refused. The
logic maps a model's errors to the API's codes (``INVALID_OPTION``, ``INVALID_MESSAGE``, ``INVALID_QUERY``...); the
document's job-type union is built from ``JobOptions`` and each type's payload model
(``functions/handlers/openapi.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from functions.models.bounds import (
    CALLBACK_URL_MAX_LENGTH,
    DELAY_SECONDS_MAX,
    DEPENDS_ON_MAX,
    GROUP_ID_MAX_LENGTH,
    HTTP_URL_PATTERN,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    JOB_ID_MAX_LENGTH,
    MAX_ATTEMPTS_DEFAULT,
    MAX_ATTEMPTS_MAX,
    MAX_ATTEMPTS_MIN,
    MAX_BATCH_JOBS,
    MESSAGE_MAX_LENGTH,
    NOT_BLANK_PATTERN,
    PRINTABLE_PATTERN,
    PRIORITY_DEFAULT,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TIMEOUT_SECONDS_MAX,
    TIMEOUT_SECONDS_MIN,
    WHITESPACE_CLASS,
)

RUN_AT_MESSAGE = "'runAt' must be an ISO-8601 timestamp with a UTC offset, at most one year ahead"
BOTH_TIMES_MESSAGE = "give either 'delaySeconds' or 'runAt', not both"

GroupId = Annotated[str, Field(min_length=1, max_length=GROUP_ID_MAX_LENGTH, pattern=PRINTABLE_PATTERN)]
# An http(s) URL: a callbackUrl, and the URLs of the fetch, crawl-website and webhook-delivery payloads.
HttpUrl = Annotated[str, Field(min_length=1, max_length=CALLBACK_URL_MAX_LENGTH, pattern=HTTP_URL_PATTERN)]
JobIdRef = Annotated[str, Field(min_length=1, max_length=JOB_ID_MAX_LENGTH, pattern=PRINTABLE_PATTERN)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=IDEMPOTENCY_KEY_MAX_LENGTH, pattern=PRINTABLE_PATTERN)]


def _date_time_without_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)
    schema["format"] = "date-time"


class RequestModel(BaseModel):
    """Strict, closed to unknown fields, built on first use (not at every cold start)."""

    model_config = ConfigDict(strict=True, extra="forbid", defer_build=True)


class JobOptions(RequestModel):
    """How a job runs: the options of ``POST /jobs``, of each spec of a batch and of its onComplete job."""

    model_config = ConfigDict(
        # delaySeconds and runAt exclude each other (the server refuses both, so the document says so).
        json_schema_extra={"not": {"required": ["delaySeconds", "runAt"]}},
    )

    priority: int = Field(
        default=PRIORITY_DEFAULT,
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
        description="Higher runs sooner (a separate lane from the high-priority threshold)",
    )
    maxAttempts: int = Field(default=MAX_ATTEMPTS_DEFAULT, ge=MAX_ATTEMPTS_MIN, le=MAX_ATTEMPTS_MAX)
    timeoutSeconds: int | None = Field(
        default=None,
        ge=TIMEOUT_SECONDS_MIN,
        le=TIMEOUT_SECONDS_MAX,
        description="An attempt running longer fails with 'timed out after N s' and is retried like any failure "
        "(default: as long as the consumer's invocation has left)",
    )
    delaySeconds: int = Field(default=0, ge=0, le=DELAY_SECONDS_MAX, description="Run this much later; not with runAt")
    runAt: str = Field(
        default="",  # absent: not scheduled (a field left unset, not the empty string, which is refused)
        description="ISO-8601 with a UTC offset, at most a year ahead (the past means now); not with delaySeconds",
        json_schema_extra=_date_time_without_default,
    )
    groupId: GroupId | None = Field(
        default=None,
        description="Ordered group: its jobs run one at a time in enqueue order (a scheduled one joins when due)",
    )
    callbackUrl: HttpUrl | None = Field(
        default=None,
        description="An http(s) URL that receives a signed POST of the record when the job is final (retried with "
        "backoff)",
    )

    @field_validator("runAt")
    @classmethod
    def _aware_timestamp(cls, value: str) -> str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(RUN_AT_MESSAGE) from exc
        if parsed.tzinfo is None:
            raise ValueError(RUN_AT_MESSAGE)
        return value

    @model_validator(mode="after")
    def _one_time(self) -> JobOptions:
        if {"delaySeconds", "runAt"} <= self.model_fields_set:
            raise ValueError(BOTH_TIMES_MESSAGE)
        return self

    def run_at(self) -> datetime | None:
        """The ``runAt`` instant, if given."""
        return datetime.fromisoformat(self.runAt) if "runAt" in self.model_fields_set else None


class JobRequest(JobOptions):
    """A job to run (``POST /jobs``): a registered type, its payload (validated by the type's model) and options."""

    model_config = ConfigDict(
        # delaySeconds and runAt exclude each other, and dependsOn excludes both (the server refuses them together).
        json_schema_extra={
            "not": {
                "anyOf": [
                    {"required": ["delaySeconds", "runAt"]},
                    {"required": ["dependsOn", "delaySeconds"]},
                    {"required": ["dependsOn", "runAt"]},
                ]
            }
        },
    )

    type: str
    payload: dict[str, Any] | None = Field(default=None, description="Validated by the type's payload model")
    idempotencyKey: IdempotencyKey | None = Field(
        default=None,
        description="Or the Idempotency-Key header: the same key and body within 24 h return the first job (200)",
    )
    dependsOn: list[JobIdRef] | None = Field(
        default=None,
        min_length=1,
        max_length=DEPENDS_ON_MAX,
        description="Ids of the tenant's jobs this one waits for: it is `waiting` until every one is completed, "
        "then runs; cancelled with error 'dependency <id> <status>' if one fails or is cancelled. A repeated id "
        "counts once; an unknown id is INVALID_OPTION. Not with delaySeconds or runAt.",
    )


class MessageRequest(BaseModel):
    """``POST /enqueue``'s body: a message that becomes a ``message`` job (other fields are ignored)."""

    model_config = ConfigDict(strict=True, extra="ignore", defer_build=True)

    # 1 to 500 characters once trimmed: a non-space first and last character, any spaces around them.
    message: str = Field(
        min_length=1,
        pattern=rf"^[{WHITESPACE_CLASS}]*{NOT_BLANK_PATTERN}"
        rf"(?:[\s\S]{{0,{MESSAGE_MAX_LENGTH - 2}}}{NOT_BLANK_PATTERN})?[{WHITESPACE_CLASS}]*$",
        description=f"1 to {MESSAGE_MAX_LENGTH} characters after trimming",
    )


class BatchBody(RequestModel):
    """``POST /jobs/batch``'s body: its children's specs (each a ``JobOptions`` with a type and payload, checked one
    by one so the error names the spec), the job to run when they are all final, and an idempotency key."""

    jobs: list[Any] = Field(min_length=1, max_length=MAX_BATCH_JOBS)
    onComplete: Any = None
    idempotencyKey: IdempotencyKey | None = None


class CancelMatchingRequest(RequestModel):
    """``POST /jobs/cancel``'s body: which of the tenant's cancellable jobs to cancel (both absent: all of them)."""

    status: str | None = Field(
        default=None,
        description="Only jobs in this status: scheduled, pending, retrying or waiting (the cancellable ones)",
    )
    type: str | None = Field(default=None, description="Only jobs of this type")

    @field_validator("status", "type", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Absent means "any"; an explicit null is not a string (the document says string).
        if value is None:
            raise ValueError("must be a string")
        return value

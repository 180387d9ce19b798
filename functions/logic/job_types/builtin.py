"""The built-in job types: ``simulate`` (demo work that takes a while and can be told to fail) and ``message``."""

from __future__ import annotations

import hashlib
import time
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from functions.logic.job_types.registry import JobContext, Payload, job_type
from functions.models.bounds import NOT_BLANK_PATTERN
from functions.models.errors import RetryableJobError


class SimulatePayload(Payload):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    action: Literal["resize", "fetch"] = "resize"
    target: str = Field(min_length=1, max_length=500, json_schema_extra={"pattern": NOT_BLANK_PATTERN})  # not blank
    duration_ms: int = Field(default=50, ge=0, le=60_000, alias="durationMs")
    failure_rate: float = Field(default=0.35, ge=0, le=1, alias="failureRate")
    should_fail: bool = Field(default=False, alias="shouldFail")
    # The work in this many steps, each reporting progress (0: no progress reports).
    steps: int = Field(default=0, ge=0, le=100)

    @field_validator("target")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


def attempt_roll(job_id: str, attempt: int) -> float:
    """A uniform number in [0, 1) fixed by job and attempt: independent per attempt, reproducible in tests."""
    digest = hashlib.sha256(f"{job_id}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@job_type("simulate", payload=SimulatePayload)
def simulate(payload: SimulatePayload, ctx: JobContext) -> str:
    if payload.steps:
        for step in range(1, payload.steps + 1):
            time.sleep(payload.duration_ms / 1000 / payload.steps)
            ctx.report_progress(100 * step / payload.steps, f"{payload.action} step {step} of {payload.steps}")
    elif payload.duration_ms:  # sleep(0) is still a system call and a thread switch
        time.sleep(payload.duration_ms / 1000)
    if payload.should_fail:
        raise RetryableJobError(f"Simulated failure of {payload.action} (shouldFail)")
    if attempt_roll(ctx.job_id, ctx.attempt) < payload.failure_rate:
        raise RetryableJobError(f"Simulated {payload.action} failure on attempt {ctx.attempt}")
    if payload.action == "resize":
        return f"Resized {payload.target} to 800x600 (simulated)"
    return f"Fetched {payload.target} (simulated)"


class MessagePayload(Payload):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(
        min_length=1, max_length=500, json_schema_extra={"pattern": NOT_BLANK_PATTERN}
    )  # trimmed: not blank

    @field_validator("message", mode="before")
    @classmethod
    def _trim(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


@job_type("message", payload=MessagePayload)
def message(payload: MessagePayload, ctx: JobContext) -> str:
    return payload.message

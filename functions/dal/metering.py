"""Counting a job's own AWS calls in-process: a meter per request (the API's create) or per record (the consumer).

botocore hooks on our clients (``attach``): while a meter is active in the current context, every DynamoDB call asks
for its consumed capacity (``ReturnConsumedCapacity=TOTAL``: free, AWS computes it, GSI entries and transactions
included) and every call is counted. Context variables, so a consumer batch's records running at once each have
their own meter.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

# DynamoDB operations that take ReturnConsumedCapacity.
_CAPACITY_OPERATIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "TransactGetItems",
    }
)
_WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


@dataclass
class Meter:
    """The AWS requests and DynamoDB units counted since ``started`` (perf_counter seconds)."""

    requests: float = 0.0
    sqs_requests: float = 0.0  # of ``requests``
    write_units: float = 0.0
    read_units: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    gateway_type: str = "rest"  # the API Gateway type the metered request came through ("rest" or "http")

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


_meter: ContextVar[Meter | None] = ContextVar("jobs_cost_meter", default=None)


@contextmanager
def metered(gateway_type: str = "rest") -> Iterator[Meter]:
    """Count the calls made in this context (and the threads started from a copy of it) until the block ends."""
    meter = Meter(gateway_type=gateway_type)
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)


def current() -> Meter | None:
    return _meter.get()


def attach(client: Any) -> Any:
    """Register the counting hooks on a boto3 client; returns it."""
    events = client.meta.events
    events.register("before-parameter-build.dynamodb", _ask_capacity)
    events.register("after-call", _count)
    return client


def _ask_capacity(params: dict[str, Any], model: Any, **_: Any) -> None:
    if _meter.get() is not None and model.name in _CAPACITY_OPERATIONS:
        params.setdefault("ReturnConsumedCapacity", "TOTAL")


def _count(parsed: dict[str, Any], model: Any, http_response: Any = None, **_: Any) -> None:
    meter = _meter.get()
    if meter is None:
        return
    meter.requests += 1
    service = model.service_model.service_name
    if service == "sqs":
        meter.sqs_requests += 1
    if service != "dynamodb":
        return
    write = model.name in _WRITE_OPERATIONS
    consumed = parsed.get("ConsumedCapacity")
    if consumed is None:
        # A failed conditional write is billed too (AWS returns no capacity with the error): at least a unit.
        if write and http_response is not None and http_response.status_code >= 300:
            meter.write_units += 2 if model.name == "TransactWriteItems" else 1
        return
    for entry in consumed if isinstance(consumed, list) else [consumed]:
        writes, reads = entry.get("WriteCapacityUnits"), entry.get("ReadCapacityUnits")
        if writes is None and reads is None:
            total = float(entry.get("CapacityUnits", 0.0))
            writes, reads = (total, 0.0) if write else (0.0, total)
        meter.write_units += float(writes or 0.0)
        meter.read_units += float(reads or 0.0)


def function_memory_mb(default: int = 512) -> int:
    """The running Lambda function's memory (the runtime sets it), ``default`` elsewhere."""
    return int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", default))


def architecture() -> str:
    return "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"

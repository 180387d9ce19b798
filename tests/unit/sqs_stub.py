"""A stubbed SQS client for the queue tests: botocore's Stubber still validates every request against the SQS
service model, and the parameters of every SendMessage are captured as SQS would receive them."""

from __future__ import annotations

from typing import Any

from botocore.stub import Stubber

from functions.dal.job_queue import QueueLanes
from functions.models.job import JobMessage

BASE = "https://sqs.us-east-1.amazonaws.com/123456789012/"
LANES = QueueLanes(
    normal=BASE + "jobs-queue",
    normal_dlq=BASE + "jobs-dlq",
    high=BASE + "jobs-high",
    high_dlq=BASE + "jobs-high-dlq",
    ordered=BASE + "jobs-ordered.fifo",
    ordered_dlq=BASE + "jobs-ordered-dlq.fifo",
)
ARN = "arn:aws:sqs:us-east-1:123456789012:"
SENT = {"MessageId": "m-1", "MD5OfMessageBody": "0" * 32}


def message(tenant: str = "acme", job_id: str = "job-1", kind: str = "run") -> JobMessage:
    return JobMessage.model_validate({"tenant": tenant, "jobId": job_id, "kind": kind})


def sent_params(sqs: Any, queue: Any, call: Any) -> list[dict[str, Any]]:
    """Run ``call`` against the queue and return the parameters of every SendMessage it made (as SQS receives them)."""
    captured: list[dict[str, Any]] = []
    sqs.meta.events.register("provide-client-params.sqs.SendMessage", lambda params, **_: captured.append(params))
    with Stubber(sqs) as stub:
        for _ in range(5):
            stub.add_response("send_message", SENT, None)
        call(queue)
    return captured

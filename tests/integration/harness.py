"""The integration harness: the real handlers against moto in-process, driven the way Lambda would drive them.

``Service`` bundles the boto3 clients, the queue URLs, the tenants' API key ids and three ways in:
``api()`` (an API Gateway REST proxy event into the API handler), ``deliver()`` / ``drain()`` (SQS events built
from messages really received from the moto queue into the consumer handler, deleting the successes as the
event-source mapping does) and ``sweep()`` (the sweeper logic with a chosen clock).

Three lanes (normal, high, ordered: see functions/dal/job_queue.py), each a queue and a DLQ: ``lane=`` picks one
in ``receive``/``deliver``/``queue_counts``/``dead_letters``; the ordered lane is delivered to ``ordered_handler``.
``drain()`` and ``queue_counts()`` without a lane cover every lane.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlencode

from functions.dal.jobs_repository import DynamoJobsRepository
from functions.handlers import api as api_handler
from functions.handlers import consumer as consumer_handler
from functions.handlers.runtime import batch_settler, runtime
from functions.logic.clock import Clock, iso, system_clock
from functions.logic.sweep import SweepReport, SweepSettings, sweep
from functions.models.job import Job, JobMessage, JobStatus
from functions.settings import Settings
from infra.config import ServiceConfig
from local.aws import LaneQueues
from local.event_source import SqsEventSource
from local.gateway import authorize, build_event
from local.lambda_context import LocalContext

TENANT_A = "tenant-a"
TENANT_B = "tenant-b"
TENANT_A_KEY = "tenant-a-key-0123456789abcdef"
TENANT_B_KEY = "tenant-b-key-0123456789abcdef"

API_TIMEOUT_SECONDS = 10
CONSUMER_TIMEOUT_SECONDS = 5

# The fields of a job record, as the contract lists them.
RECORD_FIELDS = frozenset(
    {
        "id",
        "type",
        "payload",
        "status",
        "priority",
        "attempts",
        "maxAttempts",
        "createdAt",
        "updatedAt",
        "runAt",
        "startedAt",
        "completedAt",
        "result",
        "error",
        "history",
    }
)
STATS_FIELDS = frozenset(
    {
        "enqueued",
        "processed",
        "total",
        "scheduled",
        "pending",
        "processing",
        "retrying",
        "completed",
        "failed",
        "cancelled",
        "waiting",
        "completionRate",
        "failureRate",
    }
)


class _Default:
    """Marks "the caller did not choose a key": tenant A's key is used."""


DEFAULT_KEY: Any = _Default()


class ApiResponse(NamedTuple):
    status: int
    body: Any
    headers: dict[str, str]


def ok_job(target: str = "photo.jpg", **options: Any) -> dict[str, Any]:
    """A POST /jobs body for a simulate job that succeeds on its first attempt."""
    return {"type": "simulate", "payload": {"target": target, "durationMs": 0, "failureRate": 0}, **options}


def failing_job(max_attempts: int = 3, **options: Any) -> dict[str, Any]:
    """A POST /jobs body for a simulate job whose every attempt fails (retryable)."""
    payload = {"target": "broken.jpg", "durationMs": 0, "shouldFail": True}
    return {"type": "simulate", "payload": payload, "maxAttempts": max_attempts, **options}


def statuses(job: dict[str, Any]) -> list[tuple[str, int | None]]:
    """A record's history as (status, attempt) pairs."""
    return [(entry["status"], entry.get("attempt")) for entry in job["history"]]


@dataclass
class Service:
    config: ServiceConfig
    settings: Settings
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    sqs: Any
    dynamodb: Any
    key_ids: dict[str, str]  # tenant -> API key id (the keys table's keyId)
    key_values: dict[str, str]  # API key id -> key value
    # Builds SQS event records exactly as the local event-source emulator does (never started here).
    records: SqsEventSource
    sent: list[dict[str, Any]] = field(default_factory=list)  # SendMessage calls made by the functions
    # normal, high, ordered -> the lane's queue and DLQ; and the record builder of each lane's event source.
    lanes: dict[str, LaneQueues] = field(default_factory=dict)
    lane_records: dict[str, SqsEventSource] = field(default_factory=dict)

    # --- the API ---

    @property
    def key_a(self) -> str:
        return self.key_ids[TENANT_A]

    @property
    def key_b(self) -> str:
        return self.key_ids[TENANT_B]

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: Any = DEFAULT_KEY,
        query: dict[str, str] | None = None,
        raw: str | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiResponse:
        """Call the API handler with the event API Gateway would send. ``raw`` is sent as the body, byte for byte;
        ``headers`` are added to the request's."""
        key_id = self.key_a if isinstance(key, _Default) else key
        if raw is not None:
            data = raw.encode() if isinstance(raw, str) else raw
        else:
            data = json.dumps(body).encode() if body is not None else b""
        raw_path = path + ("?" + urlencode(query) if query else "")
        sent = {"content-type": "application/json", "user-agent": "integration-tests", **(headers or {})}
        value = self.key_values.get(key_id) if key_id else None
        if value:
            sent["x-api-key"] = value
        event = build_event(method, raw_path, sent, data, authorize(value) if value else None, "127.0.0.1")
        response = api_handler.handler(event, LocalContext("api", API_TIMEOUT_SECONDS))
        out_headers = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[name] = ", ".join(values)
        text = response.get("body") or ""
        return ApiResponse(int(response["statusCode"]), json.loads(text) if text else None, out_headers)

    def create_job(self, body: dict[str, Any], key: Any = DEFAULT_KEY) -> dict[str, Any]:
        status, job, _ = self.api("POST", "/jobs", body, key=key)
        assert status == 202, job
        return dict(job)

    def job(self, job_id: str, key: Any = DEFAULT_KEY) -> dict[str, Any]:
        status, job, _ = self.api("GET", f"/jobs/{job_id}", key=key)
        assert status == 200, job
        return dict(job)

    def stats(self, key: Any = DEFAULT_KEY) -> dict[str, Any]:
        status, body, _ = self.api("GET", "/stats", key=key)
        assert status == 200, body
        return dict(body)

    # --- storage, as the functions see it ---

    @property
    def repo(self) -> DynamoJobsRepository:
        return runtime().repo

    def record(self, job_id: str, tenant: str = TENANT_A) -> Job:
        job = self.repo.get(tenant, job_id)
        assert job is not None, f"no record for {tenant}/{job_id}"
        return job

    # --- the queue ---

    def lane_queues(self, lane: str) -> LaneQueues:
        return self.lanes.get(lane) or LaneQueues(self.queue_url, self.queue_arn, self.dlq_url, self.dlq_arn)

    def queue_total(self, queue_url: str) -> int:
        """Every message of one queue: visible, in flight and delayed."""
        return sum(self.queue_counts(queue_url).values())

    def queue_counts(self, queue_url: str | None = None, *, lane: str | None = None) -> dict[str, int]:
        """Message counts of one queue (``queue_url`` or a ``lane``), or of every lane together without either."""
        if queue_url is None and lane is None and self.lanes:
            totals: dict[str, int] = {}
            for each in self.lanes:
                for name, count in self.queue_counts(lane=each).items():
                    totals[name] = totals.get(name, 0) + count
            return totals
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        url = queue_url or self.lane_queues(lane or "normal").queue_url
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
        return {
            name.removeprefix("ApproximateNumberOfMessages").lower() or "visible": int(attributes["Attributes"][name])
            for name in names
        }

    def queue_is_empty(self, queue_url: str | None = None, *, lane: str | None = None) -> bool:
        return sum(self.queue_counts(queue_url, lane=lane).values()) == 0

    def receive(
        self, queue_url: str | None = None, max_messages: int = 10, wait: int = 0, *, lane: str = "normal"
    ) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=queue_url or self.lane_queues(lane).queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def dead_letters(self, expected: int, timeout: float = 5.0, *, lane: str = "normal") -> list[dict[str, Any]]:
        """Receive (and delete) ``expected`` messages from a lane's DLQ, failing if they do not all arrive in time."""
        dlq_url = self.lane_queues(lane).dlq_url
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(found) < expected and time.monotonic() < deadline:
            for message in self.receive(dlq_url):
                found.append(message)
                self.sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
        assert len(found) == expected, f"expected {expected} dead letters, got {[m['Body'] for m in found]}"
        return found

    def send_message_for(self, job_id: str, tenant: str = TENANT_A) -> str:
        """Put a message for a job on the queue by hand (a duplicate, a late copy, a sweeper re-send)."""
        body = JobMessage(tenant=tenant, jobId=job_id).to_body()
        return str(self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)["MessageId"])

    # --- the consumer ---

    def deliver(self, messages: list[dict[str, Any]], *, lane: str = "normal") -> dict[str, Any]:
        """One consumer invocation with these messages received from ``lane``; deletes the successes.

        Returns the handler's response. The ordered lane goes to ``ordered_handler``, the others to ``handler``."""
        records = self.lane_records.get(lane, self.records)
        handler = consumer_handler.ordered_handler if lane == "ordered" else consumer_handler.handler
        event = {"Records": [records._record(message) for message in messages]}
        response = dict(handler(event, LocalContext("consumer", CONSUMER_TIMEOUT_SECONDS)))
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        queue_url = self.lane_queues(lane).queue_url
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return response

    def drain(self, timeout: float = 20.0, *, lanes: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """Deliver until the lanes' queues (all by default) hold nothing (visible, in flight or delayed).

        Returns the handler responses."""
        chosen = lanes or tuple(self.lanes) or ("normal",)
        responses: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            delivered = False
            for lane in chosen:
                messages = self.receive(lane=lane)
                if messages:
                    responses.append(self.deliver(messages, lane=lane))
                    delivered = True
            if delivered:
                continue
            if self._lanes_empty(chosen):
                # The counts are three reads, each at its own instant: a delayed message that turns visible between
                # them counts in none of them. Empty twice running is empty.
                time.sleep(0.05)
                if self._lanes_empty(chosen):
                    return responses
                continue
            if time.monotonic() > deadline:
                counts = {lane: self.queue_counts(lane=lane) for lane in chosen}
                raise AssertionError(f"queues not drained after {timeout}s: {counts}")
            time.sleep(0.05)

    def _lanes_empty(self, lanes: tuple[str, ...]) -> bool:
        return all(self.queue_is_empty(lane=lane) for lane in lanes)

    # --- the sweeper ---

    def sweep(self, clock: Clock = system_clock) -> SweepReport:
        s = runtime().settings
        return sweep(
            runtime().repo,
            runtime().queue,
            clock,
            SweepSettings(
                s.sweep_shards,
                s.pending_grace_seconds,
                s.release_ahead_seconds,
                in_flight_grace_seconds=s.in_flight_grace_seconds,
                orphan_give_up_seconds=s.orphan_give_up_seconds,
            ),
            after_final=batch_settler().job_final,
        )


def make_job(
    tenant: str = TENANT_A,
    *,
    created_ms: int,
    job_type: str = "simulate",
    status: JobStatus = JobStatus.PENDING,
    sweep_at_ms: int | None = None,
) -> Job:
    payload: dict[str, Any] = (
        {"message": "hello"} if job_type == "message" else {"target": "x.jpg", "durationMs": 0, "failureRate": 0}
    )
    return Job(
        id=str(uuid.uuid4()),
        tenant=tenant,
        type=job_type,
        payload=payload,
        status=status,
        priority=5,
        attempts=0,
        max_attempts=3,
        created_at=iso(created_ms),
        updated_at=iso(created_ms),
        history=(),
        sweep_at=iso(sweep_at_ms) if sweep_at_ms is not None else None,
    )

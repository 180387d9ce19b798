"""Priority lanes and ordered groups, end to end under moto: the API routes each job to its lane, each lane's
consumer runs it, and the FIFO lane keeps a group's jobs one at a time, in order, even with consumers racing."""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections.abc import Iterable
from typing import Any

from functions.dal.job_queue import message_group_id
from functions.handlers import consumer as consumer_handler
from functions.logic.clock import parse_iso_ms
from jobsctl.environments import fresh_handler
from local.event_source import SqsEventSource
from tests.integration.harness import (
    CONSUMER_TIMEOUT_SECONDS,
    TENANT_A,
    Service,
    failing_job,
    ok_job,
)


def _job_ids(messages: Iterable[dict[str, Any]]) -> list[str]:
    return [json.loads(m["Body"])["jobId"] for m in messages]


def _peek(service: Service, lane: str) -> list[dict[str, Any]]:
    """The messages a lane's queue would hand out now, given back at once (visibility 0) after looking."""
    messages = service.receive(lane=lane)
    for message in messages:
        service.sqs.change_message_visibility(
            QueueUrl=service.lanes[lane].queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return messages


def _wait_final(service: Service, job_ids: list[str], timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """Poll the records until every job is final; fail with their statuses if that takes longer than ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = {job_id: service.job(job_id) for job_id in job_ids}
        if all(job["status"] in ("completed", "failed", "cancelled") for job in jobs.values()):
            return jobs
        if time.monotonic() > deadline:
            raise AssertionError({job_id: job["status"] for job_id, job in jobs.items()})
        time.sleep(0.1)


def _ran_one_at_a_time_in_order(jobs: list[dict[str, Any]]) -> None:
    """Each job started only after the one enqueued before it had completed."""
    for before, after in itertools.pairwise(jobs):
        assert before["status"] == after["status"] == "completed", (before["status"], after["status"])
        assert parse_iso_ms(after["startedAt"]) >= parse_iso_ms(before["completedAt"]), (before, after)


# --- priority ---


def test_a_high_priority_job_goes_through_the_high_lane_and_is_consumed(service: Service) -> None:
    # Given a normal job and one at the high-priority threshold
    normal = service.create_job(ok_job(priority=7))
    high = service.create_job(ok_job(priority=service.settings.high_priority_threshold))

    # Then each message waits in its own lane's queue
    assert _job_ids(_peek(service, "high")) == [high["id"]]
    assert _job_ids(_peek(service, "normal")) == [normal["id"]]
    assert service.queue_is_empty(lane="ordered")

    # When only the high lane's consumer runs
    service.drain(lanes=("high",))

    # Then the high-priority job is done while the normal one still waits in its queue
    assert service.job(high["id"])["status"] == "completed"
    assert service.job(normal["id"])["status"] == "pending"
    service.drain()
    assert service.job(normal["id"])["status"] == "completed"


# --- ordered groups ---


def test_a_grouped_job_goes_to_the_fifo_queue_in_its_tenants_group(service: Service) -> None:
    # Given a grouped job, high priority too (the group wins: order matters more than speed)
    job = service.create_job(ok_job(groupId="invoices-2024", priority=10))

    # When the ordered lane is read the way the event source reads it
    (message,) = service.receive(lane="ordered")
    record = service.lane_records["ordered"]._record(message)

    # Then the message is in the FIFO queue, in the group of (tenant, groupId), and the record handed to the
    # consumer carries the FIFO attributes as Lambda builds them
    assert _job_ids([message]) == [job["id"]]
    assert record["attributes"]["MessageGroupId"] == message_group_id(TENANT_A, "invoices-2024")
    assert {"MessageDeduplicationId", "SequenceNumber", "ApproximateReceiveCount"} <= set(record["attributes"])
    assert record["eventSourceARN"] == service.lanes["ordered"].queue_arn
    assert service.queue_is_empty(lane="normal") and service.queue_is_empty(lane="high")


def test_a_groups_jobs_run_one_at_a_time_in_enqueue_order_with_two_consumers_racing(service: Service) -> None:
    # Given two groups of five 50 ms jobs, enqueued interleaved
    groups: dict[str, list[str]] = {"A": [], "B": []}
    for i in range(5):
        for group in groups:
            job = service.create_job(ok_job(f"{group}{i}.jpg", groupId=group) | {"payload": _slow(f"{group}{i}")})
            groups[group].append(job["id"])

    # When two pollers (two execution environments, as on Lambda) consume the ordered lane in batches of two
    lane = service.lanes["ordered"]
    pollers = SqsEventSource(
        consumer_handler.ordered_handler,
        lane.queue_url,
        lane.queue_arn,
        batch_size=2,
        batching_window_seconds=0,
        concurrency=2,
        timeout_seconds=CONSUMER_TIMEOUT_SECONDS,
        new_environment=functools.partial(fresh_handler, "functions.handlers.consumer", "ordered_handler"),
    )
    pollers.start()
    try:
        jobs = _wait_final(service, groups["A"] + groups["B"])
    finally:
        pollers.stop()

    # Then within each group every job started after the previous one completed, in enqueue order
    for ids in groups.values():
        _ran_one_at_a_time_in_order([jobs[job_id] for job_id in ids])
    assert pollers.invocations >= 2  # both groups went through the pollers, not one giant batch


def test_a_failing_job_blocks_only_its_own_group_until_it_fails_out(service: Service) -> None:
    # Given group A: a job that always fails (2 attempts) then an ordinary one; group B: two ordinary jobs
    a1 = service.create_job(failing_job(max_attempts=2, groupId="A"))
    a2 = service.create_job(ok_job(groupId="A"))
    b1 = service.create_job(ok_job(groupId="B"))
    b2 = service.create_job(ok_job(groupId="B"))

    # When the ordered consumer gets all four in one batch
    batch = service.receive(lane="ordered")
    assert sorted(_job_ids(batch)) == sorted(j["id"] for j in (a1, a2, b1, b2))
    response = service.deliver(batch, lane="ordered")

    # Then a1's failure fails the rest of group A in the batch (a2 is not even started), group B completes
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    assert failed == {m["MessageId"] for m in batch if _job_ids([m])[0] in (a1["id"], a2["id"])}
    assert service.job(a1["id"])["status"] == "retrying"
    assert (service.job(a2["id"])["status"], service.job(a2["id"])["attempts"]) == ("pending", 0)
    assert [service.job(b["id"])["status"] for b in (b1, b2)] == ["completed", "completed"]
    # and nothing of group A can be received while a1 waits for its retry, though a2 was given back at once
    assert service.receive(lane="ordered") == []
    assert service.queue_counts(lane="ordered")["visible"] == 1

    # When group B gets another job meanwhile, it runs (A does not hold B up)
    b3 = service.create_job(ok_job(groupId="B"))
    messages = service.receive(lane="ordered")
    assert _job_ids(messages) == [b3["id"]]
    service.deliver(messages, lane="ordered")
    assert service.job(b3["id"])["status"] == "completed"
    assert service.job(a2["id"])["status"] == "pending"

    # When the lane is drained (a1's retry comes due, fails for good, then a2's turn comes)
    service.drain(lanes=("ordered",))

    # Then a1 failed out and only then a2 ran; a1's message went to the ordered lane's (FIFO) DLQ
    jobs = [service.job(a1["id"]), service.job(a2["id"])]
    assert (jobs[0]["status"], jobs[0]["attempts"], jobs[1]["status"]) == ("failed", 2, "completed")
    assert parse_iso_ms(jobs[1]["startedAt"]) >= parse_iso_ms(jobs[0]["completedAt"])
    (dead,) = service.dead_letters(1, lane="ordered")
    assert _job_ids([dead]) == [a1["id"]]
    assert dead["Attributes"]["MessageGroupId"]  # a FIFO queue
    assert service.queue_is_empty(lane="normal") and service.dead_letters(0, timeout=0.2, lane="normal") == []


def test_a_grouped_job_that_fails_for_good_is_dead_lettered_to_the_fifo_dlq(service: Service) -> None:
    # Given a grouped job with a single attempt that fails
    job = service.create_job(failing_job(max_attempts=1, groupId="reports"))

    # When the ordered lane is drained
    service.drain(lanes=("ordered",))

    # Then the job failed and its message is in the ordered lane's DLQ with the reason, not in the normal DLQ
    assert service.job(job["id"])["status"] == "failed"
    (dead,) = service.dead_letters(1, lane="ordered")
    assert _job_ids([dead]) == [job["id"]]
    assert dead["MessageAttributes"]["reason"]["StringValue"]
    assert service.dead_letters(0, timeout=0.2, lane="normal") == []


def test_a_scheduled_grouped_job_joins_its_group_when_the_sweeper_releases_it(service: Service) -> None:
    # Given a grouped job scheduled 2 s ahead, then an immediate job of the same group
    scheduled = service.create_job(ok_job(groupId="G", delaySeconds=2))
    run_at = parse_iso_ms(scheduled["runAt"])
    immediate = service.create_job(ok_job(groupId="G"))

    # Then only the immediate job is in the group's line: the scheduled one was not sent at enqueue
    assert scheduled["status"] == "scheduled"
    assert _job_ids(_peek(service, "ordered")) == [immediate["id"]]

    # When the sweeper runs just before the due time, nothing is released; at the due time, it is
    assert service.sweep(clock=lambda: run_at - 1000).released == 0
    assert service.sweep(clock=lambda: run_at).released == 1
    assert [p for p in service.sent if p.get("MessageGroupId") == message_group_id(TENANT_A, "G")]

    # When the lane is drained
    service.drain(lanes=("ordered",))

    # Then the immediate job ran first (it was in line earlier), the scheduled one after it and not before runAt
    jobs = [service.job(immediate["id"]), service.job(scheduled["id"])]
    _ran_one_at_a_time_in_order(jobs)
    assert parse_iso_ms(jobs[1]["startedAt"]) >= run_at


def _slow(target: str) -> dict[str, Any]:
    return {"target": target, "durationMs": 50, "failureRate": 0}

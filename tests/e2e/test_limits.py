"""Per-type limits over HTTP: a local stack started with JOBS_LOCAL_TYPE_LIMITS (its own, next to the session's)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.e2e.conftest import FIRST_KEY, Client, LocalStackProcess, local_stack

pytestmark = pytest.mark.e2e

RATE = 4
CONCURRENCY = 2
DURATION_MS = 300
LIMITS = {"simulate": {"ratePerSecond": RATE, "concurrency": CONCURRENCY}}
LIMITS_TABLE = "job-limits"


@pytest.fixture(scope="module")
def limited_stack() -> Iterator[LocalStackProcess]:
    """``python -m local`` with simulate limited to 4 starts per second and 2 at once (per tenant)."""
    with local_stack(f"{FIRST_KEY}:e2e-limits", JOBS_LOCAL_TYPE_LIMITS=json.dumps(LIMITS)) as running:
        yield running


def _ms(at: str) -> int:
    return int(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000)


def test_jobs_over_a_rate_and_concurrency_limit_wait_and_all_complete(limited_stack: LocalStackProcess) -> None:
    # Given a tenant of the limited stack and 12 simulate jobs of 300 ms each
    client = Client(limited_stack.url, FIRST_KEY)
    payload = {"target": "cat.png", "durationMs": DURATION_MS, "failureRate": 0}
    ids = [client.enqueue({"type": "simulate", "payload": payload})["id"] for _ in range(12)]

    # When they have all run
    jobs = [client.wait_for(job_id, {"completed", "failed", "cancelled"}, timeout=60) for job_id in ids]

    # Then every one completed on its first attempt: waiting did not burn attempts
    assert [(job["status"], job["attempts"]) for job in jobs] == [("completed", 1)] * 12
    for job in jobs:
        assert [entry["status"] for entry in job["history"]] == ["pending", "processing", "completed"]
    # And no one-second window (the limiter's: the second of startedAt) saw more than 4 starts, so 12 took 3 at least
    starts = sorted(_ms(job["startedAt"]) for job in jobs)
    per_second = Counter(start // 1000 for start in starts)
    assert max(per_second.values()) <= RATE, per_second
    assert len(per_second) >= 3
    # And never more than 2 ran at once. Each job's 300 ms of work lies in [completedAt - 300 ms, completedAt], inside
    # its slot's hold. (startedAt is the claim's clock reading, taken a few ms before the slot is: not a bound.)
    ends = [_ms(job["completedAt"]) for job in jobs]
    edges = [(end - DURATION_MS, 1) for end in ends] + [(end, -1) for end in ends]
    running = peak = 0
    for _, step in sorted(edges):  # at equal times an end (-1) sorts before a start
        running += step
        peak = max(peak, running)
    assert peak <= CONCURRENCY


def test_types_without_limits_are_not_held_back(limited_stack: LocalStackProcess) -> None:
    # Given the limited stack, When 6 message jobs (no limit configured) are enqueued
    client = Client(limited_stack.url, FIRST_KEY)
    ids = [client.enqueue({"type": "message", "payload": {"message": f"hi {i}"}})["id"] for i in range(6)]
    jobs = [client.wait_for(job_id, {"completed", "failed"}, timeout=30) for job_id in ids]

    # Then they all completed first time, with no wait recorded (the limits table holds nothing for them)
    assert all((job["status"], job["attempts"]) == ("completed", 1) for job in jobs)
    items = limited_stack.aws("dynamodb").scan(TableName=LIMITS_TABLE)["Items"]
    assert not [item for item in items if "#message#" in item["pk"]["S"]]

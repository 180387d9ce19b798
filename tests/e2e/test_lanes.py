"""Priority lanes and ordered groups over HTTP, against the local stack (``make run``): its own pollers per lane."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from tests.e2e.conftest import Client

FINAL = {"completed", "failed", "cancelled"}


def _ms(value: str) -> float:
    return datetime.fromisoformat(value).timestamp() * 1000


def _simulate(target: str, duration_ms: int, **options: object) -> dict[str, object]:
    return {"type": "simulate", "payload": {"target": target, "durationMs": duration_ms, "failureRate": 0}, **options}


def test_a_groups_jobs_complete_in_enqueue_order_one_at_a_time(tenant: Client) -> None:
    # Given two groups of four jobs each, enqueued interleaved
    groups: dict[str, list[str]] = {"orders-1": [], "orders-2": []}
    for i in range(4):
        for group, ids in groups.items():
            ids.append(tenant.enqueue(_simulate(f"{group}-{i}.jpg", 100, groupId=group))["id"])

    # When every job has finished
    jobs = {job_id: tenant.wait_for(job_id, FINAL) for ids in groups.values() for job_id in ids}

    # Then each group's jobs completed, each starting after the previous one of its group completed
    for ids in groups.values():
        for before, after in itertools.pairwise(jobs[job_id] for job_id in ids):
            assert before["status"] == after["status"] == "completed"
            assert _ms(after["startedAt"]) >= _ms(before["completedAt"]), (before, after)


def test_a_high_priority_job_completes_while_normal_jobs_are_still_queued(tenant: Client) -> None:
    # Given a backlog of normal jobs, more than the normal lane's pollers can take at once
    with ThreadPoolExecutor(max_workers=4) as pool:
        backlog = list(pool.map(lambda i: tenant.enqueue(_simulate(f"bulk-{i}.jpg", 400))["id"], range(80)))

    try:
        # When a high-priority job is enqueued behind them
        urgent = tenant.enqueue(_simulate("urgent.jpg", 0, priority=9))

        # Then it completes while normal jobs are still waiting for their turn
        done = tenant.wait_for(urgent["id"], FINAL)
        pending = tenant.get("/stats").json()["pending"]
        assert done["status"] == "completed"
        assert pending > 0, "the backlog was gone before the high-priority job completed"
    finally:
        # Leave no backlog to the other tests sharing this stack
        for job_id in backlog:
            tenant.delete(f"/jobs/{job_id}")

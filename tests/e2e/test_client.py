"""JobsClient end to end against the local stack: enqueue, wait, paging, cancel, retry, stats, errors."""

from __future__ import annotations

import pytest

from jobsctl import InvalidStateError, JobsClient, NotFoundError, ValidationError
from tests.e2e.conftest import Client, LocalStackProcess, settled

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(stack: LocalStackProcess, tenant: Client) -> JobsClient:
    return JobsClient(stack.url, tenant.key, timeout=10)


def test_enqueue_and_wait_until_completed(client: JobsClient) -> None:
    job = client.enqueue("simulate", {"target": "dog.png", "failureRate": 0}, priority=9, max_attempts=2)
    assert (job.status, job.priority, job.max_attempts) == ("pending", 9, 2)
    done = client.wait(job.id, timeout=30)
    assert done.status == "completed"
    assert done.result == "Resized dog.png to 800x600 (simulated)"
    assert [entry.status for entry in done.history] == ["pending", "processing", "completed"]


def test_wait_returns_a_failed_job_after_its_retries(client: JobsClient) -> None:
    job = client.enqueue("simulate", {"target": "x", "shouldFail": True}, max_attempts=2)
    failed = client.wait(job.id, timeout=30)
    assert (failed.status, failed.attempts) == ("failed", 2)
    retried = client.retry(job.id)
    assert (retried.status, retried.attempts) == ("pending", 0)


def test_list_follows_pages_and_filters(client: JobsClient) -> None:
    ids = [client.enqueue("message", {"message": f"m{i}"}).id for i in range(7)]
    listed = [job.id for job in client.list(type="message", page_size=3)]
    assert listed == list(reversed(ids))  # newest first, across three pages
    for job_id in ids:
        client.wait(job_id, timeout=30)
    assert {job.id for job in client.list(status="completed", page_size=2)} == set(ids)
    stats = settled(client.stats)
    assert (stats.completed, stats.total, stats.completion_rate) == (7, 7, 1.0)


def test_cancel_and_the_errors_carry_their_codes(client: JobsClient) -> None:
    later = client.enqueue("message", {"message": "later"}, delay_seconds=3600)
    assert client.cancel(later.id).status == "cancelled"
    with pytest.raises(InvalidStateError) as state:
        client.cancel(later.id)
    assert (state.value.code, state.value.status) == ("INVALID_STATE", 409)
    with pytest.raises(NotFoundError):
        client.get("no-such-job")
    with pytest.raises(ValidationError) as invalid:
        client.enqueue("simulate", {})
    assert invalid.value.code == "INVALID_PAYLOAD"
    assert invalid.value.details

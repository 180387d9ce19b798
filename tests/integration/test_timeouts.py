"""Job timeouts on moto, through the API and the consumer handler: an attempt past its ``timeoutSeconds`` fails and is
retried by the usual policy; what the abandoned attempt does later never lands on the record."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.harness import Service, ok_job, statuses
from tests.integration.test_api_errors import assert_error

# How long the slow attempts run: well past their 1 s timeout, well within the harness's 5 s invocations.
SLOW_MS = 2500


def slow_job(**options: Any) -> dict[str, Any]:
    """A POST /jobs body for a simulate job that would succeed, but only after SLOW_MS."""
    return {"type": "simulate", "payload": {"target": "slow.jpg", "durationMs": SLOW_MS, "failureRate": 0}, **options}


def test_attempts_past_their_timeout_fail_are_retried_and_their_late_results_are_discarded(service: Service) -> None:
    # Given a job that runs 2.5 s with timeoutSeconds 1 and 2 attempts
    job = service.create_job(slow_job(timeoutSeconds=1, maxAttempts=2))
    assert job["timeoutSeconds"] == 1

    # When the queue is drained
    service.drain(timeout=30)

    # Then each attempt timed out and was retried by the usual policy, the last one failing the job
    failed = service.job(job["id"])
    assert (failed["status"], failed["attempts"], failed["error"]) == ("failed", 2, "timed out after 1 s")
    assert statuses(failed) == [("pending", None), ("processing", 1), ("retrying", 1), ("processing", 2), ("failed", 2)]
    assert [entry.get("error") for entry in failed["history"] if entry["status"] in ("retrying", "failed")] == [
        "timed out after 1 s",
        "timed out after 1 s",
    ]
    (dead,) = service.dead_letters(1)
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "timed out after 1 s"
    # And once the abandoned attempts have finished (each would have returned a result), the record is unchanged
    record = service.record(job["id"])
    time.sleep(SLOW_MS / 1000)
    assert service.record(job["id"]) == record
    assert service.job(job["id"])["result"] is None


def test_a_job_within_its_timeout_completes_and_shows_its_timeout(service: Service) -> None:
    # Given a quick job with timeoutSeconds 30
    job = service.create_job(ok_job(timeoutSeconds=30))
    # When drained
    service.drain()
    # Then it completed on its first attempt, and the record shows its timeout
    done = service.job(job["id"])
    assert (done["status"], done["attempts"], done["timeoutSeconds"]) == ("completed", 1, 30)


def test_a_job_without_a_timeout_shows_none(service: Service) -> None:
    job = service.create_job(ok_job())
    assert "timeoutSeconds" not in job
    assert "timeoutSeconds" not in service.job(job["id"])


def test_a_batch_spec_takes_a_timeout(service: Service) -> None:
    # Given a batch whose one child has timeoutSeconds 1 and runs 2.5 s, allowed one attempt
    status, batch, _ = service.api("POST", "/jobs/batch", {"jobs": [slow_job(timeoutSeconds=1, maxAttempts=1)]})
    assert status == 202, batch
    # When drained
    service.drain(timeout=30)
    # Then the child failed by its timeout
    status, page, _ = service.api("GET", "/jobs", query={"type": "simulate"})
    (child,) = page["jobs"]
    assert (child["timeoutSeconds"], child["status"], child["error"]) == (1, "failed", "timed out after 1 s")
    time.sleep(SLOW_MS / 1000)  # the abandoned attempt ends before the next test


@pytest.mark.parametrize("value", [0, 901, "5", 5.5, True])
def test_a_timeout_outside_1_to_900_or_not_an_integer_is_invalid_option(service: Service, value: Any) -> None:
    body = assert_error(service.api("POST", "/jobs", body=ok_job(timeoutSeconds=value)), 400, "INVALID_OPTION")
    assert body["error"] == "'timeoutSeconds' must be an integer from 1 to 900"


def test_a_batch_spec_with_a_bad_timeout_is_invalid_option_naming_the_spec(service: Service) -> None:
    response = service.api("POST", "/jobs/batch", body={"jobs": [ok_job(), ok_job(timeoutSeconds=901)]})
    body = assert_error(response, 400, "INVALID_OPTION")
    assert body["error"].startswith("jobs[1]: ") and "timeoutSeconds" in body["error"]

"""Job timeouts over HTTP against the local stack: an attempt longer than ``timeoutSeconds`` fails, is retried, and
what it returns late never lands on the record."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import Client

pytestmark = pytest.mark.e2e

FINAL = {"completed", "failed", "cancelled"}
# The simulated work: 3 s, three times the timeout.
SLOW_MS = 3000


def _statuses(job: dict[str, Any]) -> list[tuple[str, int | None]]:
    return [(entry["status"], entry.get("attempt")) for entry in job["history"]]


def test_attempts_longer_than_the_timeout_fail_and_are_retried_and_their_late_results_are_discarded(
    tenant: Client,
) -> None:
    # Given a job whose work takes 3 s, with timeoutSeconds 1 and 2 attempts
    payload = {"target": "slow.png", "durationMs": SLOW_MS, "failureRate": 0}
    job = tenant.enqueue({"type": "simulate", "payload": payload, "timeoutSeconds": 1, "maxAttempts": 2})
    assert job["timeoutSeconds"] == 1
    # When it runs
    done = tenant.wait_for(job["id"], FINAL, timeout=40)
    # Then each attempt timed out, the first retried by the usual policy, the last failing the job
    assert (done["status"], done["attempts"], done["error"]) == ("failed", 2, "timed out after 1 s")
    assert _statuses(done) == [("pending", None), ("processing", 1), ("retrying", 1), ("processing", 2), ("failed", 2)]
    assert done["history"][2]["error"] == "timed out after 1 s"
    # And once the abandoned attempts would have finished with a result, the record is as it was
    time.sleep(SLOW_MS / 1000 + 0.5)
    later = tenant.get(f"/jobs/{job['id']}").json()
    assert later == done
    assert later["result"] is None


def test_a_job_within_its_timeout_completes_and_shows_its_timeout(tenant: Client) -> None:
    job = tenant.enqueue({"type": "simulate", "payload": {"target": "a.png", "failureRate": 0}, "timeoutSeconds": 30})
    done = tenant.wait_for(job["id"], FINAL)
    assert (done["status"], done["timeoutSeconds"]) == ("completed", 30)


@pytest.mark.parametrize("value", [0, 901, "5", 5.5])
def test_a_timeout_outside_1_to_900_or_not_an_integer_is_refused(tenant: Client, value: Any) -> None:
    body = {"type": "simulate", "payload": {"target": "a.png"}, "timeoutSeconds": value}
    response = tenant.post("/jobs", body)
    assert response.status_code == 400
    assert response.json() == {
        "error": "'timeoutSeconds' must be an integer from 1 to 900",
        "code": "INVALID_OPTION",
    }

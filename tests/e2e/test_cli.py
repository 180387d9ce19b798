"""The ``jobs`` command as a user runs it (a subprocess, ``python -m jobsctl``) against the local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, Client, LocalStackProcess, settled

pytestmark = pytest.mark.e2e


def jobs(stack: LocalStackProcess, tenant: Client, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        JOBS_URL=stack.url,
        JOBS_API_KEY=tenant.key,
        AWS_ENDPOINT_URL=stack.moto_url,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",
        COLUMNS="200",
    )
    return subprocess.run(
        [sys.executable, "-m", "jobsctl", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_enqueue_wait_reaches_completed_and_get_list_stats_show_it(stack: LocalStackProcess, tenant: Client) -> None:
    # When a job is enqueued and waited for
    done = as_json(
        jobs(
            stack,
            tenant,
            "enqueue",
            "simulate",
            "--payload",
            '{"target": "cat.png", "failureRate": 0}',
            "--wait",
            "--json",
        )
    )

    # Then it completed, and get / list / stats agree
    assert done["status"] == "completed"
    assert (
        as_json(jobs(stack, tenant, "get", done["id"], "--json"))["result"] == "Resized cat.png to 800x600 (simulated)"
    )
    listed = as_json(jobs(stack, tenant, "list", "--status", "completed", "--json"))
    assert [job["id"] for job in listed] == [done["id"]]
    assert settled(lambda: as_json(jobs(stack, tenant, "stats", "--json")))["completed"] == 1
    shown = jobs(stack, tenant, "get", done["id"])
    assert "Timeline" in shown.stdout and "completed" in shown.stdout


def test_cancel_a_scheduled_job_then_retry_it(stack: LocalStackProcess, tenant: Client) -> None:
    later = as_json(
        jobs(stack, tenant, "enqueue", "message", "--payload", '{"message": "hi"}', "--delay", "3600", "--json")
    )
    assert later["status"] == "scheduled"
    cancelled = jobs(stack, tenant, "cancel", later["id"])
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    again = jobs(stack, tenant, "cancel", later["id"])
    assert again.returncode == 1 and "INVALID_STATE" in again.stderr
    retried = jobs(stack, tenant, "retry", later["id"])
    assert retried.returncode == 0, retried.stderr
    assert tenant.wait_for(later["id"], {"completed"})["result"] == "hi"


def test_errors_show_the_api_code_and_exit_1(stack: LocalStackProcess, tenant: Client) -> None:
    result = jobs(stack, tenant, "enqueue", "nope")
    assert result.returncode == 1
    assert "INVALID_TYPE" in result.stderr
    missing = jobs(stack, tenant, "get", "no-such-job")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_enqueue_file_with_one_bad_line_prints_a_summary_and_exits_1(
    stack: LocalStackProcess, tenant: Client, tmp_path: Path
) -> None:
    lines = [json.dumps({"type": "message", "payload": {"message": f"m{i}"}}) for i in range(5)]
    lines.insert(2, json.dumps({"type": "simulate", "payload": {}}))  # no target: INVALID_PAYLOAD, line 3
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text("\n".join(lines) + "\n")

    result = jobs(stack, tenant, "enqueue-file", str(jobs_file), "--concurrency", "4")

    assert result.returncode == 1
    assert "Accepted 5 of 6 line(s); 1 failed." in result.stdout
    assert "INVALID_PAYLOAD" in result.stderr
    assert settled(lambda: as_json(jobs(stack, tenant, "stats", "--json")))["enqueued"] == 5


def test_dlq_list_shows_a_failed_jobs_message(stack: LocalStackProcess, tenant: Client) -> None:
    # Given a job that failed for good (its message moved to the DLQ by the consumer)
    result = jobs(
        stack,
        tenant,
        "enqueue",
        "simulate",
        "--payload",
        '{"target": "x", "shouldFail": true}',
        "--max-attempts",
        "1",
        "--wait",
        "--json",
    )
    assert result.returncode == 1  # --wait exits 1 when the job does not complete
    failed = json.loads(result.stdout)
    assert failed["status"] == "failed"

    # When the operator lists the DLQ through the local AWS endpoint (the consumer sends the message right after
    # recording the failure, so allow it a moment)
    deadline = time.monotonic() + 10
    while True:
        letters = as_json(jobs(stack, tenant, "dlq", "list", "--limit", "100", "--json"))
        mine = [letter for letter in letters if letter["jobId"] == failed["id"]]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    # Then the job's message is there with its tenant and the reason
    (letter,) = mine
    assert letter["tenant"].startswith("t-")
    assert letter["reason"]

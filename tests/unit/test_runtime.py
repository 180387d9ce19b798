"""The composition root's process-wide settings, checked in a fresh interpreter as a Lambda container has it (pytest
installs warning filters of its own around every test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

INVOKE = """
import warnings
from functions.handlers.runtime import metrics
from local.lambda_context import LocalContext

@metrics.log_metrics
def read_only(event, context):
    return "read"

print(read_only({}, LocalContext("api", 3)))
warnings.warn("a warning of another kind", UserWarning)
"""


def test_an_invocation_that_emits_no_metric_writes_no_plain_text_warning() -> None:
    # Given a container with metrics switched on
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    env |= {"POWERTOOLS_METRICS_NAMESPACE": "ServerlessJobs", "POWERTOOLS_SERVICE_NAME": "jobs-api"}

    # When an invocation emits no metric
    run = subprocess.run([sys.executable, "-c", INVOKE], cwd=ROOT, env=env, capture_output=True, text=True)

    # Then it answers and Powertools' "no application metrics" warning is not written; other warnings still are
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "read"
    assert "a warning of another kind" in run.stderr
    assert "No application metrics" not in run.stderr, run.stderr


CONCURRENT_FUNCTIONS = """
import json, threading
from functions.handlers.runtime import logger
from functions.logic.consume import logger as logic_logger
from local.lambda_context import LocalContext

api_entered, consumer_logged = threading.Event(), threading.Event()

@logger.inject_lambda_context
def api(event, context):
    api_entered.set()
    consumer_logged.wait(5)  # the consumer's invocation starts and logs meanwhile
    logger.warning("api line")

@logger.inject_lambda_context
def consumer(event, context):
    api_entered.wait(5)
    logic_logger.warning("job failed")
    consumer_logged.set()

threads = [
    threading.Thread(target=api, args=({}, LocalContext("api", 3))),
    threading.Thread(target=consumer, args=({}, LocalContext("consumer", 3))),
]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def test_functions_sharing_a_process_keep_their_own_lambda_context_in_log_lines() -> None:
    # Given two functions invoked at the same time in one process (as the local stack runs them), the consumer's
    # invocation starting while the API's is still running
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    env |= {"POWERTOOLS_SERVICE_NAME": "jobs", "POWERTOOLS_METRICS_DISABLED": "true"}

    # When each logs a line
    run = subprocess.run(
        [sys.executable, "-c", CONCURRENT_FUNCTIONS], cwd=ROOT, env=env, capture_output=True, text=True
    )

    # Then each line names its own function, the logic module's line (a child logger) included
    assert run.returncode == 0, run.stderr
    lines = {line["message"]: line for line in map(json.loads, run.stdout.splitlines())}
    assert lines["job failed"]["function_name"] == "consumer"
    assert lines["api line"]["function_name"] == "api"


SWEEP = """
from functions.handlers.runtime import emit, metrics
from local.lambda_context import LocalContext

@metrics.log_metrics
def sweep(event, context):
    emit("ScheduledReleased", 0)
    emit("PendingResent", 2)
    emit("JobDurationMs", 0.0)
    return "swept"

print(sweep({}, LocalContext("sweeper", 3)))
"""


def test_a_zero_count_is_not_published() -> None:
    # Given a container with metrics switched on
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    env |= {"POWERTOOLS_METRICS_NAMESPACE": "ServerlessJobs", "POWERTOOLS_SERVICE_NAME": "jobs"}

    # When an invocation emits a zero count, a count and a zero duration
    run = subprocess.run([sys.executable, "-c", SWEEP], cwd=ROOT, env=env, capture_output=True, text=True)

    # Then its metrics line has the count and the duration, not the zero count (a metric billed for nothing)
    assert run.returncode == 0, run.stderr
    emf = json.loads(run.stdout.splitlines()[0])
    assert {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == {"PendingResent", "JobDurationMs"}
    assert run.stdout.splitlines()[-1] == "swept"

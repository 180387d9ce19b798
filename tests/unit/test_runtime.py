"""The composition root's process-wide settings, checked in a fresh interpreter as a Lambda container has it (pytest
installs warning filters of its own around every test)."""

from __future__ import annotations

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

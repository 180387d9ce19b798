"""Shared test set-up: never reach real AWS, whatever the machine's environment says."""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "jobs",
        "POWERTOOLS_METRICS_NAMESPACE": "ServerlessJobs",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)
# A pytest-xdist worker starts with COLUMNS=80 and LINES=24 in its environment; a console created at import (the
# CLI's) would keep that width for good, where a test sets its own. Workers run with the environment of a plain run.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

# moto as the local stack runs it (local.aws.patch_moto): DynamoDB and SQS requests one at a time (FIFO groups hold
# across concurrent receivers), transactions without table copies, no whole-queue scans, plain JSON item reads.
from local.aws import patch_moto
from local.iam_calls import record_from_env

patch_moto()

# JOBS_IAM_RECORD_DIR: record the functions' AWS calls for the IAM coverage check (tests/iam, `make iam-check`).
record_from_env()

# --- parallel runs (pytest-xdist, `--dist loadfile`; see the Makefile) ---

# Files that run longest, handed out first so that no worker is left running one of them alone at the end.
SLOWEST_FIRST = (
    "tests/integration/test_chaos.py",
    "tests/infrastructure",
    "tests/e2e/test_load.py",
    "tests/e2e/test_fuzz.py",
    "tests/e2e/test_dashboard.py",
    "tests/unit/test_validators_properties.py",
    "tests/unit/test_lambda_packaging.py",
)
# Files of the infrastructure suite that do not use its session's synthesized app (they synthesize on their own).
OWN_SYNTH = ("tests/infrastructure/test_cli_synth.py",)


def work_unit(nodeid: str) -> str:
    """What one worker runs as a whole: a test's file, so a file's module fixtures (a local stack, a browser) start
    once, on one worker; the infrastructure suite's files that share the synthesized app are one unit, so it is
    synthesized once per run."""
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/infrastructure/") and path not in OWN_SYNTH:
        return "tests/infrastructure"
    return path


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, with the work units above. (xdist's own `loadgroup` marks cannot be used: they rewrite
    test ids in a way pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnitScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the order the workers report is the order work is handed out

        def rank(item: pytest.Item) -> int:
            path = item.nodeid.split("::", 1)[0]
            return next((n for n, slow in enumerate(SLOWEST_FIRST) if path.startswith(slow)), len(SLOWEST_FIRST))

        items.sort(key=rank)  # stable: a file keeps its tests' order

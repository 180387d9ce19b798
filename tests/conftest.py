"""Shared test set-up: never reach real AWS, whatever the machine's environment says."""

from __future__ import annotations

import os

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

# moto as the local stack runs it (local.aws.patch_moto): DynamoDB and SQS requests one at a time (FIFO groups hold
# across concurrent receivers), transactions without table copies, no whole-queue scans, plain JSON item reads.
from local.aws import patch_moto
from local.iam_calls import record_from_env

patch_moto()

# JOBS_IAM_RECORD_DIR: record the functions' AWS calls for the IAM coverage check (tests/iam, `make iam-check`).
record_from_env()

"""AWS list prices (us-east-1, on-demand, first tier, no free tier), in US dollars: one table for the cost bench
(bench/cost.py) and each job's own ``cost`` estimate (functions/logic/cost.py). Checked 2026-12-07 against the pages
named beside each block; change a price here and both follow."""

from __future__ import annotations

from typing import Final

PER_MILLION: Final = 1e-6
GB: Final = 1024**3

# https://aws.amazon.com/api-gateway/pricing/ : first 300 M (HTTP) / 333 M (REST) requests a month.
APIGW_HTTP_REQUEST: Final = 1.00 * PER_MILLION
APIGW_REST_REQUEST: Final = 3.50 * PER_MILLION

# https://aws.amazon.com/lambda/pricing/ : duration billed per 1 ms; first 6 B (x86) / 7.5 B (arm64) GB-s a month.
# The INIT phase of a cold start is billed as duration too, ZIP packages on managed runtimes included, since
# 2025-08-01 (https://aws.amazon.com/blogs/compute/aws-lambda-standardizes-billing-for-init-phase/).
LAMBDA_REQUEST: Final = 0.20 * PER_MILLION
LAMBDA_GB_SECOND: Final = {"x86_64": 0.0000166667, "arm64": 0.0000133334}

# https://aws.amazon.com/sqs/pricing/ : standard and FIFO queues; every 64 KB chunk of a payload is one request.
SQS_REQUEST: Final = 0.40 * PER_MILLION
SQS_FIFO_REQUEST: Final = 0.50 * PER_MILLION
SQS_CHUNK_BYTES: Final = 64 * 1024

# https://aws.amazon.com/dynamodb/pricing/on-demand/ : after the 2024-11-01 cut. A write unit per 1 KB written
# (x2 in a transaction), a read unit per 4 KB read strongly (x0.5 eventually, x2 in a transaction).
DDB_WRITE_UNIT: Final = 0.625 * PER_MILLION
DDB_READ_UNIT: Final = 0.125 * PER_MILLION
DDB_STORAGE_GB_MONTH: Final = 0.25
DDB_PITR_GB_MONTH: Final = 0.20
# Streams read by a Lambda event-source mapping are free (same page: "GetRecords calls invoked by AWS Lambda").

# https://aws.amazon.com/s3/pricing/ : S3 Standard.
S3_PUT: Final = 0.005 / 1000
S3_GET: Final = 0.0004 / 1000
S3_STORAGE_GB_MONTH: Final = 0.023

# https://aws.amazon.com/cloudwatch/pricing/ : Logs (standard class), metrics, alarms, dashboards.
LOGS_INGEST_GB: Final = 0.50
LOGS_STORAGE_GB_MONTH: Final = 0.03
METRIC_MONTH: Final = 0.30  # a custom metric: one namespace + name + dimension values, first 10,000
ALARM_MONTH: Final = 0.10  # a standard-resolution metric alarm
DASHBOARD_MONTH: Final = 3.00  # beyond the first 3 dashboards of an account (counted, as the account may have them)

# https://aws.amazon.com/xray/pricing/ : traces recorded.
XRAY_TRACE: Final = 5.00 * PER_MILLION

# https://aws.amazon.com/kms/pricing/ and https://aws.amazon.com/secrets-manager/pricing/ : per key / secret a month.
KMS_KEY_MONTH: Final = 1.00
SECRET_MONTH: Final = 0.40

# https://aws.amazon.com/eventbridge/pricing/ : scheduled rules' invocations of AWS targets are free.
EVENTBRIDGE_SCHEDULED_INVOCATION: Final = 0.0

SECONDS_PER_MONTH: Final = 30 * 24 * 3600


def lambda_gb_second(architecture: str) -> float:
    """The GB-second price of a Lambda architecture ("x86_64" or "arm64")."""
    return LAMBDA_GB_SECOND.get(architecture, LAMBDA_GB_SECOND["x86_64"])


def apigw_request(api_type: str) -> float:
    """The request price of an API Gateway API type ("http" or "rest")."""
    return APIGW_HTTP_REQUEST if api_type.lower() == "http" else APIGW_REST_REQUEST


def lambda_usd(billed_ms: float, memory_mb: int, architecture: str, invocations: float = 1.0) -> float:
    """What ``invocations`` Lambda requests and ``billed_ms`` of duration at ``memory_mb`` cost."""
    return invocations * LAMBDA_REQUEST + billed_ms / 1000 * memory_mb / 1024 * lambda_gb_second(architecture)

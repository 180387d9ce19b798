"""boto3 clients, created once per process (Lambda container) and reused."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
import botocore
from botocore.config import Config

from functions.dal import metering
from functions.settings import Settings

# Fail fast and let SQS redelivery / the caller retry, rather than hold a Lambda for a long SDK retry loop.
# A fixed User-Agent: botocore otherwise rebuilds it from ~40 sanitised components on every request (~70 us of
# CPU per call, bench/handler.py); the header only feeds AWS's SDK telemetry.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=3,
    read_timeout=10,
    user_agent=f"serverless-jobs botocore/{botocore.__version__}",
)


# Generating up to 4,096 tokens takes tens of seconds; the attempt's lease still bounds it.
_READ_TIMEOUTS = {"bedrock-runtime": 60}


@cache
def client(service: str) -> Any:
    config = _CONFIG.merge(Config(parameter_validation=Settings.from_env().sdk_parameter_validation))
    if service in _READ_TIMEOUTS:
        config = config.merge(Config(read_timeout=_READ_TIMEOUTS[service]))
    return metering.attach(boto3.client(service, config=config))


@cache
def s3_presigner(public_endpoint: str = "") -> Any:
    """The S3 client that signs URLs for callers: SigV4 (required for signed Content-Length), at ``public_endpoint``
    when set (the local moto server: path-style, as ``<bucket>.127.0.0.1`` resolves nowhere), else the SDK's own."""
    if not public_endpoint:
        return boto3.client("s3", config=_CONFIG.merge(Config(signature_version="s3v4")))
    return boto3.client(
        "s3",
        endpoint_url=public_endpoint,
        config=_CONFIG.merge(Config(signature_version="s3v4", s3={"addressing_style": "path"})),
    )

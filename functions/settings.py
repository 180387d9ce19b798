"""Runtime settings of the Lambda functions, read from the environment in one place.

Handlers call ``Settings.from_env()``; logic receives plain values. ``to_env()`` is the inverse, used by the
CDK constructs and the local stack so that the variable names exist only here. Each tunable and its default is
declared here only: ``infra/config.py`` composes these settings (``ServiceConfig.runtime``) and adds what only the
infrastructure needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from functions.models.bounds import HIGH_PRIORITY_THRESHOLD_DEFAULT

_PREFIX = "JOBS_"


@dataclass(frozen=True)
class Settings:
    jobs_table: str = "jobs"
    stats_table: str = "job-stats"
    queue_url: str = ""
    dlq_url: str = ""
    # Flow control lanes (see job_queue.py): a high-priority queue and a FIFO queue for ordered groups, each with
    # its own DLQ. Empty means "no such lane": every job then goes through ``queue_url``.
    high_queue_url: str = ""
    high_dlq_url: str = ""
    ordered_queue_url: str = ""
    ordered_dlq_url: str = ""
    # Jobs with at least this priority go through the high lane.
    high_priority_threshold: int = HIGH_PRIORITY_THRESHOLD_DEFAULT
    # Rate and concurrency limits per job type, JSON: {"webhook-delivery": {"ratePerSecond": 5, "concurrency": 2}}
    # (see logic/limits.py); their shared state lives in ``limits_table``.
    type_limits: str = ""
    limits_table: str = "job-limits"
    # Progress a job reports is written at most this often (the last value always lands with the outcome).
    progress_interval_seconds: float = 2.0
    # A standard lane's consumer runs up to this many records of a batch at once (threads); 1 runs them in turn.
    record_concurrency: int = 10
    # Completion callbacks (callbackUrl): deliveries per final status, retried with the job backoff.
    callback_max_attempts: int = 5
    # Finished jobs (completed, failed, cancelled) expire this many days after they ended (DynamoDB TTL); 0 keeps
    # them forever. Stats are counted by transition, so they do not change when a record expires.
    job_retention_days: int = 30
    # Idempotency keys of POST /jobs are remembered this long.
    idempotency_ttl_seconds: int = 86_400
    # Inbound webhooks (POST /hooks/{type}): a tenant's verification secret, if it configured one, is the secret
    # named ``<prefix><tenant>``.
    ingest_secret_prefix: str = "jobs/ingest-signing/"
    # Spreading a hot key's writes (DynamoDB allows 1,000 writes/s per partition key; bench/hotkeys.py sizes these
    # for 10,000 jobs/s of one tenant). Each may grow on a live table, never shrink (functions/dal/jobs_repository/).
    # Status counters and the per-minute completed/failed counters, per tenant: the stats aggregator writes a
    # random shard of each per stream batch (transaction items, 2 write units each).
    stats_shards: int = 128
    throughput_shards: int = 32
    # The sweeper's index, for all tenants: a put and a delete per job.
    sweep_shards: int = 32
    # The listing indexes' keys (tenant, tenant+status, tenant+type): the status key takes a put at create and a
    # delete and a put when the job ends; a listing page queries every shard.
    listing_shards: int = 32
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 300.0
    # A pending job whose message was never sent is re-sent after this long.
    pending_grace_seconds: int = 120
    # An in-flight job (processing, retrying) keeps a sweep mark this long past its lease or its next attempt's time:
    # longer than the queue's visibility timeout (6x the consumer timeout), after which SQS itself brings a dead
    # attempt's message back. A mark that comes due means no message of the job is left (it was deleted, or SQS
    # moved it to the DLQ after maxReceiveCount receives): the sweeper re-sends it (logic/sweep.py).
    in_flight_grace_seconds: int = 900
    # An in-flight job that made no progress this long despite those re-sends is ended as failed.
    orphan_give_up_seconds: int = 86_400
    # Scheduled jobs are handed to SQS (DelaySeconds) once they are due within this window (SQS max is 900).
    release_ahead_seconds: int = 900
    default_lease_seconds: int = 60
    # Job catalogue (files, imports, email, AI providers).
    files_bucket: str = "jobs-files"
    imports_table: str = "job-imports"
    # The SES sender of send-email jobs (JOBS_EMAIL_SENDER; on AWS from cdk deploy -c senderEmail=...). Empty: the
    # deployment has none, and send-email jobs are refused at enqueue.
    email_sender: str = ""
    # Where presigned URLs point: empty on AWS (the SDK's own endpoint); the moto server's URL locally.
    s3_public_endpoint: str = ""
    # Outbound HTTP from jobs (webhook, fetch, crawl) refuses loopback/private/link-local/multicast/reserved
    # addresses, after DNS and on every redirect, except these comma-separated CIDRs (make run and tests: loopback).
    outbound_allowlist: str = ""
    http_timeout_seconds: float = 10.0
    fetch_max_bytes: int = 10 * 1024 * 1024
    crawl_delay_seconds: float = 1.0
    crawl_max_page_bytes: int = 2 * 1024 * 1024
    webhook_secret_prefix: str = "jobs/webhook-signing/"
    # Files: uploads, results, and payloads too large for a DynamoDB item / SQS message.
    upload_max_bytes: int = 10 * 1024 * 1024
    presign_expiry_seconds: int = 900
    payload_inline_max_bytes: int = 256 * 1024
    # Offloaded payloads are expired by the files bucket's lifecycle this many days after they were written; a job
    # with one may not be scheduled further ahead than its payload lives (logic/payloads.py).
    payload_retention_days: int = 30
    payload_max_bytes: int = 5 * 1024 * 1024
    image_max_pixels: int = 40_000_000
    # "bedrock" on AWS; "local" runs a local provider (moto cannot serve Bedrock).
    ai_provider: str = "bedrock"
    # The models jobs use when they name none; each must be in bedrock_models (infra/config.py checks).
    bedrock_embedding_model: str = "amazon.titan-embed-text-v2:0"
    bedrock_text_model: str = "amazon.nova-lite-v1:0"
    # The models a job may name, comma-separated (foundation models and inference profiles): any other is refused at
    # enqueue, as IAM would deny it at run time (infra/config.py: each must be in granted_bedrock_models).
    bedrock_models: str = "amazon.titan-embed-text-v2:0,amazon.nova-lite-v1:0,us.amazon.nova-lite-v1:0"
    # botocore checks every request against the service model before sending it. Tests and the local stack keep
    # the check (moto accepts some requests AWS would refuse); on Lambda the service checks them anyway, and the
    # client-side check cost ~80 us of CPU per call (bench/handler.py), so the AWS config turns it off.
    sdk_parameter_validation: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(_PREFIX + field.name.upper())
            if raw is None:
                continue
            default = getattr(cls, field.name)
            if isinstance(default, bool):
                values[field.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[field.name] = type(default)(raw)
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        return {_PREFIX + name.upper(): str(value) for name, value in asdict(self).items()}

"""The one place for resource names and tunables, read by the CDK stack and by the local stack alike.

What the functions read at run time is ``functions.settings.Settings``, composed here (``ServiceConfig.runtime``);
the rest (memory, timeouts, queues, alarms) only the infrastructure needs.

Pure Python (no aws_cdk import) so that ``make run`` can use it without loading CDK.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

from functions.logic.limits import parse_type_limits
from functions.settings import Settings

_RUNTIME_FIELDS = frozenset(f.name for f in fields(Settings))


@dataclass(frozen=True)
class ConsumerConfig:
    timeout_seconds: int = 60
    # Every job type runs here, image jobs included: one image at a time decodes up to image_max_pixels, and a
    # 40 MP RGBA PNG made grayscale peaked at 489 MB of RSS (docs/performance.md, "Lambda shape"), beside the other
    # records of the batch running at once. 512 MB would leave no margin for that job.
    memory_mb: int = 1024
    batch_size: int = 10
    # Records of a standard lane's batch run at once: jobs mostly wait on I/O, so a batch takes about as long as
    # its slowest job, and Lambda bills that instead of the sum (functions/handlers/concurrent_batch.py).
    record_concurrency: int = Settings.record_concurrency
    batching_window_seconds: int = 1
    # Lambda's SQS poller runs this many batches at once at most (event-source mapping max concurrency).
    max_concurrency: int = 10
    # The same for the consumers of the high-priority and the ordered lanes (Lambda's minimum is 2). The high lane
    # carries few jobs; the ordered lane's parallelism is bounded by its number of active groups anyway.
    high_max_concurrency: int = 5
    ordered_max_concurrency: int = 5


@dataclass(frozen=True)
class QueueConfig:
    name: str = "jobs-queue"
    dlq_name: str = "jobs-dlq"
    # A safety net for crashes and poison messages; retries are counted on the job record (maxAttempts <= 25),
    # and a deferred message (backoff or schedule) can be received a few extra times.
    max_receive_count: int = 50
    # A message redriven from a DLQ keeps its original enqueue time, so each DLQ keeps messages longer than its
    # source queue does (AWS's advice): a redriven message then still has (dlq - source) days to run. The source
    # queues need little: a message waits there at most a backoff (<= backoff_cap_seconds) or a release-ahead
    # window (<= 15 min); jobs due later wait on their record, not in SQS. SQS allows 60 s to 14 days.
    retention_days: int = 4
    dlq_retention_days: int = 14
    # Flow-control lanes: high priority (a standard queue) and ordered groups (FIFO), each with its own DLQ.
    high_name: str = "jobs-high"
    high_dlq_name: str = "jobs-high-dlq"
    ordered_name: str = "jobs-ordered.fifo"
    ordered_dlq_name: str = "jobs-ordered-dlq.fifo"
    # The ordered lane's redrive threshold: as high as SQS allows. A grouped job over its type's limit waits by
    # making its own message invisible for a while (re-sending it would lose its place in the group), and every
    # such wait is one more receive; retries are still bounded by the record's maxAttempts.
    ordered_max_receive_count: int = 1000


@dataclass(frozen=True)
class BedrockModel:
    """A model jobs may name. A foundation model is its id alone. An inference profile (``us.amazon.nova-lite-v1:0``)
    also names the foundation model it routes to and every region it may route a request to: Bedrock authorises
    the call against the profile and against the model in the region that serves it, so IAM needs all of them."""

    id: str
    foundation_model: str = ""
    regions: tuple[str, ...] = ()

    @property
    def is_inference_profile(self) -> bool:
        return bool(self.foundation_model)


# The models jobs may name (and the defaults, which must be among them); IAM's bedrock:InvokeModel grant is
# generated from this list (infra/constructs/queue_consumer.py) and the API refuses any other model at enqueue.
DEFAULT_BEDROCK_MODELS: tuple[BedrockModel, ...] = (
    BedrockModel("amazon.titan-embed-text-v2:0"),
    BedrockModel("amazon.nova-lite-v1:0"),
    BedrockModel(
        "us.amazon.nova-lite-v1:0",
        foundation_model="amazon.nova-lite-v1:0",
        regions=("us-east-1", "us-east-2", "us-west-2"),
    ),
)


@dataclass(frozen=True)
class StatsStreamConfig:
    """The stats aggregator: the function that applies the jobs table's stream to the counters."""

    timeout_seconds: int = 30
    memory_mb: int = 256
    # Stream records per invocation (DynamoDB streams allow up to 1000).
    batch_size: int = 100
    # The tumbling window: Lambda puts the shard's id in the event only for windowed invocations.
    window_seconds: int = 1
    # Records are gathered this long before an invocation (unless a batch fills first): Lambda reads a stream shard
    # 4 times a second, and each invocation costs a write per stats item it touches, whatever its size. /stats
    # trails the records by about this much more.
    batching_window_seconds: int = 1
    # The stream keeps records 24 h: an aggregator this far behind (or failing) is on its way to losing counts.
    iterator_age_alarm_seconds: int = 300
    # The stream records (``eventName``) that invoke the aggregator, the event source's filter on AWS and locally
    # (local/stream_source.py). Not REMOVE: a final job's expiry (TTL) deletes its record, and neither the counters
    # (stats count transitions) nor dependencies (settled when a job became final) need that; nothing else deletes
    # from the jobs table. A filtered-out record is not an invocation, so expiries cost nothing here.
    event_names: tuple[str, ...] = ("INSERT", "MODIFY")


@dataclass(frozen=True)
class ServiceConfig:
    service_name: str = "jobs"
    stack_name: str = "ServerlessJobs"
    metrics_namespace: str = "ServerlessJobs"
    queue: QueueConfig = field(default_factory=QueueConfig)
    consumer: ConsumerConfig = field(default_factory=ConsumerConfig)
    stats_stream: StatsStreamConfig = field(default_factory=StatsStreamConfig)
    # Long-poll reads (GET /jobs/{id}?wait=20) need 20 s and a margin; API Gateway allows 30 s (HTTP API).
    api_timeout_seconds: int = 25
    # Memory is also the CPU share (1,769 MB is one vCPU). The API's container holds ~62 MB after its imports, but
    # its cold start is ~0.55 s of CPU (bench/coldstart.py) on the request's path: less memory would stretch that.
    api_memory_mb: int = 512
    # The key authorizer does one GetItem per key and cache period (API Gateway caches its answers per key).
    authorizer_memory_mb: int = 256
    sweeper_interval_seconds: int = 60
    sweeper_timeout_seconds: int = 60
    # Off the request path and mostly waiting on DynamoDB (~57 MB after its imports); it runs every minute, idle or
    # not, so its GB-seconds are part of the idle bill.
    sweeper_memory_mb: int = 256
    # The HTTP API stage's throttling, for all callers together: account protection below API Gateway's account
    # quota (10,000 requests/s, burst 5,000), not a tenant's limit (each key has its own, counted by the service:
    # key_rate_limit/key_burst_limit in functions/settings.py).
    api_rate_limit: int = 5000
    api_burst_limit: int = 5000
    # The functions' Lambda runtime and architecture (cdk deploy -c runtime=python3.12 -c architecture=arm64); the
    # dependency layers are built for that interpreter and platform (infra/layer_build.py, constructs/job_layer.py).
    # arm64 (Graviton): Lambda's GB-second and request prices are about 20 % lower, and every dependency (pydantic-core,
    # Pillow) has manylinux2014_aarch64 wheels.
    python_version: str = "python3.11"
    architecture: str = "arm64"
    # Lambda SnapStart for the functions (Python 3.12 and later only): published versions start from a snapshot.
    snap_start: bool = False
    # AWS only (the CDK stack): log retention, X-Ray switch and the alarm thresholds.
    log_retention_days: int = 30
    # X-Ray (cdk deploy -c tracing=true): off by default, as each traced job costs money and every cold start
    # pays for loading the X-Ray SDK.
    tracing_enabled: bool = False
    queue_age_alarm_seconds: int = 900
    # The ordered (FIFO) lane's oldest-message alarm: a group legitimately waits behind its failing job, whose
    # message stays put through up to 25 attempts (24 backoff waits of at most backoff_cap_seconds, 25 runs of at
    # most the consumer timeout: ~2.4 h), so only an age beyond that means the lane itself is stuck.
    ordered_queue_age_alarm_seconds: int = 10_800
    # Rate alarms, each over one window of this length: consumer invocations that failed as a whole (the handler
    # raised or timed out; a failed job is a partial batch failure, not a Lambda error), and API requests answered
    # 5XX (the function answers its own errors as 4XX, so a 5XX is a crash, a timeout or storage being unavailable).
    alarm_rate_period_minutes: int = 5
    consumer_error_rate_alarm_percent: float = 5.0
    api_5xx_alarm_percent: float = 5.0
    # The Bedrock models the consumers' IAM role may invoke (bedrock:InvokeModel is generated from this list,
    # infra/constructs/queue_consumer.py). The functions' own list, ``bedrock_models`` (what the API accepts at
    # enqueue), must be among them: ``settings()`` checks (cdk deploy -c bedrockModels=... sets both).
    granted_bedrock_models: tuple[BedrockModel, ...] = DEFAULT_BEDROCK_MODELS
    # The functions' tunables and resource names (tables, bucket, sender, shards, backoff, lanes, limits...),
    # declared with their defaults in functions/settings.py only; each also reads as the config's own
    # (``config.jobs_table``). ``settings()`` hands them to the functions with the queue URLs and derived values.
    runtime: Settings = field(default_factory=lambda: Settings(sdk_parameter_validation=False))

    def __getattr__(self, name: str) -> Any:
        # Only called for names the config itself lacks; ``runtime`` is checked so that a half-built instance
        # (copy, unpickling) cannot recurse.
        if name in _RUNTIME_FIELDS and "runtime" in self.__dict__:
            return getattr(self.runtime, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def lambda_environment(self) -> dict[str, str]:
        """What every function's environment holds besides ``Settings`` (infra/constructs/function.py); the
        cold-start and handler benches run with it, so they measure the functions as deployed."""
        env = {
            "POWERTOOLS_SERVICE_NAME": self.service_name,
            "POWERTOOLS_METRICS_NAMESPACE": self.metrics_namespace,
            "LOG_LEVEL": "INFO",
            # pydantic looks for plugins in every installed distribution's entry points when it first builds a
            # model (a scan of the layer's and the runtime's package metadata on each cold start); we use none.
            "PYDANTIC_DISABLE_PLUGINS": "__all__",
        }
        if not self.tracing_enabled:
            # The handlers skip loading the X-Ray SDK altogether when this is set.
            env["POWERTOOLS_TRACE_DISABLED"] = "true"
        return env

    @property
    def queue_visibility_timeout_seconds(self) -> int:
        # AWS recommends at least 6x the function timeout for SQS event sources.
        return 6 * self.consumer.timeout_seconds

    @property
    def release_ahead_seconds(self) -> int:
        # Jobs due within two sweeper periods go to SQS with DelaySeconds, which is precise; SQS allows 900 s.
        return min(900, 2 * self.sweeper_interval_seconds)

    def settings(
        self,
        queue_url: str = "",
        dlq_url: str = "",
        *,
        high_queue_url: str = "",
        high_dlq_url: str = "",
        ordered_queue_url: str = "",
        ordered_dlq_url: str = "",
    ) -> Settings:
        """The runtime settings of the functions, given the queue URLs of each lane (tokens on AWS, real URLs
        locally). A lane without URLs is folded into the normal one (functions/dal/job_queue.py)."""
        # A bad limits configuration stops `cdk synth` and `make run` here, naming the entry, rather than the
        # consumers at their first message.
        parse_type_limits(self.runtime.type_limits)
        _check_bedrock_models(self.runtime, self.granted_bedrock_models)
        return replace(
            self.runtime,
            queue_url=queue_url,
            dlq_url=dlq_url,
            high_queue_url=high_queue_url,
            high_dlq_url=high_dlq_url,
            ordered_queue_url=ordered_queue_url,
            ordered_dlq_url=ordered_dlq_url,
            release_ahead_seconds=self.release_ahead_seconds,
            default_lease_seconds=self.consumer.timeout_seconds,
            record_concurrency=self.consumer.record_concurrency,
        )


def _check_bedrock_models(runtime: Settings, granted: tuple[BedrockModel, ...]) -> None:
    """The models the API accepts are ones IAM lets the consumers invoke, and include the defaults: a mismatch
    stops ``cdk synth`` and ``make run`` here rather than failing accepted jobs."""
    granted_ids = [model.id for model in granted]
    allowed = [model for model in runtime.bedrock_models.split(",") if model]
    for model in allowed:
        if model not in granted_ids:
            raise ValueError(
                f"the Bedrock model {model!r} in bedrock_models is not in granted_bedrock_models {granted_ids}"
            )
    for default in (runtime.bedrock_embedding_model, runtime.bedrock_text_model):
        if default not in allowed:
            raise ValueError(f"the default Bedrock model {default!r} is not in bedrock_models {allowed}")


AWS_CONFIG = ServiceConfig()
# make run sends mail from this (verified in moto's SES), so the examples work without configuration.
LOCAL_EMAIL_SENDER = "jobs@example.com"


def local_config() -> ServiceConfig:
    """The local stack: the same resources, with short waits so that retries and schedules are quick to watch."""
    env = os.environ
    config = replace(
        AWS_CONFIG,
        consumer=replace(
            AWS_CONFIG.consumer,
            timeout_seconds=int(env.get("JOBS_LOCAL_CONSUMER_TIMEOUT", str(AWS_CONFIG.consumer.timeout_seconds))),
            batching_window_seconds=0,
            # Every local function shares one interpreter lock: a batch's records at once only compete with the
            # gateway for it (bench/e2e.py: enqueue 88 -> 31 jobs/s with 10, the same all-final time).
            record_concurrency=int(env.get("JOBS_LOCAL_RECORD_CONCURRENCY", "1")),
            # Batches at once (10 on AWS). A job that waits (simulate's sleep, HTTP) leaves the lock to the others:
            # bench/e2e.py, 500 jobs, all final in 15.8 s with 4, 11.7 s with 8, 11.8 s with 10, 12.2 s with 12;
            # enqueue 159, 134, 118, 96 jobs/s.
            max_concurrency=int(env.get("JOBS_LOCAL_CONSUMERS", "8")),
            high_max_concurrency=int(env.get("JOBS_LOCAL_LANE_CONSUMERS", "2")),
            ordered_max_concurrency=int(env.get("JOBS_LOCAL_LANE_CONSUMERS", "2")),
        ),
        # moto answers an index query by scanning the table, so a busy local sweeper slows everything down;
        # jobs due within 15 min are timed by SQS DelaySeconds anyway.
        sweeper_interval_seconds=int(env.get("JOBS_LOCAL_SWEEP_SECONDS", "2")),
        runtime=replace(
            AWS_CONFIG.runtime,
            backoff_base_seconds=float(env.get("JOBS_LOCAL_BACKOFF_BASE", "1")),
            backoff_cap_seconds=float(env.get("JOBS_LOCAL_BACKOFF_CAP", "4")),
            pending_grace_seconds=int(env.get("JOBS_LOCAL_PENDING_GRACE", "30")),
            # moto cannot serve Bedrock; jobs may call servers on this machine (tests' loopback servers).
            ai_provider="local",
            email_sender=env.get("JOBS_LOCAL_EMAIL_SENDER", LOCAL_EMAIL_SENDER),
            outbound_allowlist=env.get("JOBS_LOCAL_OUTBOUND_ALLOWLIST", "127.0.0.0/8,::1/128"),
            crawl_delay_seconds=float(env.get("JOBS_LOCAL_CRAWL_DELAY", "0")),
            type_limits=env.get("JOBS_LOCAL_TYPE_LIMITS", ""),
            progress_interval_seconds=float(env.get("JOBS_LOCAL_PROGRESS_INTERVAL", "0.5")),
            # A revoked or rotated key stops working within this (on AWS: the authorizer's 300 s cache).
            authorizer_cache_seconds=int(env.get("JOBS_LOCAL_AUTHORIZER_CACHE_SECONDS", "2")),
            # Keys without their own rate limit: high enough for the load tests and benches (one key drives them);
            # a key's own limit (`jobs keys create --rate-limit`) is enforced locally as on AWS.
            key_rate_limit=float(env.get("JOBS_LOCAL_KEY_RATE_LIMIT", "10000")),
            key_burst_limit=int(env.get("JOBS_LOCAL_KEY_BURST_LIMIT", "20000")),
            sdk_parameter_validation=True,
        ),
    )
    if env.get("JOBS_LOCAL_AWS_SHARDS") == "1":
        return config  # bench/cost.py and bench/hotkeys.py measure the AWS shard counts
    # moto has no per-key write limit but pays for every key read and scans the table for every index query: a few
    # shards (still more than one, so the merge paths run) keep /stats and listings quick locally.
    # The stats count what the stream delivered: locally as soon as it is there, so /stats follows quickly.
    return replace(
        config,
        runtime=replace(config.runtime, stats_shards=4, throughput_shards=2, sweep_shards=2, listing_shards=2),
        stats_stream=replace(config.stats_stream, batching_window_seconds=0),
    )

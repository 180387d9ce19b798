"""The composition root: settings, clients, repositories and Powertools objects, built once per container."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from functions.dal.clients import client, s3_presigner
from functions.dal.job_queue import QueueLanes, SqsJobQueue
from functions.dal.jobs_repository import DynamoJobsRepository
from functions.logic.clock import system_clock
from functions.logic.lanes import LaneRouter
from functions.redaction import RedactingFormatter
from functions.settings import Settings
from functions.snapstart import register_restore_hooks

if TYPE_CHECKING:
    from functions.dal.batches import DynamoBatchStore
    from functions.dal.dependencies import DynamoDependencyStore
    from functions.dal.files import S3FileStore
    from functions.dal.pauses import DynamoPauseStore
    from functions.dal.schedules import DynamoScheduleStore
    from functions.logic.batches import BatchSettler
    from functions.logic.callbacks import CallbackDeliverer
    from functions.logic.dependencies import Settler
    from functions.logic.limits import Limiter
    from functions.logic.pauses import PauseCheck
    from functions.logic.rate_limits import KeyRateLimiter
    from functions.models.job import Job


class FunctionLogger(Logger):
    """Powertools' Logger whose appended keys (the Lambda context ``inject_lambda_context`` adds, the correlation
    id) belong to the invocation's thread and context, not to the process.

    On Lambda one process serves one invocation at a time, so the two are the same. The local stack runs every
    function in one process, each invocation on its own thread: with process-wide keys a consumer's line carried
    the API's ``function_name``. Threads a handler starts for its records copy its context
    (handlers/concurrent_batch.py), so they keep the keys."""

    def append_keys(self, **additional_keys: object) -> None:
        self.thread_safe_append_keys(**additional_keys)

    def get_current_keys(self) -> dict[str, Any]:
        return {**super().get_current_keys(), **self.thread_safe_get_current_keys()}

    def remove_keys(self, keys: Iterable[str]) -> None:
        self.thread_safe_remove_keys(keys)


# Every log line goes through the redacting formatter: no secret or API key is ever written (functions/redaction.py).
logger = FunctionLogger(logger_formatter=RedactingFormatter())
metrics = Metrics()
# Reads and idle sweeps emit no metric. Powertools then warns, once per container, in plain text outside the
# structured logs; its documentation names this filter for functions that may publish none.
warnings.filterwarnings("ignore", "No application metrics to publish*")
# Under SnapStart, reseed randomness in each environment restored from the snapshot (functions/snapstart.py).
register_restore_hooks()

F = TypeVar("F", bound=Callable[..., Any])


def traced(handler: F) -> F:
    """X-Ray tracing when it is switched on. The X-Ray SDK costs ~0.3 s of import, so it is not loaded otherwise."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() == "true":
        return handler
    from aws_lambda_powertools import Tracer

    return cast(F, Tracer().capture_lambda_handler(handler))


_METRICS_LOCK = threading.Lock()


def emit(name: str, value: float) -> None:
    # Powertools keeps metrics in memory when they are disabled (and prints them once 100 pile up): don't add any.
    if is_metrics_disabled():
        return
    if value == 0 and not name.endswith("Ms"):
        # A count of nothing is not published: CloudWatch bills a custom metric ($0.30 a month) for every hour it
        # receives data, and the sweeper's five counters are zeros every minute of an idle deployment. A graph
        # shows no point instead of 0; no alarm reads these metrics.
        return
    unit = MetricUnit.Milliseconds if name.endswith("Ms") else MetricUnit.Count
    # A batch's records run at once; Powertools' metric set is a plain dict, flushed when it reaches 100 values.
    with _METRICS_LOCK:
        metrics.add_metric(name=name, unit=unit, value=value)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    repo: DynamoJobsRepository
    queue: LaneRouter


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    settings = Settings.from_env()
    return Runtime(
        settings=settings,
        repo=DynamoJobsRepository.from_settings(client("dynamodb"), settings),
        queue=LaneRouter(SqsJobQueue(client("sqs"), queue_lanes(settings)), settings.high_priority_threshold),
    )


def queue_lanes(settings: Settings) -> QueueLanes:
    return QueueLanes(
        normal=settings.queue_url,
        normal_dlq=settings.dlq_url,
        high=settings.high_queue_url,
        high_dlq=settings.high_dlq_url,
        ordered=settings.ordered_queue_url,
        ordered_dlq=settings.ordered_dlq_url,
    )


# The stores and services below import their modules when first built: a function that never uses one does not pay
# for its import at a cold start. A handler imports at init the modules of those its common path uses (the API's
# rate limits, the consumer's limits and pauses), so that their cost stays in the cold start, not its first request.


@lru_cache(maxsize=1)
def limiter() -> Limiter:
    """Per-type limits of the consumer (logic/limits.py), sharing their state through the limits table."""
    from functions.logic.limits import limiter_from_settings

    return limiter_from_settings(runtime().settings, client("dynamodb"))


@lru_cache(maxsize=1)
def pause_store() -> DynamoPauseStore:
    """Paused job types per tenant (logic/pauses.py), kept in the limits table."""
    from functions.dal.pauses import DynamoPauseStore

    return DynamoPauseStore(client("dynamodb"), runtime().settings.limits_table)


@lru_cache(maxsize=1)
def pause_check() -> PauseCheck:
    """The consumer's view of paused types, cached a few seconds per container."""
    from functions.logic.pauses import PauseCheck

    return PauseCheck(pause_store())


@lru_cache(maxsize=1)
def schedule_store() -> DynamoScheduleStore:
    """Recurring schedules (logic/schedules.py), in their own table."""
    from functions.dal.schedules import DynamoScheduleStore

    settings = runtime().settings
    return DynamoScheduleStore(client("dynamodb"), settings.schedules_table, settings.schedule_shards)


@lru_cache(maxsize=1)
def batch_store() -> DynamoBatchStore:
    """Fan-out batch items (dal/batches.py)."""
    from functions.dal.batches import DynamoBatchStore

    rt = runtime()
    return DynamoBatchStore(client("dynamodb"), rt.settings.jobs_table, rt.repo)


@lru_cache(maxsize=1)
def batch_settler() -> BatchSettler:
    """Completes fan-out batches as their last child ends (logic/batches.py)."""
    from functions.logic.batches import BatchSettler

    rt = runtime()
    return BatchSettler(rt.repo, rt.queue, rt.settings, batch_store())


def settle_batch(job: Job) -> None:
    """``BatchSettler.job_final`` for a job that has just become final (the consumer's, the sweeper's, a cancel's, a
    dependency's end), the settler and its modules built only for a job of a fan-out batch: nearly every job is in
    none."""
    if job.batch_id is not None:
        batch_settler().job_final(job)


@lru_cache(maxsize=1)
def callback_deliverer() -> CallbackDeliverer:
    """Delivers completion callbacks (logic/callbacks.py)."""
    from functions.logic.callbacks import CallbackDeliverer

    rt = runtime()
    return CallbackDeliverer(rt.repo, rt.queue, rt.settings)


@lru_cache(maxsize=1)
def key_rate_limiter() -> KeyRateLimiter:
    """The API's per-key rate limits (logic/rate_limits.py), counted in the limits table."""
    from functions.dal.key_rates import DynamoWindowCounts
    from functions.logic.rate_limits import KeyRateLimiter

    return KeyRateLimiter(DynamoWindowCounts(client("dynamodb"), runtime().settings.limits_table))


@lru_cache(maxsize=1)
def dependency_store() -> DynamoDependencyStore:
    """Job dependencies' edges (dal/dependencies.py)."""
    from functions.dal.dependencies import DynamoDependencyStore

    settings = runtime().settings
    return DynamoDependencyStore(
        client("dynamodb"), settings.dependencies_table, settings.jobs_table, settings.dependency_shards
    )


@lru_cache(maxsize=1)
def dependency_settler() -> Settler:
    """Releases or cancels waiting jobs as their dependencies end (logic/dependencies.py)."""
    from functions.logic.dependencies import Settler

    rt = runtime()
    grace = rt.settings.pending_grace_seconds
    return Settler(dependency_store(), rt.repo, rt.queue, system_clock, grace, settle_batch)


@lru_cache(maxsize=1)
def files() -> S3FileStore:
    # Built on first use: only uploads, results and offloaded payloads need S3.
    from functions.dal.files import S3FileStore

    settings = runtime().settings
    return S3FileStore(client("s3"), settings.files_bucket, presigner=lambda: s3_presigner(settings.s3_public_endpoint))


def reset() -> None:
    """Forget every cached client and setting (tests and the local stack call this after changing the env)."""
    runtime.cache_clear()
    limiter.cache_clear()
    pause_store.cache_clear()
    pause_check.cache_clear()
    schedule_store.cache_clear()
    batch_store.cache_clear()
    batch_settler.cache_clear()
    callback_deliverer.cache_clear()
    key_rate_limiter.cache_clear()
    dependency_store.cache_clear()
    dependency_settler.cache_clear()
    files.cache_clear()
    client.cache_clear()
    s3_presigner.cache_clear()

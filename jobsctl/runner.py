"""``jobs worker``: the deployed consumer handler, fed by the shared ``SqsWorker`` from any machine.

The handler reads its settings from ``JOBS_*`` variables exactly as the Lambda function does (tables, queue URLs,
backoff, ...). They come from the environment, or with ``--stack`` from the deployed consumer function's own
configuration (``lambda:GetFunctionConfiguration``), or with ``--from-config`` from ``infra/config.py``'s names
(what ``make run`` creates). Variables already set in the environment always win.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from jobsctl.worker import SqsWorker

REQUIRED = ("JOBS_JOBS_TABLE", "JOBS_STATS_TABLE", "JOBS_QUEUE_URL", "JOBS_DLQ_URL")
# A worker is not a Lambda: no CloudWatch EMF on stdout and no X-Ray daemon unless asked for.
RUNTIME_DEFAULTS = {
    "POWERTOOLS_SERVICE_NAME": "jobs",
    "POWERTOOLS_METRICS_NAMESPACE": "ServerlessJobs",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


_HOOK_ID = "jobsctl-worker-deferred"


class MissingSettings(Exception):
    def __init__(self, missing: list[str]) -> None:
        super().__init__("missing settings: " + ", ".join(missing))
        self.missing = missing


def worker_environment(
    environ: Mapping[str, str],
    *,
    deployed: Mapping[str, str] | None = None,
    from_config: Mapping[str, str] | None = None,
    queue_url: str | None = None,
) -> dict[str, str]:
    """The variables to add to the environment: the environment first, then the deployed function's, then config."""
    merged: dict[str, str] = {}
    for source in (from_config or {}, deployed or {}):
        merged.update({k: v for k, v in source.items() if v != ""})
    if queue_url:
        merged["JOBS_QUEUE_URL"] = queue_url
    merged.update({k: v for k, v in environ.items() if k.startswith(("JOBS_", "POWERTOOLS_")) and v != ""})
    if queue_url:
        merged["JOBS_QUEUE_URL"] = queue_url  # an explicit --queue-url beats everything
    missing = [name for name in REQUIRED if not merged.get(name)]
    if missing:
        raise MissingSettings(missing)
    for name, value in RUNTIME_DEFAULTS.items():
        merged.setdefault(name, environ.get("LOG_LEVEL", value) if name == "POWERTOOLS_LOG_LEVEL" else value)
    return merged


def config_environment(sqs: Any) -> dict[str, str]:
    """The settings ``make run`` gives its functions (names from infra/config.py, queue URLs looked up by name)."""
    from infra.config import local_config

    config = local_config()
    names = {
        "queue_url": config.queue.name,
        "dlq_url": config.queue.dlq_name,
        "high_queue_url": config.queue.high_name,
        "high_dlq_url": config.queue.high_dlq_name,
        "ordered_queue_url": config.queue.ordered_name,
        "ordered_dlq_url": config.queue.ordered_dlq_name,
    }
    urls = {setting: sqs.get_queue_url(QueueName=name)["QueueUrl"] for setting, name in names.items()}
    return config.settings(**urls).to_env()


# Which queue a worker consumes, and with which consumer entry point (the ordered lane is FIFO: see consumer.py).
LANES = {
    "normal": ("JOBS_QUEUE_URL", "handler"),
    "high": ("JOBS_HIGH_QUEUE_URL", "handler"),
    "ordered": ("JOBS_ORDERED_QUEUE_URL", "ordered_handler"),
}


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 4
    batch_size: int = 1
    wait_seconds: int = 10
    visibility_timeout: int | None = None  # None: the queue's own
    timeout_seconds: float | None = None  # None: JOBS_DEFAULT_LEASE_SECONDS (the consumer's timeout)
    lane: str = "normal"  # normal, high or ordered (see LANES)


def build_worker(
    env: Mapping[str, str], options: WorkerOptions, target: MutableMapping[str, str] = os.environ
) -> SqsWorker:
    """Apply ``env``, load the consumer handler (it reads its settings now) and wire a worker to it."""
    import boto3

    target.update(env)
    from functions.dal.clients import client
    from functions.handlers import consumer, runtime
    from jobsctl.environments import fresh_handler

    runtime.reset()
    sqs = boto3.client("sqs")
    if options.lane not in LANES:
        raise MissingSettings([f"a lane among {', '.join(LANES)} (not {options.lane!r})"])
    url_setting, entry_point = LANES[options.lane]
    queue_url = env.get(url_setting, "")
    if not queue_url:
        raise MissingSettings([url_setting])
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn", "VisibilityTimeout"])[
        "Attributes"
    ]
    visibility = options.visibility_timeout or int(attributes.get("VisibilityTimeout", 30))
    timeout = options.timeout_seconds or float(env.get("JOBS_DEFAULT_LEASE_SECONDS", "60"))
    worker = SqsWorker(
        getattr(consumer, entry_point),
        queue_url,
        attributes["QueueArn"],
        batch_size=options.batch_size,
        batching_window_seconds=0,
        concurrency=options.concurrency,
        timeout_seconds=timeout,
        function_name="jobs-worker",
        wait_seconds=options.wait_seconds,
        invoke_size=1,
        visibility_timeout=visibility,
        sqs=sqs,
        # one execution environment per slot, as on Lambda: module-level state is never shared between jobs
        new_environment=lambda: fresh_handler("functions.handlers.consumer", entry_point),
    )

    # The consumer defers a retry by setting its message's visibility: from then on, heartbeats leave it alone.
    def deferred(params: dict[str, Any], **_: Any) -> None:
        if "ReceiptHandle" in params:
            worker.note_visibility_changed(params["ReceiptHandle"])

    events = client("sqs").meta.events
    event_name = "provide-client-params.sqs.ChangeMessageVisibility"
    events.unregister(event_name, unique_id=_HOOK_ID)  # one worker per process: the latest one is notified
    events.register(event_name, deferred, unique_id=_HOOK_ID)
    return worker

"""``make run``: the whole service on this machine — moto for AWS, the same handlers, a gateway, an event source.

python -m local            # PORT (3000), MOTO_PORT (4566), API_KEYS ("local-dev-key:local")
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
from dataclasses import dataclass, replace
from typing import Any

from infra.config import ServiceConfig, local_config
from jobsctl.environments import EnvironmentPool, fresh_handler
from local.aws import LocalAws, LocalResources, create_api_keys, create_resources, parse_api_keys
from local.event_source import SqsEventSource
from local.gateway import LocalGateway
from local.iam_calls import record_from_env
from local.lambda_context import LocalContext
from local.stream_source import StreamEventSource

log = logging.getLogger("local")

DEFAULT_API_KEYS = "local-dev-key:local"
# How often the local stream source looks for new records when the stream is empty, as Lambda polls a stream shard
# (4 times a second): the stats lag the job records by about this much.
STREAM_POLL_SECONDS = 0.25


@dataclass
class LocalStack:
    config: ServiceConfig
    port: int
    moto_port: int | None
    api_keys: dict[str, str]

    def start(self) -> None:
        # JOBS_IAM_RECORD_DIR: note the functions' AWS calls for the IAM coverage check (tests/iam).
        record_from_env()
        self._aws = LocalAws(self.moto_port)
        self._aws.start()
        self.resources = create_resources(self.config)
        create_api_keys(self.api_keys)
        self._configure_functions(self.resources)

        # Imported only now: the handlers read their settings from the environment set just above.
        from functions.handlers import consumer, stats_stream, sweeper

        # One event source per lane, as on AWS (infra/constructs/queue_consumer.py): normal, high priority, ordered.
        self._event_sources = self._lane_event_sources(consumer.handler, consumer.ordered_handler)
        # Concurrent requests each get an environment of their own: Powertools' resolver keeps the request on itself.
        api_environments = EnvironmentPool(lambda: fresh_handler("functions.handlers.api"))
        self._gateway = LocalGateway(api_environments, "127.0.0.1", self.port, self.config.api_timeout_seconds)
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep_forever, args=(sweeper.handler,), name="sweeper", daemon=True
        )
        # The jobs table's stream to the stats aggregator, as Lambda's event source does on AWS.
        self._stream_source = StreamEventSource(
            self.config.jobs_table,
            stats_stream.handler,
            batch_size=self.config.stats_stream.batch_size,
            interval_seconds=STREAM_POLL_SECONDS,
            timeout_seconds=self.config.stats_stream.timeout_seconds,
            batching_window_seconds=self.config.stats_stream.batching_window_seconds,
        )
        for event_source in self._event_sources:
            event_source.start()
        self._stream_source.start()
        self._sweeper.start()
        self._gateway.start()

    def _lane_event_sources(self, handler: Any, ordered_handler: Any) -> list[SqsEventSource]:
        consumer = self.config.consumer
        lanes = self.resources.lanes()
        # (lane, handler, its attribute name, pollers, batching window): Lambda has no batching window for FIFO.
        specs = (
            ("normal", handler, "handler", consumer.max_concurrency, consumer.batching_window_seconds),
            ("high", handler, "handler", consumer.high_max_concurrency, consumer.batching_window_seconds),
            ("ordered", ordered_handler, "ordered_handler", consumer.ordered_max_concurrency, 0),
        )
        return [
            SqsEventSource(
                lane_handler,
                lanes[lane].queue_url,
                lanes[lane].queue_arn,
                # Each poller is its own execution environment, as on Lambda (module state is per environment).
                new_environment=functools.partial(fresh_handler, "functions.handlers.consumer", attribute),
                batch_size=consumer.batch_size,
                batching_window_seconds=window,
                concurrency=pollers,
                timeout_seconds=consumer.timeout_seconds,
                function_name="consumer" if lane == "normal" else f"{lane}-consumer",
            )
            for lane, lane_handler, attribute, pollers, window in specs
        ]

    def _configure_functions(self, resources: LocalResources) -> None:
        settings = self.config.settings(
            queue_url=resources.queue_url, dlq_url=resources.dlq_url, **resources.lane_urls()
        )
        if self.moto_port:
            # Presigned URLs must point where a browser or curl can reach the local S3: the moto server.
            settings = replace(settings, s3_public_endpoint=f"http://127.0.0.1:{self.moto_port}")
        os.environ.update(settings.to_env())
        os.environ.update(
            {
                "POWERTOOLS_SERVICE_NAME": self.config.service_name,
                "POWERTOOLS_METRICS_NAMESPACE": self.config.metrics_namespace,
                # No CloudWatch here: metrics would only be printed, and X-Ray has no daemon to send to.
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            }
        )
        from functions.handlers.runtime import reset

        reset()

    def _sweep_forever(self, handler: Any) -> None:
        while not self._stopping.wait(self.config.sweeper_interval_seconds):
            try:
                handler({}, LocalContext("sweeper", self.config.sweeper_timeout_seconds))
            except Exception:
                log.exception("sweeper run failed")

    def stop(self) -> None:
        self._stopping.set()
        self._gateway.stop()
        # All lanes at once: each waits for its in-flight batches.
        stopping = [threading.Thread(target=event_source.stop) for event_source in self._event_sources]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        self._sweeper.join(timeout=5)
        self._stream_source.stop()
        self._aws.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._gateway.port}"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    api_keys = parse_api_keys(os.environ.get("API_KEYS") or DEFAULT_API_KEYS)
    moto_port = int(os.environ.get("MOTO_PORT", "4566"))
    stack = LocalStack(
        config=local_config(),
        port=int(os.environ.get("PORT", "3000")),
        moto_port=moto_port or None,
        api_keys=api_keys,
    )
    stack.start()
    first_key = next(iter(api_keys))
    print(f"Jobs API    {stack.url}", flush=True)
    print(f"Dashboard   {stack.url}/   (Swagger UI: {stack.url}/swagger)", flush=True)
    print(f"API key     {first_key}  (tenant {api_keys[first_key]}; all keys: API_KEYS)", flush=True)
    if moto_port:
        print(f"Local AWS   http://127.0.0.1:{moto_port}  (AWS_ENDPOINT_URL for the AWS CLI / boto3)", flush=True)
    print(f"Try         curl -s -H 'x-api-key: {first_key}' {stack.url}/stats", flush=True)
    print("Ready. Ctrl-C to stop.", flush=True)

    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    print("Stopping: finishing in-flight batches...", flush=True)
    stack.stop()
    print("Stopped.", flush=True)

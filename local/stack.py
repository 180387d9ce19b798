"""``make run``: the whole service on this machine — moto for AWS, the same handlers, a gateway, an event source.

python -m local            # PORT (3000), MOTO_PORT (4566), API_KEYS ("local-dev-key:local", key:tenant[:read]), FRESH=1

State is kept across a graceful stop (local/state.py), a change under functions/ is reloaded in-process
(local/reload.py), and the URL and first key are written where the ``jobs`` CLI finds them (jobsctl/discovery.py).
See docs/local-development.md.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from infra.config import ServiceConfig, local_config
from jobsctl import discovery
from jobsctl.environments import EnvironmentPool, fresh_handler
from jobsctl.stopping import StopSignals, end_process
from local import state
from local.aws import (
    LocalAws,
    LocalResources,
    SeedKey,
    create_api_keys,
    create_resources,
    ensure_tables_added_later,
    parse_api_keys,
)
from local.event_source import SqsEventSource
from local.gateway import DEFAULT_READ_TIMEOUT_SECONDS, LocalGateway
from local.iam_calls import record_from_env
from local.lambda_context import LocalContext
from local.reload import CodeGenerations, ReloadingHandler
from local.stream_source import StreamEventSource

log = logging.getLogger("local")

DEFAULT_API_KEYS = "local-dev-key:local"
# How often the local stream source looks for new records when the stream is empty, as Lambda polls a stream shard
# (4 times a second): the stats lag the job records by about this much.
STREAM_POLL_SECONDS = 0.25
ROOT = Path(__file__).resolve().parents[1]
# A stop still running this long after its grace period prints every thread's stack: a Ctrl-C that hangs says where
# it hangs. So does SIGUSR1 at any time.
STOP_REPORT_AFTER_GRACE_SECONDS = 20.0


def load_environment(module: str, attribute: str = "handler") -> Any:
    """A new execution environment's copy of a handler (looked up here at each call: the bench wraps it)."""
    return fresh_handler(module, attribute)


@dataclass
class LocalStack:
    config: ServiceConfig
    port: int
    moto_port: int | None
    api_keys: dict[str, SeedKey]
    # Where the state is kept across restarts (None: not kept); fresh: start empty even if a saved state exists.
    state_file: Path | None = None
    fresh: bool = False
    # Reload the functions/ code when it changes (from this checkout).
    reload_root: Path | None = None
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    # How long stop() waits for running invocations; those still running then are retried after a restart.
    stop_grace_seconds: float = 10.0
    # What start() restored, or why it could not (for the banner).
    restored: state.StateSummary | None = field(default=None, init=False)
    restore_error: str | None = field(default=None, init=False)

    def start(self) -> None:
        # JOBS_IAM_RECORD_DIR: note the functions' AWS calls for the IAM coverage check (tests/iam).
        record_from_env()
        self._aws = LocalAws(self.moto_port)
        self._aws.start()
        self.resources = create_resources(self.config)
        if self.state_file is not None and not self.fresh and self.state_file.exists():
            try:
                self.restored = state.restore(self.state_file, self.config.jobs_table)
            except ValueError as exc:
                self.restore_error = f"{self.state_file} {exc}; starting empty"
            ensure_tables_added_later(self.config)
        create_api_keys(self.api_keys, self.config.keys_table)
        self._configure_functions(self.resources)

        # Imported only now: the handlers read their settings from the environment set just above.
        from functions.handlers import stats_stream, sweeper

        self._generations = CodeGenerations(self.reload_root or ROOT)
        # One event source per lane, as on AWS (infra/constructs/queue_consumer.py): normal, high priority, ordered.
        self._event_sources = self._lane_event_sources()
        # Concurrent requests each get an environment of their own: Powertools' resolver keeps the request on itself.
        api_environments = EnvironmentPool(
            lambda: ReloadingHandler(self._generations, "functions.handlers.api", load=load_environment)
        )
        self._gateway = LocalGateway(
            api_environments,
            "127.0.0.1",
            self.port,
            self.config.api_timeout_seconds,
            read_timeout_seconds=self.read_timeout_seconds,
        )
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep_forever,
            args=(ReloadingHandler(self._generations, "functions.handlers.sweeper", first=sweeper.handler),),
            name="sweeper",
            daemon=True,
        )
        # The jobs table's stream to the stats aggregator, as Lambda's event source does on AWS.
        self._stream_source = StreamEventSource(
            self.config.jobs_table,
            ReloadingHandler(self._generations, "functions.handlers.stats_stream", first=stats_stream.handler),
            batch_size=self.config.stats_stream.batch_size,
            interval_seconds=STREAM_POLL_SECONDS,
            timeout_seconds=self.config.stats_stream.timeout_seconds,
            batching_window_seconds=self.config.stats_stream.batching_window_seconds,
            # The deployed mapping's filter: no REMOVE records (expiries) reach the function.
            event_names=self.config.stats_stream.event_names,
        )
        for event_source in self._event_sources:
            event_source.start()
        self._stream_source.start()
        self._sweeper.start()
        self._gateway.start()
        if self.reload_root is not None:
            self._generations.start()

    def _lane_event_sources(self) -> list[SqsEventSource]:
        from functions.handlers import consumer as consumer_module

        consumer = self.config.consumer
        lanes = self.resources.lanes()
        # (lane, its handler's attribute name, pollers, batching window): Lambda has no batching window for FIFO.
        specs = (
            ("normal", "handler", consumer.max_concurrency, consumer.batching_window_seconds),
            ("high", "handler", consumer.high_max_concurrency, consumer.batching_window_seconds),
            ("ordered", "ordered_handler", consumer.ordered_max_concurrency, 0),
        )

        def environment(attribute: str) -> Any:
            return lambda: ReloadingHandler(
                self._generations, "functions.handlers.consumer", attribute, load=load_environment
            )

        return [
            SqsEventSource(
                getattr(consumer_module, attribute),  # unused: each poller starts an environment of its own
                lanes[lane].queue_url,
                lanes[lane].queue_arn,
                # Each poller is its own execution environment, as on Lambda (module state is per environment).
                new_environment=environment(attribute),
                batch_size=consumer.batch_size,
                batching_window_seconds=window,
                concurrency=pollers,
                timeout_seconds=consumer.timeout_seconds,
                function_name="consumer" if lane == "normal" else f"{lane}-consumer",
            )
            for lane, attribute, pollers, window in specs
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

    def stop(self) -> state.StateSummary | None:
        """Stop everything; with a state file, save the state first and return what was saved."""
        self._stopping.set()
        self._generations.stop()
        self._gateway.stop()
        # All lanes at once: each waits for its in-flight batches.
        stopping = [
            threading.Thread(target=event_source.stop, args=(self.stop_grace_seconds,))
            for event_source in self._event_sources
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        self._sweeper.join(timeout=5)
        self._stream_source.stop()
        saved = None
        if self.state_file is not None:
            in_flight = set().union(*(source.in_flight() for source in self._event_sources))
            saved = state.save(self.state_file, in_flight, self.config.jobs_table)
        self._aws.stop()
        return saved

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._gateway.port}"


def main() -> None:
    # The banner comes first: botocore's "Found credentials" and other INFO lines of the libraries stay quiet.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("local").setLevel(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    api_keys = parse_api_keys(os.environ.get("API_KEYS") or DEFAULT_API_KEYS)
    moto_port = int(os.environ.get("MOTO_PORT", "4566"))
    stack = LocalStack(
        config=local_config(),
        port=int(os.environ.get("PORT", "3000")),
        moto_port=moto_port or None,
        api_keys=api_keys,
        state_file=state.state_file(),
        fresh=os.environ.get("FRESH", "") not in ("", "0"),
        reload_root=None if os.environ.get("RELOAD", "1") == "0" else ROOT,
        read_timeout_seconds=float(os.environ.get("GATEWAY_READ_TIMEOUT_SECONDS", DEFAULT_READ_TIMEOUT_SECONDS)),
        stop_grace_seconds=float(os.environ.get("STOP_GRACE_SECONDS", "10")),
    )
    # From before the start: a Ctrl-C while starting, or as soon as "Ready." shows, is a stop like any other.
    signals = StopSignals()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stack.start()
    first_key = next(iter(api_keys))
    found_at = discovery.discovery_path()
    print(f"Jobs API    {stack.url}", flush=True)
    print(f"Dashboard   {stack.url}/   (Swagger UI: {stack.url}/swagger)", flush=True)
    first = api_keys[first_key]
    print(f"API key     {first_key}  (tenant {first.tenant}, scope {first.scope}; all keys: API_KEYS)", flush=True)
    if moto_port:
        print(f"Local AWS   http://127.0.0.1:{moto_port}  (AWS_ENDPOINT_URL for the AWS CLI / boto3)", flush=True)
    print(f"Try         curl -s -H 'x-api-key: {first_key}' {stack.url}/stats", flush=True)
    if stack.restored is not None:
        print(f"State       restored {stack.restored.describe()}  (FRESH=1 starts empty)", flush=True)
    elif stack.restore_error is not None:
        print(f"State       not restored: {stack.restore_error}", flush=True)
    else:
        print(f"State       empty; kept in {stack.state_file} across restarts", flush=True)
    if stack.reload_root is not None:
        print("Reload      on: a change under functions/ is picked up without a restart", flush=True)
    print(f"CLI         `jobs` finds this stack through {found_at}; elsewhere set:", flush=True)
    print(f"JOBS_URL={stack.url}", flush=True)
    print(f"JOBS_API_KEY={first_key}", flush=True)
    aws_endpoint = f"http://127.0.0.1:{moto_port}" if moto_port else ""
    discovery.write(found_at, stack.url, first_key, first.tenant, aws_endpoint, stack.config.keys_table)
    print("Ready. Ctrl-C to stop.", flush=True)

    signals.wait()
    print("Stopping: finishing in-flight batches...", flush=True)
    faulthandler.dump_traceback_later(stack.stop_grace_seconds + STOP_REPORT_AFTER_GRACE_SECONDS, exit=False)
    discovery.remove(found_at)
    saved = stack.stop()
    if saved is not None:
        print(f"Saved {saved.describe()} to {stack.state_file}  (make run FRESH=1 starts empty)", flush=True)
    print("Stopped.", flush=True)
    # Attempts still running past the grace period are left behind (retried after the restart), not waited for.
    end_process(0)

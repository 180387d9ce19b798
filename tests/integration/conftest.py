"""Integration fixtures: a fresh moto account per test, with the resources the local stack creates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.dal.clients import client
from functions.dal.jobs_repository import DynamoJobsRepository
from functions.handlers import authorizer, runtime, stats_stream
from functions.handlers import consumer as consumer_handler
from functions.settings import Settings
from infra.config import local_config
from local.aws import create_api_keys, create_resources
from local.event_source import SqsEventSource
from local.stream_source import drain
from tests.integration.harness import (
    CONSUMER_TIMEOUT_SECONDS,
    TENANT_A,
    TENANT_A_KEY,
    TENANT_B,
    TENANT_B_KEY,
    Service,
)


@pytest.fixture(autouse=True)
def stats_counted_before_reads() -> Iterator[None]:
    """The stats aggregator runs over the jobs table's stream before every read of the counters, with the reading
    repository (its shard counts), as if the stream had no lag: these tests are about exact values. The lag itself is
    seen by the end-to-end tests, where the local stack's stream source runs the real handler. Its own patch
    context: a test's ``monkeypatch.undo()`` must not take it away."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("counters", "throughput", "minute_items"):
            patch.setattr(DynamoJobsRepository, name, _after_counting(getattr(DynamoJobsRepository, name)))
        yield


def _after_counting(read: Any) -> Any:
    def call(repo: DynamoJobsRepository, *args: Any, **kwargs: Any) -> Any:
        drain(repo._jobs_table, lambda event, _context: stats_stream.apply_event(repo, event))
        return read(repo, *args, **kwargs)

    return call


@pytest.fixture(scope="module")
def local_tables() -> Iterator[Settings]:
    """The local stack's tables and queues in moto for one module's tests, with the settings the functions would run
    with."""
    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        config = local_config()
        create_resources(config)
        yield config.settings()


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    runtime.reset()
    authorizer.reset()
    # Keeping boto3's default session across tests keeps its parsed service models: ~0.2 s less per test.
    with mock_aws(config={"core": {"reset_boto3_session": False}}):
        config = local_config()
        resources = create_resources(config)
        ids = create_api_keys({TENANT_A_KEY: TENANT_A, TENANT_B_KEY: TENANT_B}, config.keys_table)
        settings = config.settings(queue_url=resources.queue_url, dlq_url=resources.dlq_url, **resources.lane_urls())
        for name, value in settings.to_env().items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        authorizer.reset()

        key_ids = {TENANT_A: ids[TENANT_A_KEY], TENANT_B: ids[TENANT_B_KEY]}
        key_values = {key_id: value for value, key_id in ids.items()}
        records = SqsEventSource(
            consumer_handler.handler,
            resources.queue_url,
            resources.queue_arn,
            batch_size=10,
            batching_window_seconds=0,
            concurrency=0,
            timeout_seconds=CONSUMER_TIMEOUT_SECONDS,
        )
        svc = Service(
            config=config,
            settings=settings,
            queue_url=resources.queue_url,
            queue_arn=resources.queue_arn,
            dlq_url=resources.dlq_url,
            dlq_arn=resources.dlq_arn,
            sqs=boto3.client("sqs"),
            dynamodb=boto3.client("dynamodb"),
            key_ids=key_ids,
            key_values=key_values,
            records=records,
            lanes=resources.lanes(),
            lane_records={
                lane: SqsEventSource(
                    consumer_handler.handler,
                    queues.queue_url,
                    queues.queue_arn,
                    batch_size=10,
                    batching_window_seconds=0,
                    concurrency=0,
                    timeout_seconds=CONSUMER_TIMEOUT_SECONDS,
                )
                for lane, queues in resources.lanes().items()
            },
        )

        # Every SendMessage the functions make (the runtime reuses this very client), with its parameters.
        def record_send(params: dict[str, Any], **_: Any) -> None:
            svc.sent.append(dict(params))

        client("sqs").meta.events.register("provide-client-params.sqs.SendMessage", record_send)
        try:
            yield svc
        finally:
            runtime.reset()
            authorizer.reset()

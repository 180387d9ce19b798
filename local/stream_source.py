"""Lambda's DynamoDB-stream event-source mapping for one table, locally.

moto keeps a table's stream in memory as one shard. This source hands its records to the handler in order, in
batches, with the fields Lambda adds to a stream event under a tumbling window (``shardId``, ``window``,
``state``), and drops them once an invocation returned: a failed invocation gets the same batch again, as on
Lambda. The mapping's filter applies as on Lambda (``StatsStreamConfig.event_names``, the one the CDK stack
deploys): a record of another kind (REMOVE: an expiry) is dropped without reaching the handler, and a batch left
with none invokes nothing. moto numbers its stream records by the length of the shard's list;
``local.aws.trimmable_streams`` numbers them by a counter instead, so handled records can be dropped and the list
stays short.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from infra.config import StatsStreamConfig
from local.aws import _DYNAMODB_LOCK, ACCOUNT_ID, REGION
from local.lambda_context import LocalContext

log = logging.getLogger("local")

Handler = Callable[[dict[str, Any], Any], Any]


def _shard(table_name: str) -> Any:
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends[ACCOUNT_ID][REGION].get_table(table_name)
    if table.stream_shard is None:
        raise RuntimeError(f"table {table_name} has no stream")
    return table.stream_shard


def _lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    data = dict(record["dynamodb"])
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):  # moto keeps a datetime; Lambda sends epoch seconds
        data["ApproximateCreationDateTime"] = created.replace(tzinfo=created.tzinfo or UTC).timestamp()
    return {**record, "dynamodb": data, "eventSourceARN": stream_arn}


def deliver_once(
    table_name: str,
    handler: Handler,
    batch_size: int,
    timeout_seconds: int = 30,
    event_names: Collection[str] = StatsStreamConfig.event_names,
) -> int:
    """Invoke ``handler`` with the oldest ``batch_size`` records whose ``eventName`` is one of ``event_names``, then
    drop them and the records filtered out before them; returns how many records left the stream (handed over or
    filtered out). If the handler raises, the records stay (the next delivery gets them again) and the error
    propagates."""
    shard = _shard(table_name)
    with _DYNAMODB_LOCK:
        taken, batch = _next_batch(shard.items, batch_size, event_names)
    if not taken:
        return 0
    if not batch:  # only filtered-out records: no invocation, as on Lambda
        with _DYNAMODB_LOCK:
            del shard.items[:taken]
        return taken
    stream_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{table_name}/stream/local"
    now = datetime.now(UTC).isoformat()
    event = {
        "Records": [_lambda_record(item.record, stream_arn) for item in batch],
        "shardId": shard.id,
        "eventSourceARN": stream_arn,
        "window": {"start": now, "end": now},
        "state": {},
        "isFinalInvokeForWindow": False,
        "isWindowTerminatedEarly": False,
    }
    handler(event, LocalContext("stats-aggregator", timeout_seconds))
    with _DYNAMODB_LOCK:
        del shard.items[:taken]  # only what was looked at: records written meanwhile were appended after it
    return taken


def _next_batch(items: list[Any], batch_size: int, event_names: Collection[str]) -> tuple[int, list[Any]]:
    """From the oldest records: how many to take off the stream, and the up to ``batch_size`` of them that pass the
    filter (Lambda fills a batch with records that pass it)."""
    batch: list[Any] = []
    taken = 0
    for item in items:
        if len(batch) == batch_size:
            break
        taken += 1
        if item.record["eventName"] in event_names:
            batch.append(item)
    return taken, batch


def drain(
    table_name: str,
    handler: Handler,
    batch_size: int = 100,
    event_names: Collection[str] = StatsStreamConfig.event_names,
) -> int:
    """Deliver until the stream is empty (tests call this before reading counters); returns how many records left
    the stream."""
    handled = 0
    while count := deliver_once(table_name, handler, batch_size, event_names=event_names):
        handled += count
    return handled


def pause_after(handled: int, batch_size: int, interval_seconds: float, batching_window_seconds: float) -> float:
    """How long the event source waits after delivering ``handled`` records: the poll interval when the stream was
    empty, the batching window after a batch that did not fill (records gather meanwhile), nothing after a full one
    (a backlog is drained as fast as the function takes it)."""
    if handled == 0:
        return interval_seconds
    if handled < batch_size:
        return batching_window_seconds
    return 0.0


class StreamEventSource:
    def __init__(
        self,
        table_name: str,
        handler: Handler,
        *,
        batch_size: int,
        interval_seconds: float,
        timeout_seconds: int,
        batching_window_seconds: float = 0.0,
        event_names: Collection[str] = StatsStreamConfig.event_names,
    ) -> None:
        self._table_name = table_name
        self._event_names = event_names
        self._handler = handler
        self._batch_size = batch_size
        self._interval = interval_seconds
        self._batching_window = batching_window_seconds
        self._timeout = timeout_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="stream-source", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stopping.is_set():
            try:
                handled = deliver_once(
                    self._table_name, self._handler, self._batch_size, self._timeout, self._event_names
                )
            except Exception:
                log.exception("stats aggregator invocation failed; its batch will be delivered again")
                handled = 0
            pause = pause_after(handled, self._batch_size, self._interval, self._batching_window)
            if pause:
                self._stopping.wait(pause)

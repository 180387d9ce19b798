"""Lambda's DynamoDB-stream event-source mapping for one table, locally.

moto keeps a table's stream in memory as one shard. This source hands its records to the handler in order, in
batches, with the fields Lambda adds to a stream event under a tumbling window (``shardId``, ``window``,
``state``), and drops them once an invocation returned: a failed invocation gets the same batch again, as on
Lambda. moto numbers its stream records by the length of the shard's list; ``local.aws.trimmable_streams`` numbers
them by a counter instead, so handled records can be dropped and the list stays short.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

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


def deliver_once(table_name: str, handler: Handler, batch_size: int, timeout_seconds: int = 30) -> int:
    """Invoke ``handler`` with the oldest ``batch_size`` records, then drop them; returns how many it handled.
    If the handler raises, the records stay (the next delivery gets them again) and the error propagates."""
    shard = _shard(table_name)
    with _DYNAMODB_LOCK:
        batch = list(shard.items[:batch_size])
    if not batch:
        return 0
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
        del shard.items[: len(batch)]  # only what was handed over: records written meanwhile were appended after it
    return len(batch)


def drain(table_name: str, handler: Handler, batch_size: int = 100) -> int:
    """Deliver until the stream is empty (tests call this before reading counters)."""
    handled = 0
    while count := deliver_once(table_name, handler, batch_size):
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
    ) -> None:
        self._table_name = table_name
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
                handled = deliver_once(self._table_name, self._handler, self._batch_size, self._timeout)
            except Exception:
                log.exception("stats aggregator invocation failed; its batch will be delivered again")
                handled = 0
            pause = pause_after(handled, self._batch_size, self._interval, self._batching_window)
            if pause:
                self._stopping.wait(pause)

"""The stats aggregator: the jobs table's stream (NEW_AND_OLD_IMAGES) applied to the per-tenant counters.

Lambda's event-source mapping runs it with a tumbling window, which is what puts the stream shard's id in the event
(each stats item keeps what each shard applied to it; see logic/stats_stream.py). Nothing is carried from one
invocation to the next, so the window's ``state`` is always returned empty. An error fails the whole
batch, which Lambda retries as it is, in order, until the records leave the stream (24 h; there is an alarm on the
iterator age well before that).
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.dal.jobs_repository import stream_change, stream_sequence
from functions.handlers.runtime import dependency_settler, emit, logger, metrics, runtime, traced
from functions.logic.stats_stream import StatsStore, apply_stream_batch
from functions.models.errors import JobsError


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    apply_event(runtime().repo, event)
    # Waiting jobs whose dependencies ended are released or cancelled (logic/dependencies.py); idempotent, so a
    # batch delivered again after a failure here settles what is left.
    emit("DependencyEdgesSettled", dependency_settler().settle_stream(event.get("Records", [])))
    return {"state": {}}


def apply_event(store: StatsStore, event: dict[str, Any]) -> int:
    """Apply one stream event to ``store``'s counters; returns the status changes counted now."""
    shard = event.get("shardId")
    if not shard:
        raise JobsError("no shardId in the event: the stream's event source needs a tumbling window")
    records = [(stream_sequence(record), stream_change(record)) for record in event.get("Records", [])]
    return apply_stream_batch(store, shard, records, int(time.time()))

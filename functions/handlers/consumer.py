"""The consumers: SQS event sources with partial batch responses (ReportBatchItemFailures), one entry point per kind
of lane.

- ``handler``: the normal and the high-priority lanes (standard queues). A batch's records run at the same time
  (``ConcurrentBatchProcessor``, up to ``record_concurrency`` at once), each on its own; one that raises is reported
  as failed and comes back after its visibility timeout, which the logic sets itself for backoff and schedules.
  Successes are deleted by Lambda.
- ``ordered_handler``: the ordered lane (FIFO). Records run in order; once a record of a group fails (a retry's
  backoff, a throttled job), the rest of *that group* in the batch is reported as failed without being run
  (Powertools ``SqsFifoPartialProcessor(skip_group_on_error=True)``), so nothing of the group overtakes it, while
  other groups in the batch go on. Those skipped records are made visible again at once: SQS keeps the group
  locked while its failed head is in flight, so they cannot be handed out before it, and they need not wait out the
  queue's visibility timeout (6x the function timeout) once the head is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Imported before anything that imports pydantic: with pydantic already loaded, Powertools' batch module also loads
# its pydantic parser models (~0.1x of cold start; tests/unit/test_cold_start.py).
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import SQSFifoMessageGroupCircuitBreakerError
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

# Every invocation reads paused types: the store's module loads at init with the rest of the consumer (runtime.py's
# factories import their modules when first called). A fan-out batch is settled only when a job of one ends
# (runtime.settle_batch), so the batches' modules load then, not at every cold start.
import functions.dal.pauses  # noqa: F401
from functions.handlers.concurrent_batch import ConcurrentBatchProcessor
from functions.handlers.runtime import (
    callback_deliverer,
    emit,
    files,
    limiter,
    logger,
    metrics,
    pause_check,
    runtime,
    settle_batch,
    traced,
)
from functions.logic.clock import system_clock
from functions.logic.consume import ConsumerSettings, MessageConsumer
from functions.models.errors import StorageError

# An all-failed batch is a normal outcome here (e.g. ten retries deferred), not an invocation error.
processor = ConcurrentBatchProcessor(
    max_workers=lambda: runtime().settings.record_concurrency, raise_on_entire_batch_failure=False
)
ordered_processor = SqsFifoPartialProcessor(skip_group_on_error=True)
ordered_processor.raise_on_entire_batch_failure = False  # not a constructor argument of the FIFO processor


def message_consumer() -> MessageConsumer:
    """The consumer logic with this environment's shared dependencies (limits, batches, callbacks)."""
    rt = runtime()
    return MessageConsumer(
        repo=rt.repo,
        queue=rt.queue,
        clock=system_clock,
        settings=ConsumerSettings(rt.settings.backoff_base_seconds, rt.settings.backoff_cap_seconds),
        events=emit,
        job_settings=rt.settings,
        files=files,
        limiter=limiter(),
        pauses=pause_check(),
        after_final=settle_batch,
        callback_delivery=callback_deliverer().deliver,
    )


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> str:
    remaining_ms = (
        lambda_context.get_remaining_time_in_millis()
        if lambda_context
        else runtime().settings.default_lease_seconds * 1000
    )
    # SQS's receive count: a message received before is a retry or a wait, whose claim is read-decide-write.
    receive_count = int(record.raw_event.get("attributes", {}).get("ApproximateReceiveCount") or 1)
    outcome = message_consumer().handle(
        record.body, record.event_source_arn, record.receipt_handle, remaining_ms, receive_count
    )
    return outcome.value


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def ordered_handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=ordered_processor, context=context
    )
    release_skipped(ordered_processor)
    return response


def release_skipped(fifo_processor: SqsFifoPartialProcessor) -> None:
    """Make the records skipped behind a failed record of their group visible again now (see the module's doc)."""
    for record, (exc_type, _, _) in zip(fifo_processor.fail_messages, fifo_processor.exceptions, strict=True):
        if exc_type is not SQSFifoMessageGroupCircuitBreakerError or not isinstance(record, SQSRecord):
            continue  # a record that ran and failed: its own visibility (backoff) stands
        try:
            runtime().queue.defer(record.event_source_arn, record.receipt_handle, 0)
        except StorageError:
            # It then comes back after the queue's visibility timeout: later, never out of order.
            logger.warning("a skipped record could not be released", extra={"message_id": record.message_id})

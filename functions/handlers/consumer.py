"""The consumer: an SQS event source with partial batch responses (ReportBatchItemFailures).

A record that raises is reported as failed and comes back after its visibility timeout; the logic sets that
timeout itself for backoff and schedules. Successes are deleted by Lambda.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.handlers.runtime import (
    batch_settler,
    callback_deliverer,
    emit,
    files,
    limiter,
    logger,
    metrics,
    runtime,
    traced,
)
from functions.logic.clock import system_clock
from functions.logic.consume import ConsumerSettings, MessageConsumer

# An all-failed batch is a normal outcome here (e.g. ten retries deferred), not an invocation error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> str:
    rt = runtime()
    consumer = MessageConsumer(
        repo=rt.repo,
        queue=rt.queue,
        clock=system_clock,
        settings=ConsumerSettings(rt.settings.backoff_base_seconds, rt.settings.backoff_cap_seconds),
        events=emit,
        job_settings=rt.settings,
        files=files,
        limiter=limiter(),
        after_final=batch_settler().job_final,
        callback_delivery=callback_deliverer().deliver,
    )
    remaining_ms = (
        lambda_context.get_remaining_time_in_millis() if lambda_context else rt.settings.default_lease_seconds * 1000
    )
    outcome = consumer.handle(record.body, record.event_source_arn, record.receipt_handle, remaining_ms)
    return outcome.value


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)

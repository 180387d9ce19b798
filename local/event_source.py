"""A local SQS event-source mapping that behaves like Lambda's: a configuration of the shared ``SqsWorker``.

Several pollers each gather a batch (up to ``batch_size`` messages, waiting at most ``batching_window`` seconds
once the first message is in), invoke the handler with an SQS event, then delete only the messages the partial
batch response did not list as failures. Failures are left alone: they come back when their visibility timeout
(possibly set by the handler) runs out, and SQS's redrive policy moves them to the DLQ after maxReceiveCount.
If the invocation itself raises, the whole batch is left, as Lambda does. No heartbeats: Lambda has none either
(the queue's visibility timeout is 6x the function timeout instead).

The polling, batching, invoking and deleting live in ``jobsctl.worker`` and are shared with ``jobs worker``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobsctl.worker import SqsWorker
from local.lambda_context import LocalContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class SqsEventSource(SqsWorker):
    def __init__(
        self,
        handler: Handler,
        queue_url: str,
        queue_arn: str,
        *,
        batch_size: int,
        batching_window_seconds: float,
        concurrency: int,
        timeout_seconds: int,
        function_name: str = "consumer",
        new_environment: Callable[[], Handler] | None = None,
    ) -> None:
        super().__init__(
            handler,
            queue_url,
            queue_arn,
            batch_size=batch_size,
            batching_window_seconds=batching_window_seconds,
            concurrency=concurrency,
            timeout_seconds=timeout_seconds,
            function_name=function_name,
            wait_seconds=1,  # long-poll briefly so that stop() returns promptly
            invoke_size=None,  # the whole batch in one invocation, as Lambda does
            visibility_timeout=None,
            context_factory=lambda name, timeout: LocalContext(name, int(timeout)),
            new_environment=new_environment,
        )

    def in_flight(self) -> set[str]:
        """Ids of the messages whose invocation is still running (after ``stop``: those it could not wait for)."""
        with self._lock:
            return {str(item.message["MessageId"]) for item in self._held.values() if item.running}

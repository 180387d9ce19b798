"""Powertools' SQS batch processor, running a batch's records at the same time instead of one after another.

Jobs mostly wait (on HTTP, DynamoDB, S3, a model, or ``simulate``'s sleep). One after another, the tenth record of a
batch waited for the nine before it, the ten shared one invocation's timeout, and Lambda billed the sum of their
waits; at the same time a batch takes about as long as its slowest job. Each record still succeeds or fails on its
own (the record handler raises to fail it), exactly as with ``BatchProcessor``. The ordered (FIFO) lane keeps its
own sequential processor: order within a group is the point of it.

Records run in a small pool of threads kept for the execution environment. Each record runs in a copy of the
caller's context (``contextvars``), so context-scoped state such as Powertools' thread-safe log keys stays per
record. An exception that is not an ``Exception`` (the runtime dying, a test's simulated crash) still ends the
invocation, once every record has finished, so that no record keeps running after its invocation is over.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType


class ConcurrentBatchProcessor(BatchProcessor):
    def __init__(self, max_workers: Callable[[], int], **kwargs: Any) -> None:
        """``max_workers``: records run at once at most, read when the first batch comes (settings are read then)."""
        super().__init__(event_type=EventType.SQS, **kwargs)
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def process(self) -> list[tuple]:
        if len(self.records) <= 1:
            return super().process()
        pool = self._threads()
        if pool is None:
            return super().process()
        futures: list[Future[tuple]] = [
            pool.submit(contextvars.copy_context().run, self._process_record, record) for record in self.records
        ]
        wait(futures)
        return [future.result() for future in futures]  # re-raises a record's BaseException, after all finished

    def _threads(self) -> ThreadPoolExecutor | None:
        with self._pool_lock:
            if self._pool is None:
                workers = self._max_workers()
                if workers <= 1:
                    return None
                self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="record")
            return self._pool

"""Fan-out batches [being built]: ``POST /jobs/batch`` creates children that share a batch id; the batch completes
(and its ``onComplete`` job is enqueued exactly once) when its last child is final."""

from __future__ import annotations

from typing import Any

from functions.dal.job_queue import JobQueue
from functions.dal.jobs_repository import JobsRepository
from functions.logic.clock import Clock, system_clock
from functions.models.job import Job
from functions.settings import Settings


class BatchSettler:
    def __init__(
        self, repo: JobsRepository, queue: JobQueue, settings: Settings, ddb: Any, clock: Clock = system_clock
    ) -> None:
        self._repo = repo
        self._queue = queue
        self._settings = settings
        self._ddb = ddb
        self._clock = clock

    def job_final(self, job: Job) -> None:
        """Called once a job is final (and again if a redelivery finds it final): completes its batch if due."""
        return None

"""Progress a running job reports (``ctx.report_progress(40, "resized 4 of 10")``), written to its record.

Writes are throttled: the first report is written at once, later ones at most every ``interval_seconds``; the last
value always lands with the attempt's outcome (the consumer puts ``latest`` into the record it saves). A progress
write is conditional on the record's version without changing it, so it never disturbs the attempt's own writes,
and is dropped when the attempt has lost its job to another delivery.
"""

from __future__ import annotations

import math

from aws_lambda_powertools import Logger

from functions.dal.jobs_repository import JobsRepository
from functions.logic.clock import Clock, iso
from functions.models.errors import StorageError
from functions.models.job import Job, Progress

logger = Logger(child=True)

MAX_PROGRESS_MESSAGE = 200


class ProgressReporter:
    def __init__(self, repo: JobsRepository, job: Job, clock: Clock, interval_seconds: float) -> None:
        self._repo = repo
        self._job = job
        self._clock = clock
        self._interval_ms = max(0, int(interval_seconds * 1000))
        self._last_write_ms: int | None = None
        self.latest: Progress | None = None
        self.writes = 0

    def __call__(self, percent: float, message: str = "") -> None:
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not math.isfinite(percent):
            raise ValueError("progress must be a number from 0 to 100")
        if not 0 <= percent <= 100:
            raise ValueError(f"progress must be from 0 to 100, not {percent}")
        if not isinstance(message, str):
            raise ValueError("the progress message must be a string")
        now = self._clock()
        self.latest = Progress(percent=float(percent), message=message[:MAX_PROGRESS_MESSAGE], at=iso(now))
        if self._last_write_ms is None or now - self._last_write_ms >= self._interval_ms:
            self._last_write_ms = now
            self._write(self.latest)

    def _write(self, progress: Progress) -> None:
        try:
            if self._repo.record_progress(self._job, progress):
                self.writes += 1
        except StorageError:
            # Progress is advisory: a failed write must not fail the job (the outcome carries the last value).
            logger.warning("progress not recorded", exc_info=True)

"""The sweeper, run every minute by EventBridge (every 2 s by the local stack): fires the due recurring schedules,
then sweeps the jobs' marks."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.handlers.runtime import emit, logger, metrics, runtime, schedule_store, settle_batch, traced
from functions.logic import schedules
from functions.logic.clock import system_clock
from functions.logic.enqueue import Accepted, JobSpec, enqueue_settings, submit
from functions.logic.sweep import SweepSettings, sweep
from functions.models.errors import StorageError


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    rt = runtime()
    store = schedule_store()
    try:
        fired = schedules.fire_due(store, store.shards, system_clock, rt.settings, submit_scheduled)
        emit("SchedulesFired", fired.fired)
        emit("SchedulesFailed", fired.failed)
    except StorageError:
        # The schedules wait for the next sweep (their runs are keyed); the jobs' marks are swept regardless.
        logger.exception("schedules not fired: storage unavailable")
    settings = SweepSettings(
        rt.settings.sweep_shards,
        rt.settings.pending_grace_seconds,
        rt.settings.release_ahead_seconds,
        in_flight_grace_seconds=rt.settings.in_flight_grace_seconds,
        orphan_give_up_seconds=rt.settings.orphan_give_up_seconds,
    )
    # A job the sweeper ends may be its batch's last: the batch is settled as when a consumer ends it.
    report = sweep(rt.repo, rt.queue, system_clock, settings, after_final=settle_batch)
    emit("ScheduledReleased", report.released)
    emit("PendingResent", report.resent)
    emit("CallbacksResent", report.callbacks_resent)
    emit("OrphansResent", report.orphans_resent)
    emit("OrphansFailed", report.orphans_failed)
    return asdict(report)


def submit_scheduled(spec: JobSpec, tenant: str) -> Accepted:
    """A schedule's run, enqueued as POST /jobs enqueues (its payload is small enough to stay in the record)."""
    rt = runtime()
    return submit(spec, tenant, rt.repo, rt.queue, system_clock, enqueue_settings(rt.settings))

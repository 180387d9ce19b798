"""Recurring schedules on moto: the API, and firing them as the sweeper does (exactly once, catch-up once, DST)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from functions.handlers import sweeper
from functions.handlers.runtime import runtime, schedule_store
from functions.logic import schedules
from functions.logic.clock import iso, parse_iso_ms, system_clock
from functions.logic.enqueue import Accepted, JobSpec, enqueue_settings, submit
from functions.models.schedules import Schedule
from local.lambda_context import LocalContext
from tests.integration.harness import TENANT_A, Service, ok_job

MINUTE_MS = 60_000


def _create(service: Service, **fields: Any) -> dict[str, Any]:
    body = {"name": "every-minute", "cron": "* * * * *", "job": ok_job(), **fields}
    status, schedule, headers = service.api("POST", "/schedules", body)
    assert status == 201, schedule
    assert headers["Location"] == f"/schedules/{schedule['id']}"
    return dict(schedule)


def _stored(schedule_id: str) -> Schedule:
    found = schedule_store().get(TENANT_A, schedule_id)
    assert found is not None
    return found


def _due_at(schedule_id: str, at_ms: int) -> Schedule:
    """The schedule, as if its next run were at ``at_ms`` (a sweeper that was down, a clock moved on)."""
    current = _stored(schedule_id)
    schedule_store().replace(current, current.model_copy(update={"next_run_at": iso(at_ms)}))
    return _stored(schedule_id)


def _submit(spec: JobSpec, tenant: str) -> Accepted:
    rt = runtime()
    return submit(spec, tenant, rt.repo, rt.queue, system_clock, enqueue_settings(rt.settings))


def _fire(now_ms: int) -> schedules.FireReport:
    store = schedule_store()
    return schedules.fire_due(store, store.shards, lambda: now_ms, runtime().settings, _submit)


def _jobs_of(service: Service, schedule_id: str) -> list[dict[str, Any]]:
    status, page, _ = service.api("GET", "/jobs", query={"limit": "100"})
    assert status == 200
    return [job for job in page["jobs"] if job.get("scheduleId") == schedule_id]


# --- the API ---


def test_a_schedule_is_created_read_listed_and_its_name_is_unique_per_tenant(service: Service) -> None:
    # When a schedule is created with defaults
    before = system_clock()
    created = _create(service, name="nightly", cron="30 2 * * *")

    # Then it has every field, UTC and enabled by default, its next run in the future at 02:30 UTC
    assert set(created) == {
        "id", "name", "cron", "timezone", "job", "enabled", "nextRunAt", "lastRunAt", "lastJobId", "createdAt",
        "updatedAt",
    }  # fmt: skip
    assert (created["timezone"], created["enabled"], created["lastRunAt"], created["lastJobId"]) == (
        "UTC",
        True,
        None,
        None,
    )
    assert created["nextRunAt"].endswith("T02:30:00.000Z") and parse_iso_ms(created["nextRunAt"]) > before
    assert created["job"] == ok_job()
    # And it reads back and lists the same
    assert service.api("GET", f"/schedules/{created['id']}").body == created
    listed = service.api("GET", "/schedules").body
    assert (listed["count"], listed["schedules"], listed["nextCursor"]) == (1, [created], None)

    # When the name is used again by the tenant, Then 409; another tenant may use it
    status, body, _ = service.api("POST", "/schedules", {"name": "nightly", "cron": "@daily", "job": ok_job()})
    assert (status, body["code"]) == (409, "SCHEDULE_EXISTS")
    assert (
        service.api(
            "POST", "/schedules", {"name": "nightly", "cron": "@daily", "job": ok_job()}, key=service.key_b
        ).status
        == 201
    )
    # And another tenant does not see tenant A's schedule
    assert service.api("GET", f"/schedules/{created['id']}", key=service.key_b).status == 404
    assert service.api("GET", "/schedules", key=service.key_b).body["count"] == 1


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"cron": "* * * * * *"}, "INVALID_SCHEDULE", "cron"),
        ({"cron": "@reboot"}, "INVALID_SCHEDULE", "cron"),
        ({"cron": "0 0 31 2 *"}, "INVALID_SCHEDULE", "cron"),
        ({"timezone": "Mars/Olympus"}, "INVALID_SCHEDULE", "timezone"),
        ({"timezone": None}, "INVALID_SCHEDULE", "timezone"),
        ({"name": "has space"}, "INVALID_SCHEDULE", "name"),
        ({"name": "x" * 65}, "INVALID_SCHEDULE", "name"),
        ({"enabled": "yes"}, "INVALID_SCHEDULE", "enabled"),
        ({"extra": 1}, "INVALID_SCHEDULE", "extra"),
        ({"job": {"type": "no-such-type"}}, "INVALID_TYPE", None),
        ({"job": {"type": "simulate", "payload": {"durationMs": "slow"}}}, "INVALID_PAYLOAD", None),
        ({"job": ok_job(priority=99)}, "INVALID_OPTION", None),
        ({"job": ok_job(delaySeconds=5)}, "INVALID_OPTION", None),
        ({"job": ok_job(runAt="2030-01-01T00:00:00Z")}, "INVALID_OPTION", None),
        ({"job": "simulate"}, "INVALID_SCHEDULE", "job"),
    ],
)
def test_a_bad_schedule_is_refused_with_its_code_naming_the_field(
    service: Service, body: dict[str, Any], code: str, field: str | None
) -> None:
    request = {"name": "bad", "cron": "* * * * *", "job": ok_job(), **body}
    status, answer, _ = service.api("POST", "/schedules", request)
    assert (status, answer["code"]) == (400, code), answer
    if field is not None:
        assert answer["details"]["field"] == field
    assert service.api("GET", "/schedules").body["count"] == 0


def test_missing_fields_and_unknown_schedules(service: Service) -> None:
    for missing in ("name", "cron", "job"):
        body = {"name": "n", "cron": "@hourly", "job": ok_job()}
        del body[missing]
        status, answer, _ = service.api("POST", "/schedules", body)
        assert (status, answer["code"], answer["details"]["field"]) == (400, "INVALID_SCHEDULE", missing)
    unknown = "0190f2a4-0000-7000-8000-000000000000"
    for method, path in (
        ("GET", f"/schedules/{unknown}"),
        ("DELETE", f"/schedules/{unknown}"),
        ("POST", f"/schedules/{unknown}/run"),
        ("GET", "/schedules/" + "x" * 500),
    ):
        status, answer, _ = service.api(method, path)
        assert (status, answer["code"]) == (404, "NOT_FOUND"), (method, path)
    status, answer, _ = service.api("PATCH", f"/schedules/{unknown}", {"enabled": False})
    assert (status, answer["code"]) == (404, "NOT_FOUND")


def test_listing_pages_with_limit_and_cursor_as_get_jobs_does(service: Service) -> None:
    names = [f"s{index}" for index in range(3)]
    for name in names:
        _create(service, name=name)
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page, _ = service.api("GET", "/schedules", query=query)
        assert status == 200 and page["count"] == len(page["schedules"]) <= 2
        seen += [schedule["name"] for schedule in page["schedules"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == names  # oldest first
    for bad in ({"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"cursor": "nope"}, {"status": "pending"}):
        status, answer, _ = service.api("GET", "/schedules", query=bad)
        assert (status, answer["code"]) == (400, "INVALID_QUERY"), bad


def test_patch_recomputes_next_run_and_disabling_takes_it_out_of_the_due_index(service: Service) -> None:
    before = system_clock()
    created = _create(service, cron="0 0 1 1 *")
    # (next New Year: next year's from 1 January on, so no check of the year, which fails in late December)
    assert created["nextRunAt"].endswith("-01-01T00:00:00.000Z") and parse_iso_ms(created["nextRunAt"]) > before

    # When its cron becomes every five minutes, Then its next run is within five minutes
    status, patched, _ = service.api("PATCH", f"/schedules/{created['id']}", {"cron": "*/5 * * * *"})
    assert status == 200, patched
    assert 0 < parse_iso_ms(patched["nextRunAt"]) - system_clock() <= 5 * MINUTE_MS
    assert patched["name"] == created["name"] and patched["updatedAt"] >= created["updatedAt"]

    # When it is disabled, Then it has no next run, and a sweep far in the future fires nothing
    status, disabled, _ = service.api("PATCH", f"/schedules/{created['id']}", {"enabled": False})
    assert (status, disabled["enabled"], disabled["nextRunAt"]) == (200, False, None)
    assert _fire(system_clock() + 86_400_000).fired == 0

    # When it is enabled again, Then its next run is computed from now
    status, enabled, _ = service.api(
        "PATCH", f"/schedules/{created['id']}", {"enabled": True, "timezone": "Asia/Tokyo"}
    )
    assert status == 200 and enabled["timezone"] == "Asia/Tokyo"
    assert 0 < parse_iso_ms(enabled["nextRunAt"]) - system_clock() <= 5 * MINUTE_MS
    # And a bad change is refused as at creation, leaving it as it was
    for body, code in (
        ({"cron": "61 * * * *"}, "INVALID_SCHEDULE"),
        ({"job": ok_job(runAt="2030-01-01T00:00:00Z")}, "INVALID_OPTION"),
        ({"name": "renamed"}, "INVALID_SCHEDULE"),
    ):
        status, answer, _ = service.api("PATCH", f"/schedules/{created['id']}", body)
        assert (status, answer["code"]) == (400, code)
    assert service.api("GET", f"/schedules/{created['id']}").body == enabled


def test_delete_answers_the_schedule_and_frees_its_name(service: Service) -> None:
    created = _create(service)
    status, deleted, _ = service.api("DELETE", f"/schedules/{created['id']}")
    assert (status, deleted) == (200, created)
    assert service.api("GET", f"/schedules/{created['id']}").status == 404
    assert _fire(system_clock() + 86_400_000).fired == 0
    _create(service)  # the name is free again


def test_run_now_enqueues_the_job_outside_the_cadence(service: Service) -> None:
    created = _create(service, cron="@monthly")
    status, job, headers = service.api("POST", f"/schedules/{created['id']}/run")
    assert status == 202, job
    assert (job["status"], job["scheduleId"], job["type"]) == ("pending", created["id"], "simulate")
    assert headers["Location"] == f"/jobs/{job['id']}"
    assert service.job(job["id"])["scheduleId"] == created["id"]
    # And its cadence is unchanged
    assert service.api("GET", f"/schedules/{created['id']}").body["nextRunAt"] == created["nextRunAt"]
    service.drain()
    assert service.job(job["id"])["status"] == "completed"


def test_preview_lists_the_next_run_times(service: Service) -> None:
    status, body, _ = service.api("GET", "/schedules/preview", query={"cron": "0 9 * * MON-FRI", "count": "3"})
    assert status == 200 and len(body["runs"]) == 3
    for run in body["runs"]:
        moment = datetime.fromisoformat(run)
        assert (moment.hour, moment.minute) == (9, 0) and moment.weekday() < 5
    status, body, _ = service.api("GET", "/schedules/preview", query={"cron": "@daily", "timezone": "Europe/Paris"})
    assert status == 200 and len(body["runs"]) == 5
    paris = [datetime.fromisoformat(run).astimezone(ZoneInfo("Europe/Paris")) for run in body["runs"]]
    assert all((moment.hour, moment.minute) == (0, 0) for moment in paris)
    for query, code in (
        ({"cron": "nope"}, "INVALID_SCHEDULE"),
        ({}, "INVALID_SCHEDULE"),
        ({"cron": "@daily", "timezone": "Nowhere"}, "INVALID_SCHEDULE"),
        ({"cron": "@daily", "count": "21"}, "INVALID_QUERY"),
    ):
        status, answer, _ = service.api("GET", "/schedules/preview", query=query)
        assert (status, answer["code"]) == (400, code), query


# --- firing ---


def test_the_sweeper_handler_fires_a_due_schedule_once_and_the_job_carries_its_id(service: Service) -> None:
    # Given a schedule whose next run has passed (daily: an every-minute one would fire again if the second sweep
    # began in the next minute)
    created = _create(service, cron="@daily")
    due = _due_at(created["id"], (system_clock() // MINUTE_MS - 1) * MINUTE_MS)

    # When the sweeper runs twice
    sweeper.handler({}, LocalContext("sweeper", 60))
    sweeper.handler({}, LocalContext("sweeper", 60))

    # Then one job was enqueued for that run, carrying the schedule's id, and it runs
    jobs = _jobs_of(service, created["id"])
    assert len(jobs) == 1
    after = service.api("GET", f"/schedules/{created['id']}").body
    assert after["lastJobId"] == jobs[0]["id"] and after["lastRunAt"] >= due.next_run_at
    assert parse_iso_ms(after["nextRunAt"]) > system_clock() - MINUTE_MS
    assert "lastError" not in after
    service.drain()
    assert service.job(jobs[0]["id"])["status"] == "completed"


def test_two_racing_sweeps_make_exactly_one_job_per_run(service: Service) -> None:
    # Given a due schedule, read by two sweeps before either moves it on
    created = _create(service)
    now = system_clock()
    seen = _due_at(created["id"], now - MINUTE_MS)
    store, settings = schedule_store(), runtime().settings

    # When both fire it from what they read
    outcomes = [schedules.fire(store, seen, now, settings, _submit) for _ in range(2)]

    # Then one moved it on, the other lost the race, and the run made one job
    assert sorted(outcomes) == ["fired", "skipped"]
    assert len(_jobs_of(service, created["id"])) == 1

    # And sweeps run at once on threads make one job for the next run too
    _due_at(created["id"], now)
    barrier = threading.Barrier(3)
    reports: list[schedules.FireReport] = []

    def sweep_now() -> None:
        barrier.wait()
        reports.append(_fire(now + 1000))

    threads = [threading.Thread(target=sweep_now) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(report.fired for report in reports) == 1
    assert len(_jobs_of(service, created["id"])) == 2


def test_time_missed_while_nothing_ran_fires_once_for_the_latest_run(service: Service) -> None:
    # Given an every-minute schedule whose sweeper was down for three hours
    created = _create(service)
    now = system_clock() // MINUTE_MS * MINUTE_MS + 10_000  # ten seconds into a minute, so now + 1 s is too
    _due_at(created["id"], now - 3 * 3_600_000)

    # When the sweeper comes back (and again a second later)
    assert _fire(now).fired == 1
    assert _fire(now + 1000).fired == 0

    # Then one job, for the latest due minute; the next run is the next minute after now
    assert len(_jobs_of(service, created["id"])) == 1
    after = _stored(created["id"])
    assert after.last_run_at == iso(now // MINUTE_MS * MINUTE_MS)
    assert after.next_run_at == iso((now // MINUTE_MS + 1) * MINUTE_MS)


def _runs_through(service: Service, created: dict[str, Any], start_ms: int, end_ms: int, step_ms: int) -> list[str]:
    """Sweep every ``step_ms`` from ``start_ms`` to ``end_ms``; the due times (lastRunAt) of the runs made."""
    _due_at(created["id"], schedules.cron.next_run_after(created["cron"], created["timezone"], start_ms))
    runs: list[str] = []
    for now in range(start_ms, end_ms, step_ms):
        if _fire(now).fired:
            last = _stored(created["id"]).last_run_at
            assert last is not None
            runs.append(last)
    return runs


def test_a_0230_job_runs_once_on_the_spring_forward_day(service: Service) -> None:
    # Given 02:30 daily in New York, where 2026-03-08 02:00 jumps to 03:00
    created = _create(service, cron="30 2 * * *", timezone="America/New_York")
    # When sweeps run every 10 minutes from the 7th to the 9th
    runs = _runs_through(
        service, created, parse_iso_ms("2026-03-07T00:00:00Z"), parse_iso_ms("2026-03-10T00:00:00Z"), 10 * MINUTE_MS
    )
    # Then it ran once each day; on the 8th at 03:30 EDT (02:30 does not exist), not zero or two times
    new_york = [datetime.fromisoformat(run).astimezone(ZoneInfo("America/New_York")) for run in runs]
    assert [(moment.day, moment.hour, moment.minute) for moment in new_york] == [(7, 2, 30), (8, 3, 30), (9, 2, 30)]
    assert len(_jobs_of(service, created["id"])) == 3


def test_a_0130_job_runs_once_on_the_fall_back_day(service: Service) -> None:
    # Given 01:30 daily in New York, where 2026-11-01 02:00 goes back to 01:00 (01:30 happens twice)
    created = _create(service, cron="30 1 * * *", timezone="America/New_York")
    # When sweeps run every 10 minutes from Oct 31 to Nov 2
    runs = _runs_through(
        service, created, parse_iso_ms("2026-10-31T00:00:00Z"), parse_iso_ms("2026-11-03T00:00:00Z"), 10 * MINUTE_MS
    )
    # Then it ran once each day, at the first 01:30 on Nov 1 (EDT, UTC-4)
    assert runs == ["2026-10-31T05:30:00.000Z", "2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"]


def test_a_run_that_cannot_enqueue_records_last_error_and_keeps_its_cadence(service: Service) -> None:
    # Given a schedule whose job no longer validates (its type was removed), due now
    created = _create(service)
    current = _stored(created["id"])
    now = system_clock()
    schedule_store().replace(
        current,
        current.model_copy(update={"job": {"type": "retired-type", "payload": {}}, "next_run_at": iso(now - 1000)}),
    )

    # When the sweeper fires it
    report = _fire(now)

    # Then no job, the error recorded, and the next run is still the next minute
    assert (report.fired, report.failed) == (0, 1)
    after = service.api("GET", f"/schedules/{created['id']}").body
    assert after["lastError"].startswith("INVALID_TYPE: ")
    assert after["nextRunAt"] == iso((now // MINUTE_MS + 1) * MINUTE_MS)
    assert after["lastJobId"] is None and _jobs_of(service, created["id"]) == []

    # When its job is fixed and it runs again, Then the error is cleared
    fixed = service.api("PATCH", f"/schedules/{created['id']}", {"job": ok_job()})
    assert fixed.status == 200
    _due_at(created["id"], now)
    assert _fire(now + 1000).fired == 1
    assert "lastError" not in service.api("GET", f"/schedules/{created['id']}").body


def test_a_patch_racing_a_run_applies_to_the_schedule_as_the_run_left_it(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a due schedule, and a sweep that fires it just as a PATCH has read it
    created = _create(service)
    seen = _due_at(created["id"], system_clock() - MINUTE_MS)
    store_type = type(schedule_store())
    replace = store_type.replace
    raced: list[bool] = []

    def replace_after_a_run(self: Any, old: Schedule, new: Schedule) -> None:
        if not raced:
            raced.append(True)
            # the run moves the schedule on first (as the sweeper would, from what its index query read)
            assert schedules.fire(schedule_store(), seen, system_clock(), runtime().settings, _submit) == "fired"
        replace(self, old, new)

    monkeypatch.setattr(store_type, "replace", replace_after_a_run)

    # When the PATCH writes
    status, patched, _ = service.api("PATCH", f"/schedules/{created['id']}", {"timezone": "Europe/Paris"})

    # Then it succeeded on the second read, keeping what the run recorded
    assert status == 200, patched
    assert patched["timezone"] == "Europe/Paris" and patched["lastJobId"] is not None
    assert len(_jobs_of(service, created["id"])) == 1


def test_a_schedule_that_no_longer_reads_does_not_stop_the_others(service: Service) -> None:
    # Given two due schedules, one whose time zone is no longer known (a tzdata update removed it)
    broken, healthy = _create(service, name="broken"), _create(service, name="healthy")
    now = system_clock()
    current = _stored(broken["id"])
    schedule_store().replace(
        current, current.model_copy(update={"timezone": "Gone/Zone", "next_run_at": iso(now - 1000)})
    )
    _due_at(healthy["id"], now - 1000)

    # When the sweeper fires the due schedules
    report = _fire(now)

    # Then the healthy one ran, the broken one was left as it was
    assert (report.fired, report.skipped) == (1, 1)
    assert len(_jobs_of(service, healthy["id"])) == 1 and _jobs_of(service, broken["id"]) == []
    assert _stored(broken["id"]).next_run_at == iso(now - 1000)

"""A Python client for the jobs API, on one ``requests`` session (keep-alive, pooled connections).

from jobsctl import JobsClient
client = JobsClient("http://localhost:3000", "local-dev-key")
job = client.enqueue("simulate", {"target": "cat.png"}, priority=8)
done = client.wait(job.id, timeout=30)
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from jobsctl.errors import JobsApiError, JobsConnectionError, error_for
from jobsctl.models import Job, JobPage, Schedule, SchedulePage, Stats

DEFAULT_TIMEOUT = 30.0
MAX_PAGE_SIZE = 100
# Backoff polling for wait(): the first re-read after 0.1 s, doubling up to 2 s.
POLL_FIRST = 0.1
POLL_MAX = 2.0
# Long-poll: a server that supports GET /jobs/{id}?wait=N says so with this header on its job responses.
LONG_POLL_HEADER = "X-Long-Poll"
LONG_POLL_MAX = 20


class JobsClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        pool_size: int = 10,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = session or requests.Session()
        if session is None and pool_size > 10:
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)
        self._session.headers.update({"x-api-key": api_key, "accept": "application/json"})
        self._sleep = sleep
        self._clock = clock
        self._long_poll: bool | None = None  # unknown until the server answers a job read

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the API ---

    def enqueue(
        self,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout_seconds: int | None = None,
        delay_seconds: int | None = None,
        run_at: datetime | str | None = None,
        group_id: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        depends_on: Sequence[str] | None = None,
    ) -> Job:
        """Enqueue a job; with ``idempotency_key``, repeating the call returns the first job instead of a new one.
        ``depends_on``: job ids it waits for (``waiting`` until all are completed; cancelled if one is not)."""
        body: dict[str, Any] = {"type": type}
        if payload is not None:
            body["payload"] = payload
        if priority is not None:
            body["priority"] = priority
        if max_attempts is not None:
            body["maxAttempts"] = max_attempts
        if timeout_seconds is not None:
            body["timeoutSeconds"] = timeout_seconds
        if delay_seconds is not None:
            body["delaySeconds"] = delay_seconds
        if run_at is not None:
            body["runAt"] = run_at.isoformat() if isinstance(run_at, datetime) else run_at
        options = {"groupId": group_id, "callbackUrl": callback_url, "idempotencyKey": idempotency_key}
        body.update({name: value for name, value in options.items() if value is not None})
        if depends_on is not None:
            body["dependsOn"] = list(depends_on)
        return self.enqueue_spec(body)

    def enqueue_spec(self, spec: dict[str, Any]) -> Job:
        """Enqueue a job given as the API's own body (``{"type", "payload", "priority", "maxAttempts", ...}``)."""
        return Job.model_validate(self._request("POST", "/jobs", json=spec).json())

    def get(self, job_id: str) -> Job:
        return Job.model_validate(self._get_job(job_id).json())

    def list(self, status: str | None = None, type: str | None = None, page_size: int = 50) -> Iterator[Job]:
        """Every job matching the filters, newest first, following ``nextCursor`` page after page."""
        cursor: str | None = None
        while True:
            page = self.list_page(status=status, type=type, limit=page_size, cursor=cursor)
            yield from page.jobs
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def list_page(
        self, status: str | None = None, type: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        params: dict[str, Any] = {"limit": max(1, min(MAX_PAGE_SIZE, limit))}
        if status:
            params["status"] = status
        if type:
            params["type"] = type
        if cursor:
            params["cursor"] = cursor
        return JobPage.model_validate(self._request("GET", "/jobs", params=params).json())

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._request("DELETE", f"/jobs/{_segment(job_id)}").json())

    def cancel_matching(self, status: str | None = None, type: str | None = None) -> int:
        """Cancel every cancellable job (scheduled, pending, retrying, waiting) of ``status`` and/or ``type``; how many.

        One call of ``POST /jobs/cancel`` looks at a bounded number of jobs and says ``more`` when some were left:
        this calls it again until none are."""
        body = {name: value for name, value in (("status", status), ("type", type)) if value is not None}
        total = 0
        while True:
            answer = self._request("POST", "/jobs/cancel", json=body).json()
            total += int(answer["cancelled"])
            if not answer.get("more"):
                return total

    def pause(self, type: str) -> bool:
        """Pause a job type for your tenant: its jobs are accepted and wait. True (the type is paused)."""
        return bool(self._request("POST", f"/types/{_segment(type)}/pause").json()["paused"])

    def resume(self, type: str) -> bool:
        """Resume a paused job type: its waiting jobs start. False (the type is not paused)."""
        return bool(self._request("POST", f"/types/{_segment(type)}/resume").json()["paused"])

    def types(self) -> builtins.list[dict[str, Any]]:
        """The job types (name, description, payload schema) and whether each is paused for your tenant."""
        return [dict(info) for info in self._request("GET", "/types").json()["types"]]

    # --- recurring schedules ---

    def create_schedule(
        self, name: str, cron: str, job: dict[str, Any], *, timezone: str | None = None, enabled: bool = True
    ) -> Schedule:
        """A schedule enqueueing ``job`` (a POST /jobs body, without delaySeconds/runAt) at each ``cron`` time."""
        body: dict[str, Any] = {"name": name, "cron": cron, "job": job, "enabled": enabled}
        if timezone is not None:
            body["timezone"] = timezone
        return Schedule.model_validate(self._request("POST", "/schedules", json=body).json())

    def schedule(self, schedule_id: str) -> Schedule:
        return Schedule.model_validate(self._request("GET", f"/schedules/{_segment(schedule_id)}").json())

    def schedules(self, page_size: int = 50) -> Iterator[Schedule]:
        """Every schedule of your tenant, oldest first, following ``nextCursor``."""
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": max(1, min(MAX_PAGE_SIZE, page_size))}
            if cursor:
                params["cursor"] = cursor
            page = SchedulePage.model_validate(self._request("GET", "/schedules", params=params).json())
            yield from page.schedules
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def update_schedule(
        self,
        schedule_id: str,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        job: dict[str, Any] | None = None,
        enabled: bool | None = None,
    ) -> Schedule:
        """Change any of cron, timezone, job, enabled; the next run is computed again from now."""
        changes = {"cron": cron, "timezone": timezone, "job": job, "enabled": enabled}
        body = {name: value for name, value in changes.items() if value is not None}
        path = f"/schedules/{_segment(schedule_id)}"
        return Schedule.model_validate(self._request("PATCH", path, json=body).json())

    def delete_schedule(self, schedule_id: str) -> Schedule:
        return Schedule.model_validate(self._request("DELETE", f"/schedules/{_segment(schedule_id)}").json())

    def run_schedule(self, schedule_id: str) -> Job:
        """Enqueue the schedule's job now, outside its cadence."""
        return Job.model_validate(self._request("POST", f"/schedules/{_segment(schedule_id)}/run").json())

    def preview_schedule(self, cron: str, timezone: str | None = None, count: int = 5) -> builtins.list[str]:
        """The next ``count`` run times (ISO, UTC) of ``cron`` in ``timezone``, as the service computes them."""
        params: dict[str, Any] = {"cron": cron, "count": count}
        if timezone is not None:
            params["timezone"] = timezone
        return [str(run) for run in self._request("GET", "/schedules/preview", params=params).json()["runs"]]

    # Other names for the same calls.
    get_schedule = schedule
    list_schedules = schedules

    def retry(self, job_id: str) -> Job:
        return Job.model_validate(self._request("POST", f"/jobs/{_segment(job_id)}/retry").json())

    def stats(self) -> Stats:
        return Stats.model_validate(self._request("GET", "/stats").json())

    def wait(self, job_id: str, timeout: float = 60.0, on_update: Callable[[Job], None] | None = None) -> Job:
        """Read the job until it is final (completed, failed or cancelled); ``TimeoutError`` after ``timeout`` s.

        Uses the server's long-poll (``GET /jobs/{id}?wait=N``) when its responses carry ``X-Long-Poll: 1``,
        otherwise polls with backoff (0.1 s doubling to 2 s). ``on_update`` sees every read.
        """
        deadline = self._clock() + timeout
        delay = POLL_FIRST
        wait_param: int | None = None
        while True:
            job = Job.model_validate(self._get_job(job_id, wait_param).json())
            if on_update:
                on_update(job)
            if job.is_final:
                return job
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g}s")
            if self._long_poll:
                wait_param = max(1, min(LONG_POLL_MAX, int(remaining)))
                continue
            self._sleep(min(delay, remaining))
            delay = min(POLL_MAX, delay * 2)

    # --- HTTP ---

    def _get_job(self, job_id: str, wait: int | None = None) -> requests.Response:
        params = {"wait": wait} if wait else None
        timeout = self.timeout + (wait or 0)
        response = self._request("GET", f"/jobs/{_segment(job_id)}", params=params, timeout=timeout)
        self._long_poll = response.headers.get(LONG_POLL_HEADER, "").strip() == "1"
        return response

    def _request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> requests.Response:
        url = self.base_url + path
        try:
            response = self._session.request(method, url, timeout=timeout or self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise JobsConnectionError(f"cannot reach {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise _api_error(response)
        return response


def _segment(job_id: str) -> str:
    return quote(job_id, safe="")


def _api_error(response: requests.Response) -> JobsApiError:
    code, message, details = f"HTTP_{response.status_code}", response.reason or "error", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or code)
        message = str(body.get("error") or body.get("message") or message)
        details = body.get("details")
    elif response.text:
        message = response.text[:500]
    retry_after = response.headers.get("Retry-After", "")
    if code == "RATE_LIMITED" and retry_after.isdigit() and not isinstance(details, dict):
        details = {"retryAfterSeconds": int(retry_after)}
    return error_for(response.status_code, code, message, details)


__all__ = ["JobsClient"]

#!/usr/bin/env python3
"""Post-deploy smoke check: the API contract end to end against any deployment, over HTTP only.

    make smoke BASE=https://abc.execute-api.eu-west-1.amazonaws.com KEY=<api key> [KEY2=<another tenant's key>]
    python scripts/smoke.py --base http://127.0.0.1:3000 --key local-dev-key

It touches only jobs it creates (``simulate`` jobs, targets ``smoke-<run id>-...``): one runs to completion, one fails
through its retries to ``failed``, one is scheduled a few seconds ahead and runs, one is scheduled far ahead and
cancelled, the failed one is retried; then listing, stats and, with a second key, tenant isolation. Every check prints
a line; the last line is ``smoke: passed N checks against <base>`` (exit 0) or ``smoke: FAILED k of N checks against
<base>`` (exit 1).

A failed job's message is also copied to the lane's dead-letter queue, which the API does not expose: that copy is
checked by tests/e2e/test_job_lifecycle.py against the local stack; here the job's final state and history are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

FINAL = {"completed", "failed", "cancelled"}
# Each wait for a job to be final; a deployment's backoff (seconds) and cold starts fit well within it.
DEFAULT_TIMEOUT_SECONDS = 180.0


class CheckFailed(Exception):
    pass


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


@dataclass
class Api:
    base: str
    key: str | None
    request_timeout: float = 30.0

    def call(self, method: str, path: str, body: Any = None) -> Answer:
        headers = {"Accept": "application/json"}
        if self.key is not None:
            headers["x-api-key"] = self.key
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base.rstrip("/") + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            raise CheckFailed(f"{method} {path}: no answer ({error})") from error
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")[:200]
        return Answer(status, parsed)

    def expect(self, method: str, path: str, status: int, body: Any = None) -> Any:
        answer = self.call(method, path, body)
        if answer.status != status:
            raise CheckFailed(f"{method} {path}: expected {status}, got {answer.status} {answer.body}")
        return answer.body

    def wait_final(self, job_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.expect("GET", f"/jobs/{job_id}?wait=10", 200)
            if job.get("status") in FINAL:
                return dict(job)
            if time.monotonic() > deadline:
                raise CheckFailed(f"job {job_id} still {job.get('status')} after {timeout:.0f} s")
            time.sleep(0.5)


def statuses(job: dict[str, Any]) -> list[str]:
    return [entry["status"] for entry in job.get("history", [])]


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Smoke:
    api: Api
    second: Api | None
    timeout: float
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    passed: int = 0
    failed: int = 0

    def check(self, name: str, step: Callable[[], str]) -> None:
        try:
            detail = step()
        except CheckFailed as error:
            self.failed += 1
            print(f"FAIL {name}: {error}", flush=True)
        else:
            self.passed += 1
            print(f"ok   {name}: {detail}", flush=True)

    def enqueue(self, name: str, payload: dict[str, Any], **options: Any) -> dict[str, Any]:
        body = {"type": "simulate", "payload": {"target": f"smoke-{self.run_id}-{name}", **payload}, **options}
        job = dict(self.api.expect("POST", "/jobs", 202, body))
        self.jobs[name] = job
        return job

    def job(self, name: str) -> dict[str, Any]:
        if name not in self.jobs:
            raise CheckFailed(f"no {name} job (its enqueue failed)")
        return self.jobs[name]

    # --- the checks, in order ---

    def health(self) -> str:
        body = Api(self.api.base, None).expect("GET", "/health", 200)
        require(isinstance(body, dict) and body.get("status") == "ok", f"unexpected body {body}")
        return "200 ok without a key"

    def keys(self) -> str:
        # Without the header: the local gateway answers 403 FORBIDDEN; API Gateway (HTTP API) itself answers 401.
        missing = Api(self.api.base, None).call("GET", "/stats")
        forbidden = missing.status == 403 and isinstance(missing.body, dict) and missing.body.get("code") == "FORBIDDEN"
        require(forbidden or missing.status == 401, f"without a key: {missing.status} {missing.body}")
        body = Api(self.api.base, "smoke-check-not-a-key-0000").expect("GET", "/stats", 403)
        require(isinstance(body, dict) and body.get("code") == "FORBIDDEN", f"unexpected body {body}")
        self.baseline = dict(self.api.expect("GET", "/stats", 200))
        return f"{missing.status} without a key, 403 FORBIDDEN with an unknown one, 200 with it"

    def types(self) -> str:
        names = {t.get("name") for t in self.api.expect("GET", "/types", 200).get("types", [])}
        require("simulate" in names, f"no simulate type among {sorted(map(str, names))}")
        return f"{len(names)} job types"

    def enqueue_all(self) -> str:
        done = self.enqueue("completes", {"failureRate": 0})
        require(done["status"] == "pending", f"a new job is {done['status']}, not pending")
        self.enqueue("fails", {"shouldFail": True}, maxAttempts=2)
        scheduled = self.enqueue("scheduled", {"failureRate": 0}, delaySeconds=3)
        require(scheduled["status"] == "scheduled" and bool(scheduled.get("runAt")), f"delayed job: {scheduled}")
        self.enqueue("cancelled", {"failureRate": 0}, delaySeconds=600)
        return f"4 jobs accepted (run {self.run_id})"

    def completes(self) -> str:
        job = self.api.wait_final(self.job("completes")["id"], self.timeout)
        require(job["status"] == "completed", f"ended {job['status']}: {job.get('error')}")
        require(statuses(job) == ["pending", "processing", "completed"], f"history {statuses(job)}")
        require(bool(job.get("result")), "no result")
        return f"completed: {job['result']}"

    def fails(self) -> str:
        job = self.api.wait_final(self.job("fails")["id"], self.timeout)
        require(job["status"] == "failed" and job["attempts"] == 2, f"ended {job['status']} after {job['attempts']}")
        expected = ["pending", "processing", "retrying", "processing", "failed"]
        require(statuses(job) == expected, f"history {statuses(job)}, expected {expected}")
        require("shouldFail" in str(job.get("error")), f"error {job.get('error')!r}")
        self.jobs["fails"] = job
        return "failed after 2 attempts (its message goes to the DLQ, which the API does not expose)"

    def scheduled(self) -> str:
        job = self.api.wait_final(self.job("scheduled")["id"], self.timeout)
        require(job["status"] == "completed", f"ended {job['status']}")
        require(statuses(job)[0] == "scheduled", f"history {statuses(job)}")
        started, run_at = datetime.fromisoformat(job["startedAt"]), datetime.fromisoformat(job["runAt"])
        require(started >= run_at - timedelta(seconds=1), f"started {job['startedAt']} before runAt {job['runAt']}")
        return f"ran at {job['startedAt']} (runAt {job['runAt']})"

    def cancel(self) -> str:
        path = f"/jobs/{self.job('cancelled')['id']}"
        cancelled = self.api.expect("DELETE", path, 200)
        require(cancelled.get("status") == "cancelled", f"after DELETE: {cancelled.get('status')}")
        again = self.api.expect("DELETE", path, 409)
        require(again.get("code") == "INVALID_STATE", f"second DELETE: {again}")
        return "cancelled; cancelling again is 409 INVALID_STATE"

    def retry(self) -> str:
        job_id = self.job("fails")["id"]
        retried = self.api.expect("POST", f"/jobs/{job_id}/retry", 202)
        require(retried.get("status") == "pending" and retried.get("attempts") == 0, f"after retry: {retried}")
        job = self.api.wait_final(job_id, self.timeout)
        require(job["status"] == "failed", f"the retried job ended {job['status']}")
        require(statuses(job).count("pending") == 2, f"history {statuses(job)}")
        self.api.expect("POST", f"/jobs/{self.job('completes')['id']}/retry", 409)
        return "a failed job ran again (history kept); a completed one is 409"

    def listing(self) -> str:
        wanted = {job["id"] for job in self.jobs.values()}
        found = self._listed("/jobs?limit=100", wanted)
        require(found == wanted, f"not listed: {sorted(wanted - found)}")
        simulated = self._listed("/jobs?type=simulate&limit=100", wanted)
        require(simulated == wanted, f"not listed under type=simulate: {sorted(wanted - simulated)}")
        failed = self._listed("/jobs?status=failed&limit=100", {self.job("fails")["id"]})
        require(bool(failed), "the failed job is not listed under status=failed")
        return f"all {len(wanted)} jobs listed, also by type and by status"

    def _listed(self, path: str, wanted: set[str], pages: int = 10) -> set[str]:
        found: set[str] = set()
        for _ in range(pages):
            page = self.api.expect("GET", path, 200)
            found |= wanted & {job["id"] for job in page.get("jobs", [])}
            cursor = page.get("nextCursor")
            if found == wanted or not cursor:
                break
            path = path.split("&cursor=")[0] + f"&cursor={urllib.parse.quote(cursor)}"
        return found

    def stats(self) -> str:
        # The counters follow the records through a stream: wait until they count this run's jobs.
        expected = {
            "completed": self.baseline.get("completed", 0) + 2,
            "failed": self.baseline.get("failed", 0) + 1,
            "cancelled": self.baseline.get("cancelled", 0) + 1,
        }
        deadline = time.monotonic() + self.timeout
        while True:
            now = self.api.expect("GET", "/stats", 200)
            if all(now.get(name, 0) >= count for name, count in expected.items()):
                return ", ".join(f"{name} {now[name]}" for name in expected)
            require(time.monotonic() < deadline, f"stats {now} never counted this run's jobs ({expected})")
            time.sleep(1)

    def isolation(self) -> str:
        assert self.second is not None
        job_id = self.job("completes")["id"]
        for method, path in (
            ("GET", f"/jobs/{job_id}"),
            ("DELETE", f"/jobs/{job_id}"),
            ("POST", f"/jobs/{job_id}/retry"),
        ):
            body = self.second.expect(method, path, 404)
            require(body.get("code") == "NOT_FOUND", f"{method} {path} with the second key: {body}")
        listed = {job["id"] for job in self.second.expect("GET", "/jobs?limit=100", 200).get("jobs", [])}
        require(job_id not in listed, "the second key lists the first tenant's job")
        return "the second key's tenant neither sees nor changes the first's jobs"

    def run(self) -> int:
        self.check("health", self.health)
        self.check("api keys", self.keys)
        self.check("types", self.types)
        self.check("enqueue", self.enqueue_all)
        self.check("run to completion", self.completes)
        self.check("retries to failed", self.fails)
        self.check("scheduling", self.scheduled)
        self.check("cancel", self.cancel)
        self.check("retry", self.retry)
        self.check("listing", self.listing)
        self.check("stats", self.stats)
        if self.second is not None:
            self.check("tenant isolation", self.isolation)
        total = self.passed + self.failed
        if self.failed:
            print(f"smoke: FAILED {self.failed} of {total} checks against {self.api.base}", flush=True)
            return 1
        print(f"smoke: passed {total} checks against {self.api.base}", flush=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the API's base URL (the stack's ApiUrl output)")
    parser.add_argument("--key", required=True, help="an API key")
    parser.add_argument("--second-key", help="another tenant's API key: checks tenant isolation")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds to wait for each job")
    args = parser.parse_args(argv)
    second = Api(args.base, args.second_key) if args.second_key else None
    return Smoke(Api(args.base, args.key), second, args.timeout).run()


if __name__ == "__main__":
    sys.exit(main())

"""The ``jobs`` CLI through typer's CliRunner, its client talking to the fake HTTP layer of the client tests."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from jobsctl import JobsClient
from jobsctl.cli import Options, app
from jobsctl.runner import REQUIRED, MissingSettings, worker_environment
from tests.unit.test_jobsctl_client import FakeApi, job_body, query

runner = CliRunner()
ENV = {"COLUMNS": "200", "JOBS_URL": "http://api.test", "JOBS_API_KEY": "env-key"}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """Every client the CLI builds talks to this fake; the options it was built with are recorded on it."""
    fake = FakeApi()
    fake.built = []  # type: ignore[attr-defined]

    def build(self: Options, pool_size: int = 10) -> JobsClient:
        fake.built.append((self.url, self.key))  # type: ignore[attr-defined]
        session = requests.Session()
        session.mount("http://", fake)
        return JobsClient(self.url, self.key, session=session, sleep=lambda s: None)

    monkeypatch.setattr(Options, "client", build)
    return fake


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), env={**ENV, **(env or {})})


def test_enqueue_sends_the_payload_and_prints_the_new_job(api: FakeApi) -> None:
    # Given an API that accepts jobs
    api.on("POST", "/jobs", lambda r: (202, job_body("job-1"), {}))

    # When a job is enqueued with options
    result = run("enqueue", "simulate", "--payload", '{"target": "x"}', "--priority", "8", "--max-attempts", "2")

    # Then the body had them, the URL and key came from JOBS_URL / JOBS_API_KEY, and the id was printed
    assert result.exit_code == 0, result.output
    assert json.loads(api.requests[0].body or b"") == {
        "type": "simulate",
        "payload": {"target": "x"},
        "priority": 8,
        "maxAttempts": 2,
    }
    assert api.built == [("http://api.test", "env-key")]  # type: ignore[attr-defined]
    assert "job-1" in result.stdout
    assert "pending" in result.stdout


def test_enqueue_timeout_sends_timeout_seconds(api: FakeApi) -> None:
    api.on("POST", "/jobs", lambda r: (202, job_body("job-1"), {}))
    result = run("enqueue", "simulate", "--payload", '{"target": "x"}', "--timeout", "30")
    assert result.exit_code == 0, result.output
    assert json.loads(api.requests[0].body or b"")["timeoutSeconds"] == 30


def test_enqueue_depends_on_is_repeatable_and_get_shows_what_the_job_waits_on(api: FakeApi) -> None:
    waiting = {**job_body("job-3"), "status": "waiting", "dependsOn": ["job-1", "job-2"], "waitingOn": 1}
    api.on("POST", "/jobs", lambda r: (202, waiting, {}))
    api.on("GET", "/jobs/job-3", lambda r: (200, waiting, {}))
    result = run("enqueue", "simulate", "--depends-on", "job-1", "--depends-on", "job-2")
    assert result.exit_code == 0, result.output
    assert json.loads(api.requests[0].body or b"")["dependsOn"] == ["job-1", "job-2"]
    assert "waiting" in result.stdout
    shown = run("get", "job-3")
    assert "job-1, job-2" in shown.stdout and "1 of 2" in shown.stdout


def test_get_shows_the_timeout_when_the_job_has_one(api: FakeApi) -> None:
    api.on("GET", "/jobs/job-1", lambda r: (200, {**job_body("job-1"), "timeoutSeconds": 45}, {}))
    result = run("get", "job-1")
    assert result.exit_code == 0, result.output
    assert "45 s per attempt" in result.stdout


def test_url_and_key_flags_win_over_the_environment(api: FakeApi) -> None:
    api.on("GET", "/stats", lambda r: (200, {"total": 0}, {}))
    result = run("--url", "http://flag.test", "--key", "flag-key", "stats")
    assert result.exit_code == 0, result.output
    assert api.built == [("http://flag.test", "flag-key")]  # type: ignore[attr-defined]


def test_an_api_error_prints_its_code_and_message_to_stderr_and_exits_1(api: FakeApi) -> None:
    # Given an API rejecting the type
    details = {"types": ["message", "simulate"]}
    api.on(
        "POST",
        "/jobs",
        lambda r: (400, {"error": "unknown job type 'nope'", "code": "INVALID_TYPE", "details": details}, {}),
    )

    # When a job of that type is enqueued
    result = run("enqueue", "nope")

    # Then the code, status, message and details are on stderr, and the exit code is 1
    assert result.exit_code == 1
    assert "INVALID_TYPE (400): unknown job type 'nope'" in result.stderr
    assert '"simulate"' in result.stderr
    assert result.stdout == ""


def test_a_payload_that_is_not_a_json_object_is_a_usage_error(api: FakeApi) -> None:
    for payload in ("{not json", "[1, 2]"):
        result = run("enqueue", "simulate", "--payload", payload)
        assert result.exit_code == 2
    assert api.requests == []


def test_an_unreachable_api_is_a_connection_error_with_exit_1(api: FakeApi) -> None:
    api.fail_with = requests.ConnectionError("refused")
    result = run("get", "job-1")
    assert result.exit_code == 1
    assert "CONNECTION" in result.stderr


def test_not_found_and_invalid_state_exit_1_with_their_codes(api: FakeApi) -> None:
    api.on("GET", "/jobs/ghost", lambda r: (404, {"error": "job not found", "code": "NOT_FOUND"}, {}))
    api.on("DELETE", "/jobs/done", lambda r: (409, {"error": "job is completed", "code": "INVALID_STATE"}, {}))
    missing = run("get", "ghost")
    assert (missing.exit_code, "NOT_FOUND" in missing.stderr) == (1, True)
    final = run("cancel", "done")
    assert (final.exit_code, "INVALID_STATE (409): job is completed" in final.stderr) == (1, True)


def test_get_shows_the_timeline_with_attempts_errors_and_the_gaps_between_entries(api: FakeApi) -> None:
    # Given a job that failed once, waited 1.5 s of backoff, then completed
    history = [
        {"status": "pending", "at": "2026-01-01T10:00:00.000Z"},
        {"status": "processing", "at": "2026-01-01T10:00:00.250Z", "attempt": 1},
        {"status": "retrying", "at": "2026-01-01T10:00:00.500Z", "attempt": 1, "error": "timeout talking to S3"},
        {"status": "processing", "at": "2026-01-01T10:00:02.000Z", "attempt": 2},
        {"status": "completed", "at": "2026-01-01T10:00:02.100Z", "attempt": 2},
    ]
    body = job_body("job-7", "completed", attempts=2, history=history, result={"ok": True})
    api.on("GET", "/jobs/job-7", lambda r: (200, body, {}))

    # When it is shown
    result = run("get", "job-7")

    # Then every entry is there with its time, attempt and error, and the backoff gap reads +1.50s
    assert result.exit_code == 0, result.output
    for text in ("10:00:00.250", "retrying", "timeout talking to S3", "+1.50s", "+0.10s", "2 of 3", '"ok": true'):
        assert text in result.stdout, text


def test_get_json_prints_the_record(api: FakeApi) -> None:
    api.on("GET", "/jobs/job-1", lambda r: (200, job_body("job-1"), {}))
    result = run("get", "job-1", "--json")
    assert json.loads(result.stdout)["maxAttempts"] == 3


@pytest.mark.parametrize(("final", "exit_code"), [("completed", 0), ("failed", 1)])
def test_enqueue_wait_follows_the_job_and_exits_by_its_final_status(api: FakeApi, final: str, exit_code: int) -> None:
    answers = iter(["processing", final])
    api.on("POST", "/jobs", lambda r: (202, job_body("job-1"), {}))
    api.on("GET", "/jobs/job-1", lambda r: (200, job_body("job-1", next(answers)), {}))
    result = run("enqueue", "simulate", "--wait", "--json")
    assert result.exit_code == exit_code, result.output
    assert json.loads(result.stdout)["status"] == final


def test_watch_renders_until_final(api: FakeApi) -> None:
    answers = iter(["pending", "processing", "completed"])
    api.on("GET", "/jobs/job-1", lambda r: (200, job_body("job-1", next(answers)), {}))
    result = run("watch", "job-1")
    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout


def test_list_stops_at_the_limit_across_pages(api: FakeApi) -> None:
    pages = {
        None: {"jobs": [job_body("a"), job_body("b")], "count": 2, "nextCursor": "c1"},
        "c1": {"jobs": [job_body("c"), job_body("d")], "count": 2, "nextCursor": "c2"},
    }
    api.on("GET", "/jobs", lambda r: (200, pages[query(r).get("cursor")], {}))
    result = run("list", "--limit", "3", "--status", "pending", "--json")
    assert result.exit_code == 0, result.output
    assert [job["id"] for job in json.loads(result.stdout)] == ["a", "b", "c"]
    assert query(api.requests[0]) == {"limit": "3", "status": "pending"}


def test_list_and_stats_render_tables(api: FakeApi) -> None:
    api.on("GET", "/jobs", lambda r: (200, {"jobs": [job_body("job-x", "failed", error="boom")], "count": 1}, {}))
    api.on("GET", "/stats", lambda r: (200, {"total": 4, "completed": 3, "completionRate": 0.75}, {}))
    listed = run("list")
    assert "job-x" in listed.stdout and "boom" in listed.stdout
    stats = run("stats")
    assert "75.0%" in stats.stdout


def test_list_piped_prints_one_tab_separated_line_per_job(api: FakeApi) -> None:
    # Given two jobs, one failed with a multi-line error
    jobs = [job_body("job-a", "completed"), job_body("job-b", "failed", error="boom\nat line 2")]
    api.on("GET", "/jobs", lambda r: (200, {"jobs": jobs, "count": 2}, {}))
    # When listed with stdout not a terminal (CliRunner's is a pipe)
    listed = run("list")
    # Then: no table, one line per job, tab-separated fields, the error on its line
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        ["job-a", "simulate", "completed"],
        ["job-b", "simulate", "failed"],
    ]
    assert lines[1].split("\t")[-1] == "boom at line 2"
    assert "│" not in listed.stdout and "┃" not in listed.stdout


def test_without_url_or_key_the_running_local_stacks_are_used(api: FakeApi, tmp_path: Path) -> None:
    # Given make run's discovery file naming another port and key, and neither JOBS_URL nor JOBS_API_KEY set
    found = tmp_path / "local.json"
    found.write_text(json.dumps({"url": "http://127.0.0.1:4123", "apiKey": "team-key", "tenant": "team"}))
    api.on("GET", "/stats", lambda r: (200, {"total": 0}, {}))
    env = {"JOBS_URL": None, "JOBS_API_KEY": None, "JOBS_LOCAL_FILE": str(found)}
    # When a command runs
    result = runner.invoke(app, ["stats"], env={"COLUMNS": "200", **env})  # type: ignore[dict-item]
    # Then it used the running stack's URL and key; a flag still wins over the file
    assert result.exit_code == 0, result.output
    assert api.built == [("http://127.0.0.1:4123", "team-key")]  # type: ignore[attr-defined]
    runner.invoke(app, ["--key", "flag-key", "stats"], env={"COLUMNS": "200", **env})  # type: ignore[dict-item]
    assert api.built[-1] == ("http://127.0.0.1:4123", "flag-key")  # type: ignore[attr-defined]
    # ...and the local key is never sent to an API named by a flag
    runner.invoke(app, ["--url", "http://api.test", "stats"], env={"COLUMNS": "200", **env})  # type: ignore[dict-item]
    assert api.built[-1] == ("http://api.test", "local-dev-key")  # type: ignore[attr-defined]


def test_retry_and_cancel_print_the_new_status(api: FakeApi) -> None:
    api.on("POST", "/jobs/j1/retry", lambda r: (202, job_body("j1", "pending"), {}))
    api.on("DELETE", "/jobs/j2", lambda r: (200, job_body("j2", "cancelled"), {}))
    assert "pending" in run("retry", "j1").stdout
    assert "cancelled" in run("cancel", "j2").stdout


def test_enqueue_file_reports_every_failed_line_with_its_number_and_code_and_exits_1(
    api: FakeApi, tmp_path: Path
) -> None:
    # Given a file of five jobs: two good, one the API rejects, one not JSON, one not an object (and a blank line)
    def accept(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        spec = json.loads(request.body or b"")
        if spec["type"] == "nope":
            return 400, {"error": "unknown job type", "code": "INVALID_TYPE"}, {}
        return 202, job_body(f"job-{spec['payload']['n']}"), {}

    api.on("POST", "/jobs", accept)
    lines = [
        '{"type": "message", "payload": {"n": 1}}',
        '{"type": "nope", "payload": {"n": 2}}',
        "",
        "{oops",
        '{"type": "message", "payload": {"n": 5}, "priority": 9}',
        "[1]",
    ]
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text("\n".join(lines) + "\n")

    # When it is enqueued, 3 at a time
    result = run("enqueue-file", str(jobs_file), "--concurrency", "3", "--json")

    # Then the summary lists what was accepted and, by line number, what failed and why; exit code 1
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["accepted"] == [{"line": 1, "id": "job-1"}, {"line": 5, "id": "job-5"}]
    assert [(f["line"], f["code"]) for f in summary["failed"]] == [
        (2, "INVALID_TYPE"),
        (4, "INVALID_JSON"),
        (6, "INVALID_LINE"),
    ]
    assert "INVALID_TYPE" in result.stderr
    assert len(api.requests) == 3  # bad lines never reach the API


def test_enqueue_file_with_every_line_accepted_exits_0(api: FakeApi, tmp_path: Path) -> None:
    api.on("POST", "/jobs", lambda r: (202, job_body("job"), {}))
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text('{"type": "message", "payload": {"message": "a"}}\n' * 4)
    result = run("enqueue-file", str(jobs_file))
    assert result.exit_code == 0, result.output
    assert "Accepted 4 of 4 line(s); 0 failed." in result.stdout


def test_the_worker_lists_the_settings_it_is_missing_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in REQUIRED:
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(app, ["worker"], env={"JOBS_JOBS_TABLE": "jobs"})
    assert result.exit_code == 2
    assert "JOBS_STATS_TABLE" in result.stderr and "JOBS_QUEUE_URL" in result.stderr
    assert "JOBS_JOBS_TABLE" not in result.stderr


class FakeWorker:
    """What ``jobs worker`` runs, with a shutdown that reports ``unfinished`` jobs left to their lease."""

    queue_url = "https://sqs.local/jobs-queue"
    invocations = 2
    released = 1

    def __init__(self, unfinished: int) -> None:
        self.unfinished = unfinished
        self.shutdown_grace: float | None = None

    def start(self) -> None:
        return None

    def shutdown(self, grace_seconds: float) -> dict[str, int]:
        self.shutdown_grace = grace_seconds
        return {"released": self.released, "unfinished": self.unfinished}


class ImmediateStop:
    """Stop signals as if Ctrl-C came at once."""

    def wait(self) -> int:
        return signal.SIGINT

    def restore(self) -> None:
        return None


class ProcessEnded(Exception):
    pass


@pytest.mark.parametrize("unfinished", [0, 1])
def test_the_worker_ends_its_process_at_once_only_when_it_left_jobs_to_their_lease(
    monkeypatch: pytest.MonkeyPatch, unfinished: int
) -> None:
    # Given a worker whose stop leaves `unfinished` jobs running past the grace period
    worker = FakeWorker(unfinished)
    monkeypatch.setattr("jobsctl.runner.build_worker", lambda env, options: worker)
    monkeypatch.setattr("jobsctl.cli.StopSignals", ImmediateStop)
    ended: list[int] = []

    def end_process(code: int = 0) -> None:
        ended.append(code)
        raise ProcessEnded

    monkeypatch.setattr("jobsctl.cli.end_process", end_process)
    settings = {name: "x" for name in REQUIRED}
    # When it is stopped
    result = runner.invoke(app, ["worker", "--grace-seconds", "2"], env=settings)
    # Then it gave its jobs the grace period and said what it left; it ended the process itself only if it left
    # jobs running (Python would wait for their threads before exiting)
    assert worker.shutdown_grace == 2
    assert f"{unfinished} left to their lease" in result.stderr
    assert ended == ([0] if unfinished else [])
    assert isinstance(result.exception, ProcessEnded) if unfinished else result.exit_code == 0, result.output


def test_worker_settings_come_from_the_environment_over_the_deployed_function_over_config() -> None:
    # Given the same variable from three places
    deployed = {"JOBS_JOBS_TABLE": "deployed-jobs", "JOBS_STATS_TABLE": "deployed-stats", "JOBS_DLQ_URL": "d"}
    config = {"JOBS_JOBS_TABLE": "config-jobs", "JOBS_QUEUE_URL": "config-q", "JOBS_BACKOFF_BASE_SECONDS": "1"}
    environ = {"JOBS_STATS_TABLE": "env-stats", "HOME": "/root"}

    # When they are merged, with an explicit --queue-url
    env = worker_environment(environ, deployed=deployed, from_config=config, queue_url="flag-q")

    # Then the environment wins over the deployed function, which wins over config; --queue-url over all
    assert env["JOBS_JOBS_TABLE"] == "deployed-jobs"
    assert env["JOBS_STATS_TABLE"] == "env-stats"
    assert env["JOBS_QUEUE_URL"] == "flag-q"
    assert env["JOBS_BACKOFF_BASE_SECONDS"] == "1"
    assert env["POWERTOOLS_METRICS_DISABLED"] == "true"
    assert "HOME" not in env
    with pytest.raises(MissingSettings) as missing:
        worker_environment({}, deployed={"JOBS_JOBS_TABLE": "t"})
    assert missing.value.missing == ["JOBS_STATS_TABLE", "JOBS_QUEUE_URL", "JOBS_DLQ_URL"]


def test_cancel_with_filters_cancels_every_matching_job_and_prints_how_many(api: FakeApi) -> None:
    api.on("POST", "/jobs/cancel", lambda r: (200, {"cancelled": 4}, {}))
    result = run("cancel", "--status", "pending", "--type", "fetch")
    assert result.exit_code == 0
    assert result.stdout.strip().splitlines()[-1] == "Cancelled 4 jobs"
    assert json.loads(api.requests[-1].body or b"{}") == {"status": "pending", "type": "fetch"}


def test_cancel_needs_an_id_or_a_filter_but_not_both(api: FakeApi) -> None:
    assert run("cancel").exit_code == 2
    assert run("cancel", "j1", "--type", "fetch").exit_code == 2
    assert api.requests == []


def test_pause_and_resume_a_type(api: FakeApi) -> None:
    api.on("POST", "/types/fetch/pause", lambda r: (200, {"type": "fetch", "paused": True}, {}))
    api.on("POST", "/types/fetch/resume", lambda r: (200, {"type": "fetch", "paused": False}, {}))
    assert run("pause", "fetch").stdout.startswith("Paused fetch")
    assert run("resume", "fetch").stdout.strip() == "Resumed fetch"
    api.on(
        "POST",
        "/types/nope/pause",
        lambda r: (400, {"error": "'type' must be one of: ...", "code": "INVALID_TYPE"}, {}),
    )
    failed = run("pause", "nope")
    assert failed.exit_code == 1 and "INVALID_TYPE" in failed.stderr

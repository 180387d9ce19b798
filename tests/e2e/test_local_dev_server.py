"""``make run`` as a development server: the gateway over raw sockets, state across a restart, code reload, the
banner and the CLI's discovery of the running stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import FIRST_KEY, ROOT, Client, LocalStackProcess, add_key, local_stack, settled
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

KEY = "dev-server-key-0123"


# ------------------------------------------------------------------ raw HTTP


def exchange(url: str, raw: bytes, *, timeout: float = 20.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` as is on a new connection; the response's status, headers and body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(raw)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before a response: {received!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(status_line.split()[1]), headers, body


def error_of(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The JSON error body, asserting it is one: ``{"error", "code"}`` with a JSON content type."""
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body[:200])
    document = json.loads(body)
    assert isinstance(document.get("error"), str) and document["error"], document
    assert isinstance(document.get("code"), str) and document["code"].isupper(), document
    return dict(document)


def request(method: str, target: str, *headers: str, body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {target} {version}", "Host: localhost", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ------------------------------------------------------------------ the gateway


@pytest.mark.parametrize(
    ("name", "raw", "status", "code"),
    [
        ("a 100 KB header", request("GET", "/health", "X-Big: " + "a" * 100_000), 431, "HEADERS_TOO_LARGE"),
        ("200 headers", request("GET", "/health", *(f"X-H{i}: v" for i in range(200))), 431, "HEADERS_TOO_LARGE"),
        ("a 100 KB URL", request("GET", "/health?q=" + "a" * 100_000), 414, "URI_TOO_LONG"),
        ("a garbage request line", b"\x16\x03\x01 hello there\r\n\r\n", 400, "BAD_REQUEST"),
        ("HTTP/9.9", request("GET", "/health", version="HTTP/9.9"), 505, "HTTP_VERSION_NOT_SUPPORTED"),
        ("CONNECT", request("CONNECT", "example.com:443"), 501, "NOT_IMPLEMENTED"),
        ("Content-Length: abc", request("POST", "/jobs", "Content-Length: abc"), 400, "INVALID_BODY"),
        ("Content-Length: -5", request("POST", "/jobs", "Content-Length: -5"), 400, "INVALID_BODY"),
        ("a chunked body", request("POST", "/jobs", "Transfer-Encoding: chunked"), 411, "LENGTH_REQUIRED"),
    ],
)
def test_the_gateways_own_refusals_are_json_errors(
    stack: LocalStackProcess, name: str, raw: bytes, status: int, code: str
) -> None:
    # When a request the gateway cannot pass on arrives (the stack is shared: only what this request printed counts)
    printed_before = len(stack.output)
    answer = exchange(stack.url, raw)
    # Then it is answered in the API's error shape, with its own status and code
    assert answer[0] == status, (name, answer)
    assert error_of(*answer)["code"] == code
    # And nothing went to stderr as a traceback
    time.sleep(0.3)  # the stack's output is read by a thread of its own
    assert "Traceback" not in "".join(stack.output[printed_before:])


@pytest.mark.parametrize("method", ["TRACE", "BREW", "PROPFIND"])
def test_every_method_reaches_the_api_and_is_answered_in_json(stack: LocalStackProcess, method: str) -> None:
    # When a method the API does not declare is sent with a valid key
    status, headers, body = exchange(stack.url, request(method, "/jobs", f"x-api-key: {FIRST_KEY}"))
    # Then the API answers it (not http.server's 501 page), as JSON
    assert status != 501, body
    error_of(status, headers, body)


def test_a_body_that_stops_short_is_timed_out_and_frees_the_connection(stack: LocalStackProcess) -> None:
    # Given a request declaring 100 bytes of body that sends 2 and then nothing
    raw = request("POST", "/jobs", f"x-api-key: {FIRST_KEY}", "Content-Length: 100", body=b"{}")
    started = time.monotonic()
    # When the gateway has waited its read timeout
    status, headers, body = exchange(stack.url, raw, timeout=30)
    # Then it answers 408 in JSON and closes the connection, well before the client would give up
    assert status == 408 and error_of(status, headers, body)["code"] == "REQUEST_TIMEOUT"
    assert headers.get("connection") == "close"
    assert time.monotonic() - started < 25


def test_250_clients_posting_at_once_are_all_served_without_a_reset(stack: LocalStackProcess, tenant: Client) -> None:
    # Given 250 clients that each open a connection at the same moment
    clients = 250
    start = threading.Barrier(clients)
    statuses: list[int] = []
    failures: list[BaseException] = []
    body = json.dumps({"type": "simulate", "payload": {"target": "burst.png", "durationMs": 1, "failureRate": 0}})

    def post() -> None:
        host, port = stack.url.removeprefix("http://").split(":")
        connection = HTTPConnection(host, int(port), timeout=60)
        try:
            start.wait(30)
            connection.request("POST", "/jobs", body, {"x-api-key": tenant.key, "content-type": "application/json"})
            statuses.append(connection.getresponse().status)
        except BaseException as exc:  # noqa: BLE001 - collected: a reset fails the test below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # Then every one was accepted: no connection reset, no refusal
    assert failures == []
    assert sorted(set(statuses)) == [202] and len(statuses) == clients


def test_another_tenants_upload_in_an_image_job_is_refused_at_enqueue(tenant: Client) -> None:
    response = tenant.post("/jobs", {"type": "image-grayscale", "payload": {"key": "uploads/someone-else/a.png"}})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_PAYLOAD"


# ------------------------------------------------------------------ banner and CLI discovery


def banner_value(stack: LocalStackProcess, prefix: str) -> str:
    return next(line[len(prefix) :].strip() for line in stack.output if line.startswith(prefix))


def test_the_banner_comes_first_and_names_the_url_and_key(stack: LocalStackProcess) -> None:
    assert stack.output[0].startswith("Jobs API    http://127.0.0.1:")
    assert banner_value(stack, "JOBS_URL=") == stack.url
    assert banner_value(stack, "JOBS_API_KEY=") == FIRST_KEY
    before_ready = "".join(stack.output[: next(i for i, line in enumerate(stack.output) if line.startswith("Ready."))])
    assert "botocore" not in before_ready and "Found credentials" not in before_ready


def test_the_cli_finds_the_running_stack_without_url_or_key(stack: LocalStackProcess) -> None:
    # Given a stack on a random port with its own keys, and a shell with no JOBS_URL / JOBS_API_KEY
    found_at = re.search(r"finds this stack through (\S+);", "".join(stack.output))
    assert found_at, stack.output
    env = {k: v for k, v in os.environ.items() if k not in ("JOBS_URL", "JOBS_API_KEY")}
    env["JOBS_LOCAL_FILE"] = found_at.group(1)
    # When the CLI enqueues and lists (piped: plain tab-separated rows)
    command = [sys.executable, "-m", "jobsctl"]
    enqueued = subprocess.run(
        [*command, "enqueue", "simulate", "--payload", '{"target": "found.png"}', "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr
    job_id = json.loads(enqueued.stdout)["id"]
    listed = subprocess.run([*command, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert job_id in [row[0] for row in rows] and all(len(row) == 7 for row in rows), listed.stdout


# ------------------------------------------------------------------ state across a restart


def test_state_is_kept_across_a_restart_and_fresh_starts_empty(tmp_path: Path) -> None:
    kept = {"JOBS_LOCAL_STATE_FILE": str(tmp_path / "state.pickle")}
    # Given a stack with a completed job, a scheduled one whose delay is still running, a file and a new key
    with local_stack(f"{KEY}:restart", **kept) as first:
        client = Client(first.url, KEY)
        done = client.enqueue({"type": "simulate", "payload": {"target": "a.png", "failureRate": 0}})
        client.wait_for(done["id"], {"completed"}, timeout=60)
        later = client.enqueue(
            {"type": "simulate", "payload": {"target": "b.png", "failureRate": 0}, "delaySeconds": 15}
        )
        first.aws("s3").put_object(Bucket=bucket_of(first), Key="uploads/restart/kept.txt", Body=b"kept")
        first.aws("secretsmanager").create_secret(Name="jobs/kept-secret", SecretString="s3cret")
        add_key(first, "added-key-0123456789", "added")
    # When it is stopped (Ctrl-C): it says what it saved
    saved = "".join(first.output)
    assert later["status"] == "scheduled"
    assert re.search(r"Saved 2 job\(s\), [1-9]\d* queued message\(s\), 1 file\(s\), 2 API key\(s\) to ", saved), saved

    # Then a new start has them all: the jobs, the file, the key; the delayed job still fires, and the stats agree
    with local_stack(f"{KEY}:restart", **kept) as second:
        restored = r"State       restored 2 job\(s\), [1-9]\d* queued message\(s\), 1 file\(s\), 2 API key\(s\)"
        assert any(re.match(restored, line) for line in second.output), second.output
        assert second.output[0].startswith("Jobs API")
        client = Client(second.url, KEY)
        assert client.get(f"/jobs/{done['id']}").json()["status"] == "completed"
        # The delayed message fires, not before its time (on a busy machine its delay may end during the restart)
        fired = client.wait_for(later["id"], {"completed"}, timeout=60)
        assert fired["attempts"] == 1 and fired["completedAt"] >= fired["runAt"], fired
        stored = second.aws("s3").get_object(Bucket=bucket_of(second), Key="uploads/restart/kept.txt")
        assert stored["Body"].read() == b"kept"
        secret = second.aws("secretsmanager").get_secret_value(SecretId="jobs/kept-secret")
        assert secret["SecretString"] == "s3cret"
        assert Client(second.url, "added-key-0123456789").get("/stats").status_code == 200
        assert settled(lambda: client.get("/stats").json()["completed"]) == 2  # the stats lag the records a little

    # And FRESH=1 starts empty
    with local_stack(f"{KEY}:restart", FRESH="1", **kept) as fresh:
        assert Client(fresh.url, KEY).get(f"/jobs/{done['id']}").status_code == 404
        assert Client(fresh.url, KEY).get("/stats").json()["total"] == 0


def test_a_job_cut_short_by_the_stop_is_retried_after_the_restart(tmp_path: Path) -> None:
    kept = {
        "JOBS_LOCAL_STATE_FILE": str(tmp_path / "state.pickle"),
        "STOP_GRACE_SECONDS": "0.5",  # the stop does not wait for it
        "JOBS_LOCAL_CONSUMER_TIMEOUT": "8",  # its attempt's lease: how long it is presumed still running
    }
    # Given a job mid-attempt when the stack is stopped with SIGTERM
    with local_stack(f"{KEY}:cut", **kept) as first:
        client = Client(first.url, KEY)
        job = client.enqueue(
            {"type": "simulate", "payload": {"target": "long.png", "durationMs": 3000, "failureRate": 0}}
        )
        client.wait_for(job["id"], {"processing"}, timeout=60)
        first.process.send_signal(15)  # SIGTERM; the fixture's Ctrl-C afterwards finds it stopping already
        first.process.wait(30)
    assert re.search(r"\(1 mid-attempt, retried after the restart\)", "".join(first.output)), first.output
    # When it starts again: the job runs again, once its attempt's lease is over, and completes
    with local_stack(f"{KEY}:cut", **kept) as second:
        finished = Client(second.url, KEY).wait_for(job["id"], {"completed", "failed"}, timeout=40)
        assert finished["status"] == "completed" and finished["attempts"] == 2, finished


def test_the_stop_does_not_wait_for_a_batch_running_on_record_threads_past_the_grace_period(tmp_path: Path) -> None:
    # Given one poller running a batch's records on threads of their own (as on Lambda), with jobs far longer than
    # the stop's grace period and than the fixture's 30 s bound on a stop
    settings = {
        "JOBS_LOCAL_STATE_FILE": str(tmp_path / "state.pickle"),
        "JOBS_LOCAL_CONSUMERS": "1",
        "JOBS_LOCAL_RECORD_CONCURRENCY": "4",
        "STOP_GRACE_SECONDS": "1",
    }
    with local_stack(f"{KEY}:abandon", **settings) as running:
        client = Client(running.url, KEY)
        # (the poller is busy with the first job while the three long ones queue up: it then receives them as one batch)
        first = {"type": "simulate", "payload": {"target": "first.png", "durationMs": 4000, "failureRate": 0}}
        client.wait_for(client.enqueue(first)["id"], {"processing"}, timeout=30)
        long_job = {"type": "simulate", "payload": {"target": "long.png", "durationMs": 60000, "failureRate": 0}}
        ids = [client.enqueue(long_job)["id"] for _ in range(3)]
        wait_until(
            lambda: all(client.get(f"/jobs/{job_id}").json()["status"] == "processing" for job_id in ids),
            timeout=30,
            what="the three long jobs run at once",
        )
        # When it is stopped (the fixture's Ctrl-C), timed
        stopping = time.monotonic()
    stopped_in = time.monotonic() - stopping
    # Then it stopped after the grace period, leaving the three attempts to be retried after a restart
    assert stopped_in < 15, f"stopped in {stopped_in:.1f} s"
    assert "(3 mid-attempt, retried after the restart)" in "".join(running.output), running.output


def bucket_of(stack: LocalStackProcess) -> str:
    buckets = stack.aws("s3").list_buckets()["Buckets"]
    return str(buckets[0]["Name"])


# ------------------------------------------------------------------ code reload


def test_a_change_under_functions_is_picked_up_without_a_restart_and_state_is_kept(tmp_path: Path) -> None:
    # Given the stack running from a copy of the checkout, with reload on, and a job done with the current code
    tree = tmp_path / "checkout"
    for part in ("functions", "local", "infra", "jobsctl"):
        shutil.copytree(ROOT / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    builtin = tree / "functions" / "logic" / "job_types" / "builtin.py"
    with local_stack(f"{KEY}:reload", cwd=tree, RELOAD="1") as running:
        client = Client(running.url, KEY)
        before = client.enqueue({"type": "simulate", "payload": {"target": "r.png", "failureRate": 0}})
        assert client.wait_for(before["id"], {"completed"}, timeout=60)["result"].startswith("Resized r.png")

        # When a job type's code changes
        builtin.write_text(builtin.read_text().replace('f"Resized {payload.target}', 'f"Reloaded {payload.target}'))
        wait_for_line(running, "Reloaded: functions/logic/job_types/builtin.py changed")

        # Then new jobs run the new code, and the earlier job is still there (same process, same state)
        after = client.enqueue({"type": "simulate", "payload": {"target": "r.png", "failureRate": 0}})
        assert client.wait_for(after["id"], {"completed"}, timeout=60)["result"].startswith("Reloaded r.png")
        assert client.get(f"/jobs/{before['id']}").json()["status"] == "completed"

        # And a change that does not import is refused: the previous code keeps serving
        builtin.write_text(builtin.read_text() + "\ndef broken(:\n")
        wait_for_line(running, "Reload failed, still running the previous code: SyntaxError: ")
        assert "(functions/logic/job_types/builtin.py, line " in "".join(running.output)
        again = client.enqueue({"type": "simulate", "payload": {"target": "r.png", "failureRate": 0}})
        assert client.wait_for(again["id"], {"completed"}, timeout=60)["result"].startswith("Reloaded r.png")


def wait_for_line(stack: LocalStackProcess, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in stack.output):
        assert time.monotonic() < deadline, f"no {text!r} in:\n{''.join(stack.output)}"
        time.sleep(0.1)

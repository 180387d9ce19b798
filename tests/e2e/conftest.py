"""Start the local stack exactly as ``make run`` does (``python -m local``), on free ports, for HTTP tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
import requests

from functions.dal.keys import DynamoKeyStore
from functions.logic.keys import create_key, hash_key
from functions.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
FIRST_KEY = "e2e-first-key"
SECOND_KEY = "e2e-second-key"
KEYS_TABLE = Settings.keys_table  # the local stack's (infra.config keeps the default name)


# The stats lag the job records: the stats aggregator counts from the jobs table's stream, which the local stack
# delivers 4 times a second (local.stack.STREAM_POLL_SECONDS). Two reads this far apart that agree: it caught up.
STATS_SETTLE_SECONDS = 0.75


def settled(read: Callable[[], T], timeout: float = 15.0) -> T:
    """What ``read`` returns once two reads STATS_SETTLE_SECONDS apart agree (the stats have counted everything)."""
    deadline = time.monotonic() + timeout
    previous = read()
    while True:
        time.sleep(STATS_SETTLE_SECONDS)
        current = read()
        if current == previous:
            return current
        assert time.monotonic() < deadline, f"still changing after {timeout} s: {current}"
        previous = current


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStackProcess:
    url: str
    moto_url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def aws(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.moto_url, region_name="us-east-1")


@dataclass
class Client:
    """A tenant's view of the API: requests with its key."""

    base: str
    key: str
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.headers["x-api-key"] = self.key

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=30, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json=body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def delete(self, path: str) -> requests.Response:
        return self.request("DELETE", path)

    def enqueue(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.post("/jobs", body)
        assert response.status_code == 202, response.text
        return dict(response.json())

    def wait_for(self, job_id: str, statuses: set[str], timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/jobs/{job_id}").json()
            if job.get("status") in statuses:
                return dict(job)
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout}s: {job}")
            time.sleep(0.1)


@contextlib.contextmanager
def local_stack(api_keys: str, *, cwd: Path = ROOT, **env_overrides: str) -> Iterator[LocalStackProcess]:
    """``python -m local`` exactly as ``make run`` starts it, on free ports, with these keys and extra variables;
    stopped with Ctrl-C (SIGINT) afterwards, which must end it cleanly within 30 s."""
    port, moto_port = free_port(), free_port()
    # Its saved state and discovery file in a directory of its own, not the developer's (docs/local-development.md)
    private = Path(tempfile.mkdtemp(prefix="jobs-e2e-"))
    env = dict(
        os.environ,
        PORT=str(port),
        MOTO_PORT=str(moto_port),
        API_KEYS=api_keys,
        PYTHONUNBUFFERED="1",
        JOBS_LOCAL_STATE_FILE=str(private / "state.pickle"),
        JOBS_LOCAL_FILE=str(private / "jobs-local.json"),
        RELOAD="0",
    )
    env.update(env_overrides)
    process = subprocess.Popen(
        [sys.executable, "-m", "local"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = LocalStackProcess(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{moto_port}", process)
    ready = threading.Event()

    def read_output() -> None:  # keep draining the pipe for the whole run, or the stack would block on it
        assert process.stdout is not None
        for line in process.stdout:
            running.output.append(line)
            if line.startswith("Ready."):
                ready.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    if not ready.wait(60) or process.poll() is not None:
        process.kill()
        pytest.fail("local stack did not start:\n" + "".join(running.output))
    try:
        yield running
    except BaseException:
        # The test failed: stop the stack anyway (a leaked one keeps its sweeper running), without masking the failure
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)  # every thread's stack, printed (local/stack.py): where the stop hangs
        time.sleep(2)
        process.kill()
        reader.join(timeout=5)
        pytest.fail("local stack did not stop within 30 s of Ctrl-C:\n" + "".join(running.output)[-20000:])
    reader.join(timeout=5)
    assert process.returncode == 0, "".join(running.output)
    assert "Stopped." in "".join(running.output)


def key_store(stack: LocalStackProcess) -> DynamoKeyStore:
    """The local stack's keys table, as `jobs keys` reaches it (the moto server)."""
    return DynamoKeyStore(stack.aws("dynamodb"), KEYS_TABLE)


def add_key(stack: LocalStackProcess, value: str, tenant: str, scope: str = "full", **limits: Any) -> str:
    """Store a key for ``tenant`` as an operator would (`jobs keys import`); its key id."""
    return create_key(key_store(stack), tenant, scope=scope, value=value, **limits).key.key_id


def tenant_of(stack: LocalStackProcess, value: str) -> str:
    """The tenant a key value belongs to, as the authorizer finds it."""
    key = key_store(stack).by_hash(hash_key(value))
    assert key is not None, "no such key"
    return key.tenant


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStackProcess]:
    with local_stack(f"{FIRST_KEY}:e2e-a,{SECOND_KEY}:e2e-b") as running:
        yield running


@pytest.fixture
def tenant(stack: LocalStackProcess) -> Client:
    """A brand-new tenant (its own API key, created as an operator would), so counts start at zero."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    value = f"key-{uuid.uuid4().hex}"
    add_key(stack, value, name)
    client = Client(stack.url, value)
    deadline = time.monotonic() + 5
    while client.get("/stats").status_code != 200:  # a new key works at once (nothing cached for it yet)
        assert time.monotonic() < deadline, "new API key was never accepted"
        time.sleep(0.2)
    return client

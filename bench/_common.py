"""Shared bench helpers: paths, free ports, percentiles, keep-alive HTTP over loopback, starting ``python -m local``."""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".build" / "bench"
API_KEY = "local-dev-key"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (as the peer's bench.mjs computes it)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]


class Http:
    """One keep-alive connection to 127.0.0.1:port; reconnects once on a stale socket."""

    def __init__(self, port: int, headers: dict[str, str] | None = None, timeout: float = 30) -> None:
        self._port = port
        self._headers = headers or {}
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = dict(self._headers)
        if data is not None:
            headers["content-type"] = "application/json"
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=self._timeout)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def wait_http(port: int, path: str, deadline_s: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            status, _ = Http(port, timeout=2).request("GET", path)
            if status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def start_local_stack(
    log_path: Path, prefix: list[str] | None = None, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m local`` on free ports (LOG_LEVEL=ERROR), in its own process group; returns (process, port)."""
    port, moto_port = free_port(), free_port()
    # Each run starts empty and keeps nothing: the developer's `make run` state is neither read nor overwritten, and
    # no earlier run's jobs are counted (FRESH=1, a state file of the run's own), and no file watcher runs.
    env = {
        **os.environ,
        "PORT": str(port),
        "MOTO_PORT": str(moto_port),
        "LOG_LEVEL": "ERROR",
        "FRESH": "1",
        "RELOAD": "0",
        "JOBS_LOCAL_STATE_FILE": str(log_path.with_suffix(".state.pickle")),
        **(extra_env or {}),
    }
    env.pop("AWS_ENDPOINT_URL", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "local"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc, port


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    """SIGINT then SIGTERM then SIGKILL to the group this bench started (never anything else)."""
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:  # the whole group: a wrapper (py-spy) may exit before its child
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), or None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None

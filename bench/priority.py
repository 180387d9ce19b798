"""Priority lane latency: with a backlog of normal jobs queued, how long do high-priority jobs wait to start?

    .venv/bin/python bench/priority.py [--normal 2000] [--high 20] [--probes 5] [--connections 8]
                                       [--chunk 100] [--interval 1.0] [--cap 600] [--pending-grace 600]
                                       [--normal-pollers 1]

Starts ``python -m local`` on free ports with LOG_LEVEL=ERROR, the high lane with its usual 2 pollers and the normal
lane with ``--normal-pollers`` (1; ``make run`` has 4): locally, 4 pollers drain 50 ms jobs about as fast as moto
accepts new ones, so the backlog would never reach its size and the figure would say nothing about a backlog. Then:

1. queues ``--normal`` ``simulate`` jobs {durationMs 50, failureRate 0} as fast as it can over ``--connections``
   keep-alive connections, ``--chunk`` jobs per ``POST /jobs/batch`` (one by one, the local stack's consumers
   drain jobs about as fast as ``POST /jobs`` adds them, so the backlog would never build up): the backlog;
2. enqueues ``--high`` jobs with priority 9 (the high lane), one every ``--interval`` seconds, so they arrive at
   different depths of the draining backlog; beside ``--probes`` of them (evenly spread) it enqueues, at the same
   moment and on another connection, a normal-priority job of the same kind: the control group;
3. polls ``GET /jobs/{id}`` of those jobs (not of the backlog) until each has started, within ``--cap`` seconds.

The stack runs with ``JOBS_LOCAL_PENDING_GRACE`` = ``--pending-grace`` (600 s; ``make run``'s is 30 s): the sweeper
re-sends a pending job whose message may have been lost once it has waited that long, and a backlog of 2,000 jobs
takes minutes to drain locally, so with 30 s it would re-send much of the backlog (after 30 s, 60 s, 120 s...:
the re-sends thin out as a job waits longer, but 2,000 jobs still make thousands of duplicates the consumer drops,
each a send, a write and a read on the one moto lock) and measure that instead of the lanes.
``--pending-grace 30`` shows it.

Time to start is ``startedAt - createdAt``, both written by the server (one clock). Printed: p50/p95/max for the
high-priority jobs and for the normal probes, their ratio, and the backlog (``pending`` in ``GET /stats``) seen
when each high-priority job was enqueued.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import datetime
from typing import Any

from _common import API_KEY, BUILD, Http, percentile, start_local_stack, stop_process_group, wait_http

POLL_SLEEP_S = 0.25


def _simulate(target: str, priority: int = 5) -> dict[str, Any]:
    return {
        "type": "simulate",
        "payload": {"target": target, "durationMs": 50, "failureRate": 0},
        "priority": priority,
    }


def _ms(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000


def queue_backlog(
    port: int, headers: dict[str, str], count: int, connections: int, chunk: int
) -> tuple[float, int, str]:
    """Queue ``count`` normal jobs over ``connections`` connections, ``chunk`` per ``POST /jobs/batch`` (one by one
    with ``POST /jobs`` when ``chunk`` is 1 or the route is missing); returns (seconds taken, errors, how)."""
    if chunk > 1:
        status, _ = Http(port, headers).request("POST", "/jobs/batch", {"jobs": [_simulate("bulk-probe.png")]})
        if status != 202:
            chunk = 1
        else:
            count -= 1
    if chunk > 1:
        # moto applies one DynamoDB request at a time: more connections would only make each batch wait longer for
        # the lock (into client timeouts, whose retry would post the batch twice).
        connections = min(connections, 2)
    starts = list(range(0, count, chunk))
    cursor = iter(starts)
    lock = threading.Lock()
    errors = [0]

    def worker() -> None:
        client = Http(port, headers, timeout=120)
        while True:
            with lock:
                start = next(cursor, None)
            if start is None:
                break
            bodies = [_simulate(f"bulk-{i}.png") for i in range(start, min(count, start + chunk))]
            try:
                if chunk > 1:
                    status, _ = client.request("POST", "/jobs/batch", {"jobs": bodies})
                else:
                    status, _ = client.request("POST", "/jobs", bodies[0])
            except OSError:
                status = 0
            if status != 202:
                with lock:
                    errors[0] += len(bodies)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    how = f"POST /jobs/batch of {chunk}" if chunk > 1 else "POST /jobs one by one"
    how += f", {connections} connections"
    return time.perf_counter() - started, errors[0], how


def enqueue_watched(
    port: int, headers: dict[str, str], high: int, probes: int, interval: float
) -> tuple[list[str], list[str], list[int]]:
    """The high-priority jobs, one per interval, with normal probes beside some; returns (high ids, probe ids,
    backlog seen at each high enqueue)."""
    high_client, probe_client, stats_client = Http(port, headers), Http(port, headers), Http(port, headers)
    probe_at = {round(i * high / probes) for i in range(probes)} if probes else set()
    high_ids: list[str] = []
    probe_ids: list[str] = []
    backlog: list[int] = []
    for i in range(high):
        probe_result: list[str] = []

        def post_probe(i: int = i, out: list[str] = probe_result) -> None:
            status, body = probe_client.request("POST", "/jobs", _simulate(f"probe-{i}.png"))
            if status == 202:
                out.append(body["id"])

        probe_thread = threading.Thread(target=post_probe) if i in probe_at else None
        if probe_thread:
            probe_thread.start()  # at the same moment as the high-priority job, on its own connection
        status, body = high_client.request("POST", "/jobs", _simulate(f"urgent-{i}.png", priority=9))
        if status == 202:
            high_ids.append(body["id"])
        if probe_thread:
            probe_thread.join()
            probe_ids.extend(probe_result)
        code, stats = stats_client.request("GET", "/stats")
        if code == 200:
            backlog.append(int(stats.get("pending", 0)))
        time.sleep(interval)
    for client in (high_client, probe_client, stats_client):
        client.close()
    return high_ids, probe_ids, backlog


def wait_started(port: int, headers: dict[str, str], ids: list[str], cap_s: float) -> dict[str, dict[str, Any]]:
    """Poll each job until it has a startedAt (or the cap passes); returns the last record of each."""
    client = Http(port, headers)
    records: dict[str, dict[str, Any]] = {}
    waiting = list(ids)
    deadline = time.monotonic() + cap_s
    while waiting and time.monotonic() < deadline:
        still = []
        for job_id in waiting:
            status, job = client.request("GET", f"/jobs/{job_id}")
            if status == 200:
                records[job_id] = job
            if status != 200 or not job.get("startedAt"):
                still.append(job_id)
        waiting = still
        if waiting:
            time.sleep(POLL_SLEEP_S)
    client.close()
    return records


def time_to_start_s(records: dict[str, dict[str, Any]], ids: list[str]) -> tuple[list[float], int]:
    """Seconds from createdAt to startedAt of each started job; and how many never started."""
    waits = [
        (_ms(records[i]["startedAt"]) - _ms(records[i]["createdAt"])) / 1000
        for i in ids
        if i in records and records[i].get("startedAt")
    ]
    return waits, len(ids) - len(waits)


def describe(name: str, waits: list[float], missing: int) -> str:
    if not waits:
        return f"  {name:<22} none started ({missing} not started)"
    line = (
        f"  {name:<22} n={len(waits):<3} p50 {percentile(waits, 50):7.2f} s  p95 {percentile(waits, 95):7.2f} s  "
        f"max {max(waits):7.2f} s"
    )
    return line + (f"  ({missing} not started within the cap)" if missing else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--normal", type=int, default=2000, help="normal jobs queued first (the backlog)")
    parser.add_argument("--high", type=int, default=20, help="high-priority (9) jobs enqueued over the backlog")
    parser.add_argument("--probes", type=int, default=5, help="normal jobs enqueued beside some of them")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--chunk", type=int, default=100, help="backlog jobs per POST /jobs/batch (1: POST /jobs one by one)"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between high-priority jobs")
    parser.add_argument("--cap", type=float, default=600, help="seconds to wait for the watched jobs to start")
    parser.add_argument("--pending-grace", type=int, default=600, help="JOBS_LOCAL_PENDING_GRACE of the stack")
    parser.add_argument("--normal-pollers", type=int, default=1, help="JOBS_LOCAL_CONSUMERS of the stack")
    args = parser.parse_args()

    env = {"JOBS_LOCAL_PENDING_GRACE": str(args.pending_grace), "JOBS_LOCAL_CONSUMERS": str(args.normal_pollers)}
    proc, port = start_local_stack(BUILD / "priority.log", extra_env=env)
    try:
        if not wait_http(port, "/health", 90, proc):
            print(f"the local stack did not start; see {BUILD / 'priority.log'}", flush=True)
            raise SystemExit(1)
        headers = {"x-api-key": API_KEY}
        print(
            f"--- priority lanes: {args.normal} normal jobs, then {args.high} high-priority + {args.probes} normal "
            f"(normal lane: {args.normal_pollers} poller(s), high lane: 2; pending grace {args.pending_grace} s)"
        )
        seconds, errors, how = queue_backlog(port, headers, args.normal, args.connections, args.chunk)
        _, stats = Http(port, headers).request("GET", "/stats")
        print(
            f"  backlog queued       {args.normal} jobs in {seconds:.1f} s ({args.normal / seconds:.1f} jobs/s, "
            f"{how}, {errors} errors); pending now {stats.get('pending')}, completed {stats.get('completed')}",
            flush=True,
        )
        high_ids, probe_ids, backlog = enqueue_watched(port, headers, args.high, args.probes, args.interval)
        if backlog:
            print(f"  backlog when enqueued  pending {max(backlog)} at the first, {min(backlog)} at the last")
        records = wait_started(port, headers, high_ids + probe_ids, args.cap)
        high_waits, high_missing = time_to_start_s(records, high_ids)
        probe_waits, probe_missing = time_to_start_s(records, probe_ids)
        print("  time to start (startedAt - createdAt):")
        print(describe("high priority (9)", high_waits, high_missing))
        print(describe("normal (5), same time", probe_waits, probe_missing))
        if high_waits and probe_waits:
            ratio = percentile(probe_waits, 50) / max(percentile(high_waits, 50), 1e-3)
            print(f"  ratio normal/high      p50 {ratio:.1f}x", flush=True)
    finally:
        stop_process_group(proc)


if __name__ == "__main__":
    main()

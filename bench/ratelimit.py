"""Per-type limits, observed: the start rate and concurrency of a limited type against its configured limits.

    .venv/bin/python bench/ratelimit.py [--jobs 100] [--rate 5] [--concurrency 3] [--duration-ms 100] [--cap 120]

Starts ``python -m local`` with JOBS_LOCAL_TYPE_LIMITS={"simulate": {"ratePerSecond": R, "concurrency": C}} (4 local
consumers, each its own execution environment sharing only the moto DynamoDB, as Lambda environments would), POSTs N
simulate jobs of ``--duration-ms`` each, polls GET /stats until all are final, then reads the records back.

Figures (from the records' startedAt, the clock reading the limiter counted the start at, and completedAt):
- observed rate: N / (seconds spanned by the starts, counted in whole one-second windows as the limiter counts),
  and the ratio to the limit (the target: within 10 %); beside it (N - 1) / (last start - first start);
- the most starts in one limiter window (never above the limit) and in any sliding second (a fixed window allows up
  to 2x at a window boundary);
- the most jobs doing their work at once ([completedAt - duration, completedAt]: a simulate job sleeps just before it
  completes, inside its slot's hold), against the concurrency limit;
- attempts per job (waiting never burns one).
"""

from __future__ import annotations

import argparse
import json
import time
from bisect import bisect_left
from collections import Counter
from datetime import datetime
from typing import Any

from _common import API_KEY, BUILD, Http, start_local_stack, stop_process_group, wait_http


def _ms(at: str) -> int:
    return int(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000)


def _records(client: Http, status: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        code, page = client.request("GET", f"/jobs?status={status}&limit=100" + (f"&cursor={cursor}" if cursor else ""))
        if code != 200:
            break
        records.extend(page["jobs"])
        cursor = page.get("nextCursor")
        if not cursor:
            return records
    return records


def _peak_concurrency(records: list[dict[str, Any]], duration_ms: int) -> int:
    """Most jobs doing their work at once: a simulate job sleeps duration_ms just before its completedAt, all of it
    while holding its slot (startedAt is read a few ms before the slot is taken, so it would overstate overlaps)."""
    ends = [_ms(r["completedAt"]) for r in records]
    edges = [(end - duration_ms, 1) for end in ends] + [(end, -1) for end in ends]
    running = peak = 0
    for _, step in sorted(edges):  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def _max_sliding(starts: list[int], width_ms: int = 1000) -> int:
    return max((bisect_left(starts, start + width_ms) - i for i, start in enumerate(starts)), default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--duration-ms", type=int, default=100)
    parser.add_argument("--cap", type=float, default=120, help="give up this many seconds after the last POST")
    args = parser.parse_args()

    limits = {"simulate": {"ratePerSecond": args.rate, "concurrency": args.concurrency}}
    log = BUILD / "ratelimit.log"
    proc, port = start_local_stack(log, extra_env={"JOBS_LOCAL_TYPE_LIMITS": json.dumps(limits)})
    try:
        if not wait_http(port, "/health", 90, proc):
            raise SystemExit(f"the local stack did not start; see {log}")
        client = Http(port, {"x-api-key": API_KEY})
        payload = {"target": "cat.png", "durationMs": args.duration_ms, "failureRate": 0}
        t0 = time.perf_counter()
        accepted = 0
        for _ in range(args.jobs):
            status, _body = client.request("POST", "/jobs", {"type": "simulate", "payload": payload})
            accepted += status == 202
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < args.cap:
            status, stats = client.request("GET", "/stats")
            if status == 200 and stats.get("completed", 0) + stats.get("failed", 0) >= accepted:
                break
            time.sleep(0.25)
        else:
            print(f"  not all final {args.cap:.0f} s after the last POST", flush=True)
        records = _records(client, "completed") + _records(client, "failed")
        client.close()
    finally:
        stop_process_group(proc)

    starts = sorted(_ms(r["startedAt"]) for r in records if r.get("startedAt"))
    if len(starts) < 2:
        raise SystemExit(f"too few jobs ran ({len(starts)}); see {log}")
    per_window = Counter(start // 1000 for start in starts)
    windows = starts[-1] // 1000 - starts[0] // 1000 + 1
    observed = len(starts) / windows
    continuous = (len(starts) - 1) / ((starts[-1] - starts[0]) / 1000)
    full = sum(1 for second in range(starts[0] // 1000 + 1, starts[-1] // 1000) if per_window[second] >= args.rate)
    inner = max(0, windows - 2)
    peak = _peak_concurrency([r for r in records if r.get("completedAt")], args.duration_ms)

    print(f"--- ratelimit: {len(records)}/{args.jobs} jobs final, limits {json.dumps(limits['simulate'])}", flush=True)
    print(f"  enqueue                 {args.jobs / (t1 - t0):7.1f} jobs/s ({t1 - t0:.2f} s)")
    print(f"  starts spanned          {windows} one-second windows ({(starts[-1] - starts[0]) / 1000:.2f} s)")
    print(
        f"  observed start rate     {observed:7.2f} /s  = {observed / args.rate:.3f} x the limit of {args.rate:g}/s  "
        f"({'within' if abs(observed / args.rate - 1) <= 0.10 else 'OUTSIDE'} 10 %)"
    )
    print(f"  (N-1)/(last-first)      {continuous:7.2f} /s  = {continuous / args.rate:.3f} x the limit")
    print(
        f"  most starts, one window {max(per_window.values()):4d}  (limit {args.rate:g}; inner windows full: "
        f"{full}/{inner})"
    )
    print(f"  most starts, any 1 s    {_max_sliding(starts):4d}  (fixed windows allow up to 2x across a boundary)")
    series = " ".join(str(per_window[second]) for second in range(starts[0] // 1000, starts[-1] // 1000 + 1))
    print(f"  starts per window       {series}")
    print(f"  max concurrency         {peak:4d}  (limit {args.concurrency})")
    print(f"  outcomes                {dict(Counter(r['status'] for r in records))}")
    print(f"  attempts                {dict(sorted(Counter(r['attempts'] for r in records).items()))}")


if __name__ == "__main__":
    main()

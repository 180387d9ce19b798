"""``make bench``: every benchmark in sequence, with modest defaults (about 6 minutes on 2 cores).

    .venv/bin/python bench/run_all.py [--quick]

One at a time (the machine has 2 cores): cold start, handler overhead, end to end against the peer and the local
stack's floor under it, cost (which saves the recording), then hot keys from that same recording, then the observed
rate limit, then the priority lane's latency under a backlog. Each script stops by itself; a failing one is reported
and the rest still run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    steps = [
        # 21 rounds: a 9-round median swung by ±0.1x between runs of the same code on this shared machine.
        ("coldstart.py", ["3" if quick else "21"]),
        ("handler.py", ["--jobs", "500" if quick else "2000", "--batches", "50" if quick else "200"]),
        ("e2e.py", ["--jobs", "200" if quick else "500", "--cap", "60"]),
        ("local_floor.py", ["--jobs", "100" if quick else "300", "--rounds", "3" if quick else "7"]),
        ("cost.py", ["--jobs", "100" if quick else "300", "--light-jobs", "30" if quick else "60", "--cap", "90"]),
        ("hotkeys.py", []),
        ("ratelimit.py", ["--jobs", "50" if quick else "100"]),
        ("priority.py", ["--normal", "500" if quick else "2000", "--high", "10" if quick else "20"]),
    ]
    failed = []
    for script, args in steps:
        print(f"\n=== bench/{script} {' '.join(args)}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / script), *args], check=False, timeout=900)
        print(f"=== {script}: {time.monotonic() - started:.0f} s, exit {done.returncode}", flush=True)
        if done.returncode:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()

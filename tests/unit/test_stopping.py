"""How ``make run`` and ``jobs worker`` wait for a stop signal and end (jobsctl/stopping.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from jobsctl.stopping import StopSignals

ROOT = Path(__file__).resolve().parents[2]


def test_a_stop_signal_is_noted_not_raised_and_the_previous_handlers_come_back() -> None:
    # Given the stop signals taken over, and SIGTERM sent to this process a moment later
    before = signal.getsignal(signal.SIGTERM)
    signals = StopSignals()
    try:
        threading.Timer(0.1, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
        # When the main thread waits for it
        received = signals.wait()
    finally:
        signals.restore()
    # Then the wait returns that signal (the process lives on), and the handler found before is back
    assert received == signal.SIGTERM
    assert signals.received == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_process_ends_at_once_without_waiting_for_a_pool_thread_still_running() -> None:
    # Given a process whose pool thread runs a minute-long task (Python joins pool threads before a normal exit)
    script = textwrap.dedent(
        """
        import time
        from concurrent.futures import ThreadPoolExecutor
        from jobsctl.stopping import end_process

        pool = ThreadPoolExecutor(max_workers=1)
        pool.submit(time.sleep, 60)
        print("stopped", end="")
        end_process(3)
        """
    )
    # When it ends its process
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    # Then it exited with the code given at once, its output flushed
    assert time.monotonic() - began < 10
    assert result.returncode == 3, result.stderr
    assert result.stdout == "stopped"

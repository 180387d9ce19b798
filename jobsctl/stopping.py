"""How a long-running command (``make run``, ``jobs worker``) waits for Ctrl-C or SIGTERM, and how it ends.

A graceful stop waits a grace period for the attempts in flight; an attempt still running then is abandoned on
purpose: its message comes back when its lease ends, and another delivery runs it. The process must then end at
once. A normal exit would not: Python joins every ``ThreadPoolExecutor`` thread before it exits (they are not
daemons), and the consumer runs a batch's records on one, so a stop waited for the longest abandoned job.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import NoReturn

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How often the wait looks for a noted signal: the delay between Ctrl-C and the start of the stop, at most.
POLL_SECONDS = 0.2


class StopSignals:
    """SIGINT and SIGTERM noted instead of raised, from construction (main thread only) until ``restore``.

    The handler only appends to a list. Python runs a handler in the main thread between two bytecodes, and there a
    handler calling ``threading.Event.set`` could wait for the lock that the interrupted ``Event.wait`` holds: the
    stop would deadlock. So nothing here takes a lock; ``wait`` polls instead."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous = {sig: signal.signal(sig, self._note) for sig in STOP_SIGNALS}

    def _note(self, signum: int, _frame: object) -> None:
        self.received.append(signum)

    def wait(self) -> int:
        """Block until a stop signal came; the first one."""
        while not self.received:
            time.sleep(POLL_SECONDS)
        return self.received[0]

    def restore(self) -> None:
        """Put back the handlers found at construction."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def end_process(code: int = 0) -> NoReturn:
    """End the process now, its output flushed, without waiting for threads still running abandoned attempts."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

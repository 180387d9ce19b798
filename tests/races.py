"""Making a race show up in a test: threads that hand over to each other as often as the interpreter allows."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def frequent_thread_switches() -> Iterator[None]:
    """Inside, the interpreter lock changes hands between nearly every bytecode (1 µs instead of 5 ms), so code that
    reads shared state while another thread changes it is caught in the middle; the interval is put back after."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)

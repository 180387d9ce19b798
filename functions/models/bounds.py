"""Bounds and defaults of a job's options, stated once: the API, the CLI, the client and the config import them."""

from __future__ import annotations

PRIORITY_MIN = 1
PRIORITY_MAX = 10
PRIORITY_DEFAULT = 5

MAX_ATTEMPTS_MIN = 1
MAX_ATTEMPTS_MAX = 25
MAX_ATTEMPTS_DEFAULT = 3

# Jobs with at least this priority go through the high-priority lane (a deployment may choose another).
HIGH_PRIORITY_THRESHOLD_DEFAULT = 8

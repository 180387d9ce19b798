"""Exponential backoff with jitter between attempts."""

from __future__ import annotations

import math
import random


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> int:
    """Wait before the attempt after ``attempt`` (1-based): half of base*2^(attempt-1), plus up to as much again.

    "Equal jitter" keeps a floor (retries never bunch at zero) while spreading a burst of failures apart.
    SQS counts visibility in whole seconds, hence the ceiling.
    """
    uniform = rng.uniform if rng is not None else random.uniform
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return max(1, math.ceil(ceiling / 2 + uniform(0, ceiling / 2)))

"""The stats aggregator: the jobs table's stream (NEW_AND_OLD_IMAGES) turned into the per-tenant counters.

(Being written: see functions/logic/stats_stream.py.)"""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise NotImplementedError

"""Runtime settings of the Lambda functions, read from the environment in one place.

Handlers call ``Settings.from_env()``; logic receives plain values. ``to_env()`` is the inverse, used by the
CDK constructs and the local stack so that the variable names exist only here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

_PREFIX = "JOBS_"


@dataclass(frozen=True)
class Settings:
    jobs_table: str = "jobs"
    stats_table: str = "job-stats"
    queue_url: str = ""
    dlq_url: str = ""
    # Counters are spread over this many items per tenant so no single key takes every write.
    stats_shards: int = 8
    # The sweeper's index is spread the same way.
    sweep_shards: int = 4
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 300.0
    # A pending job whose message was never sent is re-sent after this long.
    pending_grace_seconds: int = 120
    # Scheduled jobs are handed to SQS (DelaySeconds) once they are due within this window (SQS max is 900).
    release_ahead_seconds: int = 900
    default_lease_seconds: int = 60

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(_PREFIX + field.name.upper())
            if raw is None:
                continue
            default = getattr(cls, field.name)
            values[field.name] = type(default)(raw)
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        return {_PREFIX + name.upper(): str(value) for name, value in asdict(self).items()}

"""What a job costs on AWS, counting everything AWS bills: busy and light traffic per million jobs, and an idle month.

    .venv/bin/python bench/cost.py [--jobs 150] [--light-jobs 40] [--connections 4] [--workload message]
                                   [--save .build/bench/recording.json] [--load .build/bench/recording.json]

The standard workload: ``POST /jobs`` (a ``message`` job) -> run once -> counted in stats -> one ``GET /jobs/{id}``
(``--workload simulate`` runs the older simulate jobs with failures instead). The in-process local stack
(``local.stack.LocalStack``: moto, the gateway, the SQS and stream event-source emulators, the sweeper) runs N such
jobs twice: once with the deployed batch sizes (busy) and once, in a fresh interpreter, with batches of one for the
consumer and the stats aggregator (light). Every AWS request is counted by botocore hooks (_recording.py), never
assumed, and each handler's log output (Powertools' lines and EMF metrics, at the deployed INFO level) is counted.

- busy (>= 100 jobs/s): full SQS batches (the consumer's batch size) and full stream batches (100 records): what a
  consumer invocation does outside its records, its Lambda request, the event-source mapping's receive and delete
  (one each per batch), and every stats-aggregator invocation are measured, then divided among a full batch. Cold
  starts: BUSY_COLD_SHARE of invocations (a container serves thousands of requests).
- light (1 million jobs a month, evenly spread, ~0.4/s): measured with batches of one (one record per consumer
  invocation, one stream record per stats invocation, as each stream poll finds one); cold starts:
  LIGHT_COLD_SHARE of invocations (AWS reports INIT in under 1 % of invocations). The idle month is not in it.
  A final record's expiry (TTL, 30 days on) puts a REMOVE record on the stream, which no run here reaches; the
  stats aggregator's event source filters REMOVE records out (infra/config.py, ``StatsStreamConfig.event_names``),
  and a record filtered out is no invocation, so expiries cost nothing there.
- idle: the fixed monthly cost of a deployment with no traffic: alarms, dashboards, the SQS event-source mappings'
  empty long polls, the sweeper's schedule and its calls per run (measured), custom metrics emitted when idle,
  storage and PITR of the tables' standing items. Counted from the stack as synthesized (``cdk synth``) when CDK
  can run here, else from infra/config.py.
- behind the API: the enqueue path only: the gateway request, the api Lambda (invocation, duration, INIT share, its
  logs) and its AWS calls for ``POST /jobs`` (the authorizer's share too when the API has one: one invocation per key
  per cache TTL, ~0 per job at these rates).

The shape prices depend on (API type, each function's memory and architecture, tracing and its sampling rate) is
read from the synthesized stack, else from infra/config.py. Prices: functions/models/prices.py (one table with the
functions' own per-job estimates). Lambda duration: each
handler's own time measured here plus ASSUMED_CALL_MS per AWS call (``_recording.estimate_ms``); INIT: the import
time of each handler module in a fresh interpreter (bench/coldstart.py's method), billed since 2025-08-01.
DynamoDB units are derived from item sizes and the table's indexes as declared (every GSI entry, transactions x2,
failed conditional writes billed); SQS requests per 64 KB chunk. The per-job check: the sum of the ``cost`` each
final job record carries (functions/logic/cost.py) against this ledger's lines for the same calls in the same run.

The last line is ``cost: all-in $A/M busy, $B/M light; behind the API $C/M; idle $D/month``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import BUILD, ROOT
from _recording import ASSUMED_CALL_MS, DEFAULT_RECORDING, Recording, by_role_op, record

from functions.models import prices as P

BUSY_COLD_SHARE = 0.001
LIGHT_COLD_SHARE = 0.01
STREAM_FULL_BATCH = 100
BUSY_JOBS_PER_MONTH = 100 * P.SECONDS_PER_MONTH
LIGHT_JOBS_PER_MONTH = 1_000_000
# Lambda's platform lines per invocation (START, END, REPORT in text format), about this many bytes, counted only
# for a function that logs them: none at system log level WARN (infra/constructs/function.py), as synthesized.
PLATFORM_LOG_BYTES = 280
# An API Gateway access-log line when the stack's format cannot be read, about this many bytes.
ACCESS_LOG_BYTES = 330
# What API Gateway writes for an access-log format's variables on a typical request ("-" for one without a value):
# the synthesized format filled in with these is the line priced, per route.
ACCESS_LOG_VALUES = {
    "$context.requestId": "KpQ3bjq4oAMEVbQ=",
    "$context.requestTime": "07/Dec/2026:01:40:00 +0000",
    "$context.identity.sourceIp": "203.0.113.45",
    "$context.authorizer.keyId": "3f9a1c7e5b20",
    "$context.authorizer.tenant": "acme-prod",
    "$context.status": "202",
    "$context.responseLatency": "24",
    "$context.integrationLatency": "21",
    "$context.responseLength": "389",
    "$context.routeKey": "ANY /{proxy+}",  # the keyed routes' (infra/constructs/api.py)
}
ACCESS_LOG_REQUESTS = {"api": ("POST", "/jobs"), "read": ("GET", "/jobs/6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b")}
# Lambda's SQS event-source mapping long-polls an idle queue with this many pollers, 20 s polls (AWS docs, "Using
# Lambda with Amazon SQS": it starts with five; each ReceiveMessage is billed, empty or not).
IDLE_SQS_POLLERS = 5
SQS_LONG_POLL_SECONDS = 20
X_RAY_SAMPLE_RATE = 0.05  # X-Ray's default rule: 1 request/s, then 5 %
ROLES = ("api", "read", "consumer", "stats")
TARGETS = {"busy": 5.00, "light": 8.00, "behind": 2.50, "idle": 10.00}


@dataclass
class Shape:
    """The deployed shape that prices depend on, read from infra/config.py."""

    api_type: str
    architecture: str
    memory: dict[str, int]
    tracing: bool
    batch_size: int
    log_retention_days: int
    job_retention_days: int
    sweeper_minutes: float
    sample_rate: float = X_RAY_SAMPLE_RATE  # X-Ray's sampled share beyond the 1 request/s reservoir
    # Roles whose function logs Lambda's START/END/REPORT lines (all, until the synthesized stack says otherwise).
    platform_lines: dict[str, bool] = field(default_factory=dict)
    access_log_format: str = ""  # the API stage's, as synthesized ("" when unknown: ACCESS_LOG_BYTES)

    @classmethod
    def deployed(cls) -> Shape:
        from infra.config import AWS_CONFIG as c

        api_type = str(getattr(c, "api_type", getattr(c, "api_kind", "rest"))).lower()
        sweeper_minutes = float(getattr(c, "sweeper_interval_minutes", 0) or c.sweeper_interval_seconds / 60)
        return cls(
            api_type="http" if "http" in api_type else "rest",
            architecture=str(getattr(c, "architecture", "x86_64")),
            memory={
                "api": _memory(c, "api"),
                "read": _memory(c, "api"),
                "consumer": c.consumer.memory_mb,
                "stats": c.stats_stream.memory_mb,
                "sweeper": _memory(c, "sweeper"),
                "authorizer": _memory(c, "authorizer"),
            },
            tracing=bool(getattr(c, "tracing_enabled", False)),
            batch_size=c.consumer.batch_size,
            log_retention_days=c.log_retention_days,
            job_retention_days=c.runtime.job_retention_days if hasattr(c, "runtime") else 30,
            sweeper_minutes=sweeper_minutes,
        )


def access_log_bytes(log_format: str, role: str) -> float:
    """One access-log line of ``role``'s route: ``log_format`` with each variable filled in, plus its newline."""
    if not log_format:
        return float(ACCESS_LOG_BYTES)
    method, path = ACCESS_LOG_REQUESTS[role]
    values = {**ACCESS_LOG_VALUES, "$context.httpMethod": method, "$context.path": path}
    line = log_format
    for variable in sorted(values, key=len, reverse=True):  # $context.path before a shorter prefix of it
        line = line.replace(variable, values[variable])
    line = re.sub(r"\$context\.[A-Za-z0-9_.]+", "-", line)  # the rest (errors) are empty on a served request
    return float(len(line.encode()) + 1)


def _memory(config: Any, role: str) -> int:
    value = getattr(config, f"{role}_memory_mb", None)
    if isinstance(value, int):
        return value
    nested = getattr(config, role, None)
    return int(getattr(nested, "memory_mb", 512))


class Ledger:
    """Lines of $ per job, each with the scope it belongs to (the enqueue path is ``api``); in a floor (``floor``),
    the lines that no shape can do without are marked fixed."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, float]] = []
        self.fixed: set[str] = set()

    def add(self, label: str, usd: float, scope: str = "all", fixed: bool = False) -> None:
        self.lines.append((label, scope, usd))
        if fixed:
            self.fixed.add(label)

    def total(self, scope: str | None = None) -> float:
        return sum(usd for _, s, usd in self.lines if scope is None or s == scope)

    def fixed_total(self, scope: str | None = None) -> float:
        return sum(usd for label, s, usd in self.lines if label in self.fixed and (scope is None or s == scope))


def init_ms(roles: tuple[str, ...] = ("api", "consumer", "stats_stream")) -> dict[str, float]:
    """Import time of each handler module in a fresh interpreter, minus an empty one's (bench/coldstart.py's way)."""
    env_code = "import os; os.environ.setdefault('AWS_DEFAULT_REGION','us-east-1'); import time; t=time.perf_counter()"

    def timed(code: str) -> float:
        best = math.inf
        for _ in range(3):
            out = subprocess.run(
                [sys.executable, "-c", f"{env_code}; {code}; print((time.perf_counter()-t)*1000)"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            try:
                best = min(best, float(out.stdout.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                continue
        return 0.0 if best is math.inf else best

    empty = timed("pass")
    result = {role: max(0.0, timed(f"import functions.handlers.{role}") - empty) for role in roles}
    return {
        "api": result["api"],
        "read": result["api"],
        "consumer": result["consumer"],
        "stats": result["stats_stream"],
    }


STATS_COLUMNS = {"wru": 1, "rru": 2, "sqs": 3, "ms": 4, "log": 5}


def at_batch_size(rec: Recording, column: str, size: int) -> float:
    """A stats-aggregator invocation's ``column`` at ``size`` records: a least-squares line a + b x records over
    the invocations measured (what is per batch and what is per record), or their mean when all had one size."""
    points = [(batch[0], batch[STATS_COLUMNS[column]]) for batch in rec.stats_batches if batch[0]]
    if not points:
        return 0.0
    n = len(points)
    mean_r = sum(r for r, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((r - mean_r) ** 2 for r, _ in points)
    if spread == 0:
        return mean_y
    slope = sum((r - mean_r) * (y - mean_y) for r, y in points) / spread
    if slope < 0:
        return mean_y
    intercept = mean_y - slope * mean_r
    if intercept < 0:
        return mean_y / mean_r * size
    return intercept + slope * size


def wru(rec: Recording, role: str) -> float:
    return float(sum(w.units for w in rec.writes if w.role == role))


def sqs_requests(rec: Recording, role: str) -> float:
    return float(sum(chunks for key, chunks in rec.sqs_chunks.items() if key.split(" ")[0] == role))


def price(rec: Recording, shape: Shape, mode: str, init: dict[str, float]) -> Ledger:
    """The ledger of one recording, $ per job: ``mode`` busy scales per-batch figures to full batches."""
    n = rec.jobs
    busy = mode == "busy"
    cold = BUSY_COLD_SHARE if busy else LIGHT_COLD_SHARE
    gb_s = P.lambda_gb_second(shape.architecture)
    ledger = Ledger()
    deliveries = rec.records / n  # consumer records per job (1 for a message job run once)
    stream_records = rec.stream_records / n

    # Per job: how many invocations of each function, and billed ms per invocation.
    invocations: dict[str, float] = {}
    ms: dict[str, float] = {}
    for role in ("api", "read", "authorizer"):
        invocations[role] = rec.invocations[role] / n
        ms[role] = rec.estimated_ms[role] / max(1, rec.invocations[role])
    consumer_invocations = max(1, rec.invocations["consumer"])
    if busy:
        full = shape.batch_size
        record_ms = rec.consumer_record_ms / max(1, rec.records)
        record_cpu = rec.consumer_record_cpu_ms / max(1, rec.records)
        invocations["consumer"] = deliveries / full
        ms["consumer"] = rec.consumer_outside_ms / consumer_invocations + record_ms + (full - 1) * record_cpu
        invocations["stats"] = stream_records / STREAM_FULL_BATCH
    else:
        invocations["consumer"] = rec.invocations["consumer"] / n
        ms["consumer"] = rec.estimated_ms["consumer"] / consumer_invocations
        invocations["stats"] = rec.invocations["stats"] / n
    ms["stats"] = rec.estimated_ms["stats"] / max(1, rec.invocations["stats"])
    if busy and rec.stats_batches:  # a full batch's time, from how the measured batches grew with their records
        ms["stats"] = at_batch_size(rec, "ms", STREAM_FULL_BATCH)
    batch_scale = invocations["consumer"] / max(1e-9, rec.invocations["consumer"] / n)

    apigw = P.apigw_request(shape.api_type)
    for role, scope in (("api", "api"), ("read", "read")):
        ledger.add(
            f"API Gateway {shape.api_type.upper()} ({'POST /jobs' if role == 'api' else 'GET /jobs/{id}'})",
            invocations[role] * apigw,
            scope,
        )
    roles = (*ROLES, "authorizer") if invocations["authorizer"] else ROLES
    for role in roles:
        scope = "api" if role in ("api", "authorizer") else "read" if role == "read" else "run"
        count = invocations[role]
        billed = math.ceil(ms[role]) + cold * math.ceil(init.get(role, init["api"]))
        memory = shape.memory[role]
        ledger.add(f"Lambda {role}: requests ({count:.3f}/job)", count * P.LAMBDA_REQUEST, scope)
        ledger.add(
            f"Lambda {role}: GB-s ({memory} MB {shape.architecture} x {ms[role]:.1f} ms + INIT"
            f" {init.get(role, init['api']):.0f} ms"
            f" x {cold:.1%})",
            count * billed / 1000 * memory / 1024 * gb_s,
            scope,
        )
    # DynamoDB and SQS, by caller.
    callers = {
        "api": (1.0, "api"),
        "read": (1.0, "read"),
        "consumer": (1.0, "run"),
        "consumer-batch": (batch_scale, "run"),
        "stats": (1.0, "run"),
        "authorizer": (1.0, "api"),
        "sweeper": (0.0, "run"),  # time-based: in the idle month
    }
    for role, (scale, scope) in callers.items():
        if not scale:
            continue
        units_w = wru(rec, role) / n * scale
        units_r = rec.read_units[role] / n * scale
        requests = sqs_requests(rec, role) / n * scale
        if role == "stats" and busy and rec.stats_batches:  # full batches of 100 records
            units_w = invocations["stats"] * at_batch_size(rec, "wru", STREAM_FULL_BATCH)
            units_r = invocations["stats"] * at_batch_size(rec, "rru", STREAM_FULL_BATCH)
            requests = invocations["stats"] * at_batch_size(rec, "sqs", STREAM_FULL_BATCH)
        if units_w:
            ledger.add(f"DynamoDB {role}: {units_w:.2f} WRU (table + GSI entries)", units_w * P.DDB_WRITE_UNIT, scope)
        if units_r:
            ledger.add(f"DynamoDB {role}: {units_r:.2f} RRU", units_r * P.DDB_READ_UNIT, scope)
        if requests:
            ledger.add(f"SQS {role}: {requests:.2f} requests", requests * P.SQS_REQUEST, scope)
    # Busy, Lambda's poller makes one ReceiveMessage and one DeleteMessageBatch per full batch.
    esm = 2 * deliveries / shape.batch_size if busy else sqs_requests(rec, "esm") / n
    ledger.add(f"SQS event-source mapping: {esm:.2f} requests (receive, delete)", esm * P.SQS_REQUEST, "run")

    # CloudWatch Logs: what the handlers wrote, Lambda's platform lines, the API's access log.
    log_bytes = 0.0
    for role in ROLES:
        written = rec.log_bytes[role] / n  # the consumer's: per record; its per-invocation part is small
        if role == "stats" and busy and rec.stats_batches:
            written = invocations["stats"] * at_batch_size(rec, "log", STREAM_FULL_BATCH)
        platform = invocations[role] * PLATFORM_LOG_BYTES if shape.platform_lines.get(role, True) else 0.0
        access = invocations[role] * access_log_bytes(shape.access_log_format, role) if role in ("api", "read") else 0.0
        role_bytes = written + platform + access
        log_bytes += role_bytes
        scope = "api" if role == "api" else "read" if role == "read" else "run"
        access_part = f", {access:.0f} access log" if access else ""
        ledger.add(
            f"CloudWatch Logs {role}: {role_bytes:.0f} B/job ({written:.0f} handler, {platform:.0f} platform"
            f"{access_part})",
            role_bytes / P.GB * (P.LOGS_INGEST_GB + P.LOGS_STORAGE_GB_MONTH * shape.log_retention_days / 30),
            scope,
        )
    # Custom metrics: a monthly price per metric, spread over the month's jobs.
    jobs_per_month = BUSY_JOBS_PER_MONTH if busy else LIGHT_JOBS_PER_MONTH
    ledger.add(
        f"CloudWatch custom metrics: {len(rec.metrics)} x ${P.METRIC_MONTH:.2f}/month over {jobs_per_month:,.0f} jobs",
        len(rec.metrics) * P.METRIC_MONTH / jobs_per_month,
        "run",
    )
    traces = 0.0
    if shape.tracing:  # a trace per sampled entry request (each API request, each consumer/stats invocation)
        entries = sum(invocations.values())
        traces = entries * (shape.sample_rate if busy else 1.0)  # light: under the 1/s reservoir
    ledger.add(
        f"X-Ray: {traces:.2f} traces/job (tracing {'on' if shape.tracing else 'off'} by default)",
        traces * P.XRAY_TRACE,
        "run",
    )
    # Storage: the final record and its index entries, kept for the retention period, plus PITR of them.
    stored = final_record_bytes(rec)
    ledger.add(
        f"DynamoDB storage + PITR: {stored:.0f} B x {shape.job_retention_days} days",
        storage_usd(stored, shape),
        "run",
    )
    return ledger


def storage_usd(stored: float, shape: Shape) -> float:
    """``stored`` bytes kept for the retention period, with PITR."""
    return stored / P.GB * shape.job_retention_days / 30 * (P.DDB_STORAGE_GB_MONTH + P.DDB_PITR_GB_MONTH)


# A stream function that dispatches busy traffic sends this many messages a call (SendMessageBatch's limit).
DISPATCH_BATCH = 10
# The measured lines every shape pays, whatever its design: the fixed shape (API Gateway -> a function -> SQS -> a
# consumer, stats from the jobs table's stream) and the standard workload (a POST, a run, a GET) make these requests.
FIXED_LINES = ("API Gateway", "DynamoDB read:", "SQS event-source mapping")


def floor(measured: Ledger, rec: Recording, shape: Shape, mode: str) -> Ledger:
    """The floor of every shape that keeps the service's features and guarantees: ``measured``, this run's ledger
    (``price``), line by line, less what such a shape need not pay (docs/performance.md, "the floor of each shape"):

    - the index entries the record enters at create and leaves at the end (the by-tenant entry: a table key that
      lists a tenant's jobs instead, shape X; the sweep mark: no per-job mark once the table's stream dispatches,
      shape Y), and their storage;
    - the API's send, made instead from the jobs table's stream (batches of ten when busy), by the stream function
      that already runs for stats, with the call's time in it;
    - under light traffic, the stats writes beyond one per stream record (the counters and the minute in one item).

    Lines marked fixed (``Ledger.fixed``) are what the fixed shape and the measure pay whatever the design: the two
    gateway requests, every Lambda invocation, the record's three writes (create, claim, end), the read, the SQS
    requests and one exact stats write per stream record. The rest (duration, storage, logs) has no floor but zero.
    """
    busy = mode == "busy"
    n = max(1, rec.jobs)
    jobs_table = jobs_table_name(rec)
    out = Ledger()
    for label, scope, usd in measured.lines:
        role = label.split(":")[0].split(" ")[-1]
        if label.startswith(("DynamoDB api:", "DynamoDB consumer:")) and "WRU" in label:
            units = sum(w.units for w in rec.writes if w.role == role and w.table == jobs_table) / n
            what = "the create" if role == "api" else "the claim and the end"
            out.add(
                f"DynamoDB {role}: {units:.2f} WRU ({what} on the record alone; no index entry: X, Y)",
                min(usd, units * P.DDB_WRITE_UNIT),
                scope,
                fixed=True,
            )
        elif label.startswith("SQS api:"):
            sends = sqs_requests(rec, "api") / n
            requests = sends / DISPATCH_BATCH if busy else sends
            out.add(
                f"SQS dispatch from the jobs table's stream: {requests:.2f} requests (batches of "
                f"{DISPATCH_BATCH if busy else 1}; Y)",
                requests * P.SQS_REQUEST,
                "run",
                fixed=True,
            )
            send_ms = requests * ASSUMED_CALL_MS
            out.add(
                f"Lambda stats: GB-s of the dispatch's sends ({send_ms:.1f} ms/job at {shape.memory['stats']} MB)",
                P.lambda_usd(send_ms, shape.memory["stats"], shape.architecture, invocations=0),
                "run",
            )
        elif label.startswith("DynamoDB stats:") and "WRU" in label:
            units = rec.stream_records / n
            floor_usd = usd if busy else min(usd, units * P.DDB_WRITE_UNIT)
            detail = "full batches, as measured" if busy else f"{units:.2f} WRU, one per stream record"
            out.add(f"DynamoDB stats: {detail} (exact counts)", floor_usd, scope, fixed=True)
        elif label.startswith("DynamoDB storage"):
            record_bytes, _ = stored_bytes(rec)
            out.add(
                f"DynamoDB storage + PITR: {record_bytes:.0f} B x {shape.job_retention_days} days (the record alone)",
                min(usd, storage_usd(record_bytes, shape)),
                scope,
            )
        else:
            fixed = label.startswith(FIXED_LINES) or (label.startswith("Lambda ") and ": requests" in label)
            out.add(label, usd, scope, fixed=fixed)
    return out


def final_record_bytes(rec: Recording) -> float:
    """What a job leaves stored, per job: the jobs table's records as last written and the index entries still
    live at the end (puts minus deletes, at their average size), DynamoDB's 100 B overhead on each item."""
    records, entries = stored_bytes(rec)
    return records + entries


def jobs_table_name(rec: Recording) -> str:
    """The jobs table among the recorded ones (the others are named ``job-...``)."""
    return next((name for name in rec.indexes if not name.startswith("job-")), "jobs")


def stored_bytes(rec: Recording) -> tuple[float, float]:
    """Per job, the bytes the jobs table's items keep at the end and the bytes their live index entries keep."""
    jobs_table = jobs_table_name(rec)
    last: dict[str, int] = {}
    live: Counter[str] = Counter()
    sizes: dict[str, list[int]] = {}
    for w in rec.writes:
        table, _, index = w.table.partition("/")
        if table != jobs_table:
            continue
        if not index:
            if w.kind == "delete":
                last.pop(w.pk, None)
            else:
                last[w.pk] = w.size + 100
        elif w.kind in ("put", "delete"):
            live[index] += 1 if w.kind == "put" else -1
            sizes.setdefault(index, []).append(w.size + 100)
    entries = sum(max(0, count) * sum(sizes[index]) / len(sizes[index]) for index, count in live.items())
    return sum(last.values()) / max(1, rec.jobs), entries / max(1, rec.jobs)


def idle_month(rec: Recording, shape: Shape) -> Ledger:
    """The fixed monthly cost of the stack with no traffic."""
    ledger = Ledger()
    counts = stack_counts()
    ledger.add(f"CloudWatch alarms: {counts['alarms']} x ${P.ALARM_MONTH:.2f}", counts["alarms"] * P.ALARM_MONTH)
    ledger.add(
        f"CloudWatch dashboards: {counts['dashboards']} x ${P.DASHBOARD_MONTH:.2f}",
        counts["dashboards"] * P.DASHBOARD_MONTH,
    )
    polls = IDLE_SQS_POLLERS * P.SECONDS_PER_MONTH / SQS_LONG_POLL_SECONDS
    for kind, count, each in (
        ("standard", counts["sqs_mappings"], P.SQS_REQUEST),
        ("FIFO", counts["fifo_mappings"], P.SQS_FIFO_REQUEST),
    ):
        ledger.add(
            f"SQS event-source mappings, {count} {kind}: {polls:,.0f} empty receives each "
            f"({IDLE_SQS_POLLERS} pollers x {SQS_LONG_POLL_SECONDS} s long polls)",
            count * polls * each,
        )
    ledger.add(f"KMS keys: {counts['kms_keys']} x ${P.KMS_KEY_MONTH:.2f}", counts["kms_keys"] * P.KMS_KEY_MONTH)
    if counts["secrets"]:
        ledger.add(f"Secrets Manager: {counts['secrets']} x ${P.SECRET_MONTH:.2f}", counts["secrets"] * P.SECRET_MONTH)
    ledger.add("DynamoDB stream event-source mapping: GetRecords by Lambda are free", 0.0)
    runs = P.SECONDS_PER_MONTH / 60 / shape.sweeper_minutes
    sweeps = max(1, rec.invocations["sweeper"])
    per_run_rru = rec.read_units["sweeper"] / sweeps
    per_run_wru = wru(rec, "sweeper") / sweeps
    per_run_sqs = sqs_requests(rec, "sweeper") / sweeps
    sweep_ms = rec.estimated_ms["sweeper"] / sweeps
    calls = sum(v for k, v in rec.calls.items() if k.startswith("sweeper ")) / sweeps
    ledger.add(
        f"sweeper: {runs:,.0f} runs (every {shape.sweeper_minutes:g} min; EventBridge schedule free), "
        f"{calls:.0f} calls/run",
        runs
        * (
            P.lambda_usd(math.ceil(sweep_ms), shape.memory["sweeper"], shape.architecture)
            + per_run_rru * P.DDB_READ_UNIT
            + per_run_wru * P.DDB_WRITE_UNIT
            + per_run_sqs * P.SQS_REQUEST
        ),
    )
    platform = PLATFORM_LOG_BYTES if shape.platform_lines.get("sweeper", True) else 0
    ledger.add(
        f"sweeper logs: {runs:,.0f} x {platform} B platform lines",
        runs * platform / P.GB * P.LOGS_INGEST_GB,
    )
    ledger.add("custom metrics when idle: none (idle sweeps and reads emit no metric)", 0.0)
    ledger.add(
        f"DynamoDB storage + PITR of standing items ({counts['tables']} tables, ~1 MB)",
        counts["tables"] * 1e-3 * (P.DDB_STORAGE_GB_MONTH + P.DDB_PITR_GB_MONTH),
    )
    return ledger


def stack_counts() -> dict[str, int]:
    """Alarms, dashboards and tables of the stack as synthesized (``cdk synth``); from the constructs' structure
    when CDK cannot run here."""
    cached = BUILD / "stack-counts.json"
    try:
        out = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("_synth_counts.py"))],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        counts: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(counts))
        return counts
    except (subprocess.SubprocessError, ValueError, IndexError, OSError):
        if cached.exists():
            return dict(json.loads(cached.read_text()))
        return {
            "alarms": 12,
            "dashboards": 1,
            "tables": 4,
            "kms_keys": 1,
            "secrets": 0,
            "sqs_mappings": 2,
            "fifo_mappings": 1,
            "http_api": 0,
        }


# Which synthesized function (by the words in its logical id) is which role, in order of preference.
ROLE_FUNCTIONS = {
    "api": ("ApiFunction", "Api"),
    "read": ("ApiFunction", "Api"),
    "consumer": ("JobQueueConsumer", "Consumer"),
    "stats": ("Stats",),
    "sweeper": ("Sweeper",),
    "authorizer": ("Authorizer",),
}


def _function_of(role: str, functions: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    for word in ROLE_FUNCTIONS[role]:
        for key, fn in sorted(functions.items()):
            if word in key and (role == "authorizer" or "Authorizer" not in key):
                return fn
    return None


def apply_synthesized(shape: Shape, counts: dict[str, Any]) -> Shape:
    """The shape as ``cdk synth`` builds it (API type, each function's memory, architecture, tracing, the X-Ray
    sampling rate) over what infra/config.py says."""
    if counts.get("http_api"):
        shape.api_type = "http"
    functions: dict[str, dict[str, Any]] = counts.get("functions", {})
    for role in ROLE_FUNCTIONS:
        match = _function_of(role, functions)
        if match is None:
            continue
        shape.memory[role] = int(match["memory"])
        shape.platform_lines = {**shape.platform_lines, role: bool(match.get("platform_lines", True))}
        if role == "api":
            shape.architecture = str(match["architecture"])
    if functions:
        shape.tracing = any(fn.get("traced") for fn in functions.values())
    shape.sample_rate = float(counts.get("xray_fixed_rate", X_RAY_SAMPLE_RATE))
    shape.access_log_format = str(counts.get("access_log_format", ""))
    return shape


def report(busy: Recording, light: Recording | None, init: dict[str, float]) -> None:
    shape = apply_synthesized(Shape.deployed(), stack_counts())
    for rec in (busy, light):
        if rec is not None and (rec.invocations["consumer"] == 0 or not by_role_op(rec).get("api")):
            raise SystemExit("cost: no consumer invocation or no POST /jobs call was attributed; refusing to report.")
    print(
        f"cost: {busy.jobs} jobs in {busy.seconds:.1f} s (busy recording; outcomes {busy.outcomes}); "
        f"API {shape.api_type.upper()}, Lambda {shape.architecture}, tracing {'on' if shape.tracing else 'off'}"
    )
    print("  INIT (handler import, fresh interpreter): " + ", ".join(f"{k} {v:.0f} ms" for k, v in init.items()))
    if busy.errors:
        print(f"  AWS errors (billed, counted): {dict(busy.errors)}")
    print("\nAWS requests per job, by caller (busy recording; api-read = this bench's polling, excluded):")
    for role, ops in sorted(by_role_op(busy).items()):
        if role in ("setup", "api-read"):
            continue
        detail = ", ".join(f"{op} {count / busy.jobs:.2f}" for op, count in ops.most_common())
        print(f"  {role:<15} {detail}")

    results: dict[str, Ledger] = {}
    for mode, rec in (("busy", busy), ("light", light)):
        if rec is None:
            continue
        ledger = price(rec, shape, mode, init)
        results[mode] = ledger
        print(
            f"\n{mode}: $ per million jobs ({rec.jobs} jobs recorded, consumer batches of "
            f"{shape.batch_size if mode == 'busy' else rec.batch_size}, stream batches of "
            f"{STREAM_FULL_BATCH if mode == 'busy' else rec.stream_batch_size})"
        )
        for label, scope, usd in ledger.lines:
            print(ledger_row(label, scope, usd))
        print(f"  {'total':<100} {ledger.total() * 1e6:8.3f}")
    idle = idle_month(busy, shape)
    print("\nidle: $ per month")
    for label, _, usd in idle.lines:
        print(f"  {label:<100} {usd:8.3f}")

    busy_total = results["busy"].total() * 1e6
    light_total = results["light"].total() * 1e6 if "light" in results else float("nan")
    behind = results["busy"].total("api") * 1e6
    idle_total = idle.total()

    # The per-job estimates against the ledger of the same run, as run (its own batch sizes).
    check_rec = light if light is not None else busy
    as_run = price(check_rec, shape, "light", {k: 0.0 for k in init})
    own = (
        sum(
            usd
            for label, scope, usd in as_run.lines
            if scope in ("api", "run")
            and label.startswith(
                (
                    "API Gateway",
                    "Lambda api",
                    "Lambda consumer",
                    "DynamoDB api",
                    "DynamoDB consumer",
                    "SQS api",
                    "SQS consumer",
                    "SQS event-source",
                )
            )
        )
        * check_rec.jobs
    )
    estimated = sum(float(c.get("usd", 0.0)) for c in check_rec.job_costs)
    if check_rec.job_costs:
        ratio = estimated / own if own else float("nan")
        verdict = "PASS" if abs(ratio - 1) <= 0.10 else "FAIL"
        print(
            f"\nper-job check ({len(check_rec.job_costs)} final records' cost, light recording): sum ${estimated:.6f} "
            f"vs ledger ${own:.6f} for the same calls (create + run): {ratio:.3f}x, within 10 %: {verdict}"
        )
    else:
        print("\nper-job check: no final record carried a cost (GET /jobs/{id} returned none): FAIL")

    floors = {mode: floor(results[mode], rec, shape, mode) for mode, rec in (("busy", busy), ("light", light)) if rec}
    report_floor(floors)

    for name, value in (("busy", busy_total), ("light", light_total), ("behind", behind), ("idle", idle_total)):
        print(
            f"  {name:<7} {value:8.2f}  target <= {TARGETS[name]:.2f}: {'PASS' if value <= TARGETS[name] else 'FAIL'}"
        )
    print(
        f"cost: all-in ${busy_total:.2f}/M busy, ${light_total:.2f}/M light; behind the API ${behind:.2f}/M; "
        f"idle ${idle_total:.2f}/month"
    )


def ledger_row(label: str, scope: str, usd: float, mark: str = "") -> str:
    """A ledger line as printed, in $ per million jobs; ``mark`` (a floor's fixed lines) before the label."""
    label = f"{mark} {label}" if mark else label
    return f"  {label:<100} {usd * 1e6:8.3f}  {'(behind the API)' if scope == 'api' else ''}"


def report_floor(floors: dict[str, Ledger]) -> None:
    """Each floor line by line, then what it says of each target: below the fixed lines (no shape reaches it under
    this measure), above the floor (only by cutting duration, storage and logs further), or within reach."""
    for mode, book in floors.items():
        print(f"\n{mode} floor: this run's lines less what a shape keeping every guarantee need not pay (* fixed)")
        for label, scope, usd in book.lines:
            print(ledger_row(label, scope, usd, mark="*" if label in book.fixed else " "))
        print(f"    {'floor (fixed lines)':<98} {book.total() * 1e6:8.3f}  ({book.fixed_total() * 1e6:.3f})")
    figures = {name: (book.total(), book.fixed_total()) for name, book in floors.items()}
    if "busy" in floors:
        figures["behind"] = (floors["busy"].total("api"), floors["busy"].fixed_total("api"))
    print()
    for name, (total, fixed) in figures.items():
        total, fixed, target = total * 1e6, fixed * 1e6, TARGETS[name]
        if fixed > target:
            verdict = f"below the floor: its fixed lines alone are ${fixed:.2f}"
        elif total > target:
            verdict = f"only by cutting duration, storage and logs by ${total - target:.2f} of ${total - fixed:.2f}"
        else:
            verdict = "within the floor's reach"
        print(f"  floor {name:<7} {total:6.2f}  (fixed {fixed:.2f})  target <= {target:.2f}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=150)
    parser.add_argument("--light-jobs", type=int, default=40)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--cap", type=float, default=120, help="stop waiting for final after this many seconds")
    parser.add_argument("--workload", choices=("message", "simulate"), default="message")
    parser.add_argument("--save", type=str, default=str(DEFAULT_RECORDING), help="write the busy recording here")
    parser.add_argument("--load", type=str, help="report from saved recordings instead of running")
    parser.add_argument("--record-light", type=str, help=argparse.SUPPRESS)  # the light run's own interpreter
    args = parser.parse_args()
    light_path = Path(args.load or args.save).with_name("recording-light.json")
    if args.record_light:
        record(args.light_jobs, 1, args.cap, args.workload, batch_size=1, stream_batch_size=1).save(
            Path(args.record_light)
        )
        return
    if args.load:
        busy = Recording.load(Path(args.load))
        light = Recording.load(light_path) if light_path.exists() else None
    else:
        started = time.monotonic()
        busy = record(args.jobs, args.connections, args.cap, args.workload)
        busy.save(Path(args.save))
        # Batches of one in a fresh interpreter (the hooks and wrapped handlers of this one stay installed).
        light_run = [sys.executable, __file__, "--record-light", str(light_path), "--light-jobs", str(args.light_jobs)]
        light_run += ["--workload", args.workload, "--cap", str(args.cap)]
        done = subprocess.run(light_run, check=False, stdout=subprocess.DEVNULL)
        if done.returncode:
            raise SystemExit(f"cost: the light recording failed (exit {done.returncode}); no figures reported")
        light = Recording.load(light_path)
        print(f"(recorded in {time.monotonic() - started:.0f} s)")
    report(busy, light, init_ms())


if __name__ == "__main__":
    main()

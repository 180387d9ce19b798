"""Record every AWS request the local stack makes while it runs N jobs: shared by cost.py and hotkeys.py.

The hooks are botocore events added to ``botocore.handlers.BUILTIN_HANDLERS`` (as moto adds its own stubber), so
every session created afterwards (moto's ``mock_aws`` resets ``boto3.DEFAULT_SESSION`` when it starts) carries them:
``before-parameter-build`` notes the API parameters and the start time, ``after-call`` the response and the time.

Each request is attributed to a role by a thread-local that wrappers around the handlers set: ``api`` (POST /jobs),
``api-read`` (any other route: this bench's own polling, excluded from the per-job figures), ``consumer``,
``sweeper``; outside a handler, a poller thread is the event-source mapping (``esm``), anything else ``setup``.

For DynamoDB it keeps a shadow of every item written (the stored item is read back from moto after each write), so
each write is costed on the larger of the item before and after, and each GSI write is derived from the change of
the index's key and projected attributes, as the table declares them (ALL: the whole item; INCLUDE / KEYS_ONLY: an
update that changes none of the projected attributes writes nothing to the index).
"""

from __future__ import annotations

import inspect
import io
import json
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, fields
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

from _common import API_KEY, BUILD, Http, free_port

KB = 1024
SQS_CHUNK = 64 * KB

# A typical in-region SDK round trip: added for every AWS call when a handler's duration on Lambda is estimated.
ASSUMED_CALL_MS = 8.0


@dataclass
class _Span:
    """The AWS calls made in one invocation, or in one record of a consumer batch (its records may run at once)."""

    aws_ms: float = 0.0
    aws_cpu_ms: float = 0.0
    aws_calls: int = 0


@dataclass
class _RecordSpan(_Span):
    started: float = 0.0
    ended: float = 0.0
    cpu_ms: float = 0.0  # this record's thread's CPU time, AWS calls (moto, in-process here) included


@dataclass
class _Invocation(_Span):
    role: str = ""
    records: list[_RecordSpan] = field(default_factory=list)
    cpu_ms: float = 0.0  # the invoking thread's CPU time, AWS calls included
    # What this invocation's calls and lines cost: write and read units, SQS requests, log bytes.
    wru: float = 0.0
    rru: float = 0.0
    sqs: float = 0.0
    log_bytes: int = 0


# Context variables, not thread-locals: a batch's records run in threads that start from a copy of the invocation's
# context (functions/handlers/concurrent_batch.py), so their calls are the invocation's calls.
_invocation: ContextVar[_Invocation | None] = ContextVar("bench_invocation", default=None)
_record: ContextVar[_RecordSpan | None] = ContextVar("bench_record", default=None)


def estimate_ms(wall_ms: float, inv: _Invocation) -> float:
    """How long the invocation would run on Lambda: its own time here (wall time minus the time inside moto) plus
    ASSUMED_CALL_MS per AWS call. When its records ran at the same time, the records' part is the slowest record's
    estimate plus the CPU time of the others (they share the function's CPU); waiting for the interpreter lock here
    (moto runs in this process) counts as the slowest record's own time, so the estimate errs high."""
    if inv.role == "api":
        # POST /jobs never waits except on AWS: its own time is CPU time. Wall time here would also count the
        # waits for the interpreter lock the consumers and moto hold in this process.
        return inv.cpu_ms - inv.aws_cpu_ms + ASSUMED_CALL_MS * inv.aws_calls
    spans = sorted(inv.records, key=lambda r: r.started)
    overlapping = any(later.started < earlier.ended for earlier, later in pairwise(spans))
    if not overlapping:
        return wall_ms - inv.aws_ms + ASSUMED_CALL_MS * inv.aws_calls
    outside, each, cpu = consumer_split(wall_ms, inv)
    slowest = max(range(len(each)), key=each.__getitem__)
    return outside + each[slowest] + sum(ms for i, ms in enumerate(cpu) if i != slowest)


def consumer_split(wall_ms: float, inv: _Invocation) -> tuple[float, list[float], list[float]]:
    """A consumer invocation's estimate in parts: the time outside its records, and per record its own estimate and
    CPU time (as estimate_ms counts them), so that a batch of another size can be priced from them."""
    spans = sorted(inv.records, key=lambda r: r.started)
    if not spans:
        return wall_ms - inv.aws_ms + ASSUMED_CALL_MS * inv.aws_calls, [], []
    records_wall = (max(r.ended for r in spans) - spans[0].started) * 1000
    outside = (
        wall_ms
        - records_wall
        - (inv.aws_ms - sum(r.aws_ms for r in spans))
        + ASSUMED_CALL_MS * (inv.aws_calls - sum(r.aws_calls for r in spans))
    )
    each = [(r.ended - r.started) * 1000 - r.aws_ms + ASSUMED_CALL_MS * r.aws_calls for r in spans]
    cpu = [max(0.0, r.cpu_ms - r.aws_cpu_ms) for r in spans]
    return max(0.0, outside), each, cpu


def http_role(event: dict[str, Any]) -> str:
    """``api`` for POST /jobs (the enqueue), ``read`` for GET /jobs/{id} (the workload's one status read),
    ``api-read`` for anything else (this bench's own polling, excluded). REST (v1) and HTTP API (v2) events."""
    http = event.get("requestContext", {}).get("http", {})
    method = event.get("httpMethod") or http.get("method")
    path = event.get("path") or event.get("rawPath") or ""
    if (method, path) == ("POST", "/jobs"):
        return "api"
    if method == "GET" and path.startswith("/jobs/") and path.count("/") == 2:
        return "read"
    return "api-read"


class LogSink(io.TextIOBase):
    """Stands in for sys.stdout while the stack runs: counts the bytes each role's handlers write (Powertools'
    log lines and EMF metric lines, which Lambda sends to CloudWatch Logs) and the distinct metrics the EMF lines
    define; keeps nothing else."""

    def __init__(self, rec: Recording, lock: threading.Lock) -> None:
        self._rec, self._lock = rec, lock
        self._metrics: set[str] = set()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        inv = _invocation.get()
        role = inv.role if inv is not None else "setup"
        with self._lock:
            self._rec.log_bytes[role] += len(text.encode())
            if inv is not None:
                inv.log_bytes += len(text.encode())
            if '"_aws"' in text:
                self._emf(text)
        return len(text)

    def _emf(self, text: str) -> None:
        for line in text.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            for directive in doc.get("_aws", {}).get("CloudWatchMetrics", []):
                for dimensions in directive.get("Dimensions", [[]]):
                    values = ",".join(f"{d}={doc.get(d)}" for d in dimensions)
                    for metric in directive.get("Metrics", []):
                        key = f"{directive.get('Namespace')}/{metric.get('Name')}/{values}"
                        if key not in self._metrics:
                            self._metrics.add(key)
                            self._rec.metrics.append(key)


# --- DynamoDB item sizes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)


def value_size(value: dict[str, Any]) -> int:
    (kind, data), *_ = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        digits = data.lstrip("-").replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: item}) for item in data)
    if kind == "L":
        return 3 + sum(1 + value_size(item) for item in data)
    if kind == "M":
        return 3 + sum(len(name.encode()) + 1 + value_size(item) for name, item in data.items())
    return 0


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def wcu(size: int) -> int:
    return max(1, math.ceil(size / KB))


# --- the recording ---


@dataclass
class Write:
    """One item written in DynamoDB (a base-table item, or an index item a base write implies)."""

    role: str
    table: str  # "jobs" or "jobs/by-status" for an index
    pk: str  # the (index) partition key value
    kind: str  # put | update | delete
    size: int  # bytes billed (the larger of before and after for base items)
    units: int  # write request units (x2 in a transaction for base items)
    transactional: bool
    keys_only_units: int = 0  # for index items: what a KEYS_ONLY projection would cost


@dataclass
class Recording:
    jobs: int = 0
    seconds: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)  # "role service Operation"
    errors: Counter[str] = field(default_factory=Counter)  # "role service Operation Code"
    sqs_chunks: Counter[str] = field(default_factory=Counter)  # "role Operation" -> billed 64 KB chunks
    esm_empty_receives: int = 0
    read_units: Counter[str] = field(default_factory=Counter)  # role -> read request units
    writes: list[Write] = field(default_factory=list)
    invocations: Counter[str] = field(default_factory=Counter)  # role -> handler invocations
    handler_ms: Counter[str] = field(default_factory=Counter)  # role -> wall ms inside the handler
    handler_aws_ms: Counter[str] = field(default_factory=Counter)  # role -> ms of that spent in (moto) AWS calls
    handler_aws_calls: Counter[str] = field(default_factory=Counter)  # role -> AWS calls made inside the handler
    estimated_ms: Counter[str] = field(default_factory=Counter)  # role -> estimated Lambda ms (estimate_ms), summed
    records: int = 0  # SQS records handed to the consumer
    stream_records: int = 0  # jobs-table stream records handed to the stats aggregator
    outcomes: dict[str, int] = field(default_factory=dict)
    indexes: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> {index: "hash,range"}
    log_bytes: Counter[str] = field(default_factory=Counter)  # role -> bytes its handlers wrote to stdout (logs, EMF)
    metrics: list[str] = field(default_factory=list)  # the distinct "namespace/name/dimensions" the EMF lines carry
    # The consumer's estimated ms split (for scaling to other batch sizes): outside its records, and per record its
    # own estimate and its CPU time.
    consumer_outside_ms: float = 0.0
    consumer_record_ms: float = 0.0
    consumer_record_cpu_ms: float = 0.0
    job_costs: list[dict[str, Any]] = field(default_factory=list)  # each job's ``cost`` as its final record says
    # Per stats-aggregator invocation: [records, WRU, RRU, SQS requests, estimated ms, log bytes], so that a full
    # batch can be priced from how its cost grows with its records (cost.py fits a + b x records).
    stats_batches: list[list[float]] = field(default_factory=list)
    batch_size: int = 0  # the consumer's batch size in this run
    stream_batch_size: int = 0  # the stats aggregator's batch size in this run

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # asdict() would rebuild each Counter from (key, value) pairs, counting the pairs: convert by hand.
        data = {name: dict(value) if isinstance(value, dict) else value for name, value in vars(self).items()}
        data["writes"] = [asdict(w) for w in self.writes]
        path.write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> Recording:
        data = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        rec = cls(**{k: v for k, v in data.items() if k != "writes" and k in known})
        for name in (
            "calls",
            "errors",
            "sqs_chunks",
            "read_units",
            "invocations",
            "handler_ms",
            "handler_aws_ms",
            "log_bytes",
        ):
            setattr(rec, name, Counter(data.get(name, {})))
        rec.handler_aws_calls = Counter(data["handler_aws_calls"])
        rec.estimated_ms = Counter(data.get("estimated_ms", {}))
        rec.writes = [Write(**w) for w in data["writes"]]
        return rec


class Recorder:
    def __init__(self) -> None:
        self.rec = Recording()
        self._lock = threading.Lock()
        self._shadow: dict[tuple[str, str], dict[str, Any]] = {}
        self._keys: dict[str, tuple[str, str | None]] = {}  # table -> (hash, range)
        self._indexes: dict[str, dict[str, tuple[str, str | None]]] = {}  # table -> index -> (hash, range)
        # table -> index -> the non-key attributes it projects (None: ALL)
        self._projections: dict[str, dict[str, frozenset[str] | None]] = {}
        self._backend: Any = None

    # -- installing --

    def install(self) -> None:
        from botocore.handlers import BUILTIN_HANDLERS

        BUILTIN_HANDLERS.append(("before-parameter-build", self._before))
        BUILTIN_HANDLERS.append(("after-call", self._after))

    def describe_tables(self) -> None:
        """Read the key schemas and GSIs of every table (after the stack created them)."""
        import boto3
        from moto.dynamodb.models import dynamodb_backends

        from local.aws import ACCOUNT_ID, REGION

        self._backend = dynamodb_backends[ACCOUNT_ID][REGION]
        ddb = boto3.client("dynamodb")
        for name in ddb.list_tables()["TableNames"]:
            table = ddb.describe_table(TableName=name)["Table"]
            self._keys[name] = _key_schema(table["KeySchema"])
            self._indexes[name] = {
                g["IndexName"]: _key_schema(g["KeySchema"]) for g in table.get("GlobalSecondaryIndexes", [])
            }
            self._projections[name] = {
                g["IndexName"]: _projected(g["Projection"]) for g in table.get("GlobalSecondaryIndexes", [])
            }
            self.rec.indexes[name] = {i: f"{h},{r}" for i, (h, r) in self._indexes[name].items()}

    def wrap(self, role: str | None, handler: Any) -> Any:
        def wrapped(event: dict[str, Any], context: Any) -> Any:
            name = role or http_role(event)
            inv = _Invocation(role=name)
            token = _invocation.set(inv)
            started, cpu_started = time.perf_counter(), time.thread_time()
            try:
                return handler(event, context)
            finally:
                elapsed = (time.perf_counter() - started) * 1000
                inv.cpu_ms = (time.thread_time() - cpu_started) * 1000
                _invocation.reset(token)
                with self._lock:
                    self.rec.invocations[name] += 1
                    self.rec.handler_ms[name] += elapsed
                    self.rec.handler_aws_ms[name] += inv.aws_ms
                    self.rec.handler_aws_calls[name] += inv.aws_calls
                    estimated = estimate_ms(elapsed, inv)
                    self.rec.estimated_ms[name] += estimated
                    if name == "consumer":
                        self.rec.records += len(event.get("Records", []))
                        outside, each, cpu = consumer_split(elapsed, inv)
                        self.rec.consumer_outside_ms += outside
                        self.rec.consumer_record_ms += sum(each)
                        self.rec.consumer_record_cpu_ms += sum(cpu)
                    if name == "stats":
                        records = len(event.get("Records", []))
                        self.rec.stream_records += records
                        self.rec.stats_batches.append(
                            [records, inv.wru, inv.rru, inv.sqs, estimated, float(inv.log_bytes)]
                        )

        return wrapped

    def wrap_record(self, record_handler: Any) -> Any:
        """Time one record of a consumer batch (Powertools passes ``record`` and ``lambda_context`` by name)."""

        def wrapped(record: Any, lambda_context: Any = None) -> Any:
            span = _RecordSpan(started=time.perf_counter())
            cpu_started = time.thread_time()
            token = _record.set(span)
            try:
                return record_handler(record=record, lambda_context=lambda_context)
            finally:
                _record.reset(token)
                span.ended = time.perf_counter()
                span.cpu_ms = (time.thread_time() - cpu_started) * 1000
                inv = _invocation.get()
                if inv is not None:
                    with self._lock:
                        inv.records.append(span)

        return wrapped

    # -- hooks --

    @staticmethod
    def _role() -> str:
        inv = _invocation.get()
        if inv is not None:
            # The consumer's calls outside its records are per invocation (scaled by batch size, not by jobs).
            return "consumer-batch" if inv.role == "consumer" and _record.get() is None else inv.role
        return "esm" if "poller" in threading.current_thread().name else "setup"

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["bench"] = (time.perf_counter(), time.thread_time(), params)

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], http_response: Any, **_: Any) -> None:
        started, cpu_started, params = context.get("bench", (time.perf_counter(), time.thread_time(), {}))
        elapsed = (time.perf_counter() - started) * 1000
        cpu = (time.thread_time() - cpu_started) * 1000
        role = self._role()
        service, op = model.service_model.service_name, model.name
        for span in (_invocation.get(), _record.get()):
            if span is not None:
                with self._lock:
                    span.aws_ms += elapsed
                    span.aws_cpu_ms += cpu
                    span.aws_calls += 1
        error = parsed.get("Error", {}).get("Code") if http_response.status_code >= 300 else None
        with self._lock:
            totals = (len(self.rec.writes), sum(self.rec.read_units.values()), sum(self.rec.sqs_chunks.values()))
            self._account(role, service, op, params, parsed, error)
            inv = _invocation.get()
            if inv is not None:
                inv.wru += sum(w.units for w in self.rec.writes[totals[0] :])
                inv.rru += sum(self.rec.read_units.values()) - totals[1]
                inv.sqs += sum(self.rec.sqs_chunks.values()) - totals[2]

    def _account(
        self, role: str, service: str, op: str, params: dict[str, Any], parsed: dict[str, Any], error: str | None
    ) -> None:
        """Count one call (the lock held)."""
        self.rec.calls[f"{role} {service} {op}"] += 1
        if error:
            self.rec.errors[f"{role} {service} {op} {error}"] += 1
        if service == "sqs":
            self._sqs(role, op, params, parsed)
        elif service == "dynamodb":
            writes, reads = len(self.rec.writes), dict(self.rec.read_units)
            self._dynamodb(role, op, params, parsed, failed=error is not None)
            if not error:
                # moto's ConsumedCapacity is a constant; the functions' own cost meters read what AWS would
                # return: the units just derived from the items' sizes and the indexes they enter.
                wru = sum(w.units for w in self.rec.writes[writes:])
                rru = self.rec.read_units[role] - reads.get(role, 0)
                parsed["ConsumedCapacity"] = {
                    "TableName": params.get("TableName", ""),
                    "CapacityUnits": wru + rru,
                    "WriteCapacityUnits": wru,
                    "ReadCapacityUnits": rru,
                }
                if op in ("TransactWriteItems", "BatchWriteItem", "BatchGetItem", "TransactGetItems"):
                    parsed["ConsumedCapacity"] = [parsed["ConsumedCapacity"]]

    # -- SQS: requests are billed per 64 KB chunk of payload --

    def _sqs(self, role: str, op: str, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        if op == "ReceiveMessage":
            messages = parsed.get("Messages", [])
            if role == "esm" and not messages:
                self.rec.esm_empty_receives += 1  # Lambda's pollers' empty receives are not billed to you
                return
            size = sum(len(m.get("Body", "")) + _attributes_size(m.get("MessageAttributes")) for m in messages)
        elif op in ("SendMessage",):
            size = len(params.get("MessageBody", "")) + _attributes_size(params.get("MessageAttributes"))
        elif op == "SendMessageBatch":
            size = sum(len(e.get("MessageBody", "")) for e in params.get("Entries", []))
        else:
            size = 0
        self.rec.sqs_chunks[f"{role} {op}"] += max(1, math.ceil(size / SQS_CHUNK))

    # -- DynamoDB --

    def _dynamodb(self, role: str, op: str, params: dict[str, Any], parsed: dict[str, Any], failed: bool) -> None:
        if op == "TransactWriteItems":
            for entry in params.get("TransactItems", []):
                (kind, body), *_ = entry.items()
                if kind != "ConditionCheck":
                    self._write(role, kind.lower(), body, transactional=True, failed=failed)
                else:
                    self.rec.read_units[role] += 2  # a condition check costs like a transactional read
        elif op in ("PutItem", "UpdateItem", "DeleteItem"):
            self._write(role, op[:-4].lower(), params, transactional=False, failed=failed)
        elif op == "BatchWriteItem":
            for table, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        self._write(role, "put", {"TableName": table, **request["PutRequest"]}, False, failed)
                    else:
                        self._write(role, "delete", {"TableName": table, **request["DeleteRequest"]}, False, failed)
        elif op == "GetItem":
            factor = 1.0 if params.get("ConsistentRead") else 0.5
            self.rec.read_units[role] += factor * max(1, math.ceil(item_size(parsed.get("Item")) / (4 * KB)))
        elif op == "BatchGetItem":
            for table, items in parsed.get("Responses", {}).items():
                factor = 1.0 if params["RequestItems"].get(table, {}).get("ConsistentRead") else 0.5
                for item in items:
                    self.rec.read_units[role] += factor * max(1, math.ceil(item_size(item) / (4 * KB)))
        elif op in ("Query", "Scan"):
            factor = 1.0 if params.get("ConsistentRead") else 0.5
            size = sum(item_size(item) for item in parsed.get("Items", []))
            self.rec.read_units[role] += factor * max(1, math.ceil(size / (4 * KB)))

    def _write(self, role: str, kind: str, body: dict[str, Any], transactional: bool, failed: bool) -> None:
        table = body["TableName"]
        hash_attr, range_attr = self._keys.get(table, ("pk", None))
        key = body.get("Key") or {
            name: body["Item"][name] for name in (hash_attr, range_attr) if name and name in body["Item"]
        }
        pk_value = _scalar(key.get(hash_attr))
        shadow_key = (table, json.dumps(key, sort_keys=True))
        before = self._shadow.get(shadow_key)
        if failed:
            after = before
        elif kind == "put":
            after = body["Item"]
        elif kind == "delete":
            after = None
        else:
            after = self._stored(table, key)
        size = max(item_size(before), item_size(after))
        # A failed conditional write is still billed (at least 1 unit); in a transaction, 2 per KB.
        self.rec.writes.append(
            Write(role, table, pk_value, kind, size, wcu(size) * (2 if transactional else 1), transactional)
        )
        if failed:
            return
        if after is None:
            self._shadow.pop(shadow_key, None)
        else:
            self._shadow[shadow_key] = after
        for index, (ih, ir) in self._indexes.get(table, {}).items():
            projection = self._projections.get(table, {}).get(index)
            self._index_writes(role, f"{table}/{index}", (ih, ir), (hash_attr, range_attr), projection, before, after)

    def _index_writes(
        self,
        role: str,
        name: str,
        index_keys: tuple[str, str | None],
        base_keys: tuple[str, str | None],
        projection: frozenset[str] | None,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        attrs = [a for a in index_keys if a]
        key_names = {a for a in (*index_keys, *base_keys) if a}

        def projected(item: dict[str, Any]) -> dict[str, Any]:
            if projection is None:
                return item
            return {n: v for n, v in item.items() if n in key_names or n in projection}

        def keyed(item: dict[str, Any] | None) -> bool:
            return item is not None and all(a in item for a in attrs)

        def keys_only(item: dict[str, Any]) -> int:
            names = {a for a in (*index_keys, *base_keys) if a}
            return wcu(item_size({n: item[n] for n in names if n in item}))

        def emit(kind: str, item: dict[str, Any]) -> None:
            size = item_size(projected(item))  # ALL: the whole item (its keys are in it already)
            # KEYS_ONLY: an update that leaves the index's keys alone changes nothing projected, so costs nothing.
            keys_only_units = 0 if kind == "update" else keys_only(item)
            self.rec.writes.append(
                Write(role, name, _scalar(item[index_keys[0]]), kind, size, wcu(size), False, keys_only_units)
            )

        old, new = keyed(before), keyed(after)
        if new and not old:
            emit("put", after)  # type: ignore[arg-type]
        elif old and not new:
            emit("delete", before)  # type: ignore[arg-type]
        elif old and new:
            assert before is not None and after is not None
            if any(before[a] != after[a] for a in attrs):
                emit("delete", before)
                emit("put", after)
            elif projected(before) != projected(after):
                emit("update", after if item_size(projected(after)) >= item_size(projected(before)) else before)

    def _stored(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            item = self._backend.get_item(table, key)
        except Exception:  # noqa: BLE001 - a size estimate only
            return None
        return item.to_json()["Attributes"] if item is not None else None


def _projected(projection: dict[str, Any]) -> frozenset[str] | None:
    """The non-key attributes an index projects; None for ALL."""
    if projection.get("ProjectionType", "ALL") == "ALL":
        return None
    return frozenset(projection.get("NonKeyAttributes", []))


def _key_schema(schema: list[dict[str, str]]) -> tuple[str, str | None]:
    hash_attr = next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")
    range_attr = next((k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"), None)
    return hash_attr, range_attr


def _scalar(value: dict[str, Any] | None) -> str:
    if not value:
        return "?"
    return str(next(iter(value.values())))


def _attributes_size(attributes: dict[str, Any] | None) -> int:
    total = 0
    for name, value in (attributes or {}).items():
        total += len(name) + len(value.get("DataType", "")) + len(value.get("StringValue", "") or "")
    return total


# --- running N jobs through the in-process local stack ---


def simulate_body(i: int) -> dict[str, Any]:
    return {
        "type": "simulate",
        "payload": {
            "action": "resize" if i % 2 else "fetch",
            "target": f"https://example.com/img-{i}.png",
            "durationMs": 50,
            "failureRate": 0.35,
        },
        "maxAttempts": 3,
    }


def message_body(i: int) -> dict[str, Any]:
    """The standard workload's job: a ``message`` job (it runs once)."""
    return {"type": "message", "payload": {"message": f"hello {i}"}}


WORKLOADS = {"message": message_body, "simulate": simulate_body}


def record(
    jobs: int,
    connections: int = 4,
    cap_s: float = 240.0,
    workload: str = "message",
    batch_size: int | None = None,
    stream_batch_size: int | None = None,
    read_each: bool = True,
) -> Recording:
    """Start ``local.stack.LocalStack`` in this process (no moto server), run ``jobs`` jobs of ``workload`` over HTTP,
    wait until every one is final (or ``cap_s``), read each once (``GET /jobs/{id}``: the standard workload's status
    read), stop, and return the recording. ``batch_size``/``stream_batch_size``: the consumer's and the stats
    aggregator's batch sizes (default: as deployed)."""
    import os
    from dataclasses import replace

    # The deployed default log level: the log bytes counted are what Lambda would send to CloudWatch Logs.
    os.environ["LOG_LEVEL"] = "INFO"
    # The shard counts deployed on AWS, not the local stack's few: the hot-key figures are about those.
    os.environ["JOBS_LOCAL_AWS_SHARDS"] = "1"
    from infra.config import AWS_CONFIG, local_config

    # And the consumer's records at once, as on AWS (the local stack runs them in turn).
    os.environ["JOBS_LOCAL_RECORD_CONCURRENCY"] = str(AWS_CONFIG.consumer.record_concurrency)
    # What LocalStack._configure_functions sets, set before the handlers are imported here to be wrapped.

    config = local_config()
    config = replace(
        config,
        consumer=replace(config.consumer, batch_size=batch_size or AWS_CONFIG.consumer.batch_size),
        stats_stream=replace(config.stats_stream, batch_size=stream_batch_size or AWS_CONFIG.stats_stream.batch_size),
    )
    os.environ.update(
        {
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_SERVICE_NAME": config.service_name,
            "POWERTOOLS_METRICS_NAMESPACE": config.metrics_namespace,
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    recorder = Recorder()
    recorder.rec.batch_size = config.consumer.batch_size
    recorder.rec.stream_batch_size = config.stats_stream.batch_size
    recorder.install()
    import sys

    sink = LogSink(recorder.rec, recorder._lock)
    real_stdout, sys.stdout = sys.stdout, sink  # before the handlers' loggers bind their stream

    from functions.handlers import api, consumer, stats_stream, sweeper
    from local import stack as stack_module
    from local.aws import parse_api_keys
    from local.stack import DEFAULT_API_KEYS, LocalStack

    api.handler = recorder.wrap(None, api.handler)
    consumer.handler = recorder.wrap("consumer", consumer.handler)
    consumer.record_handler = recorder.wrap_record(consumer.record_handler)
    sweeper.handler = recorder.wrap("sweeper", sweeper.handler)
    stats_stream.handler = recorder.wrap("stats", stats_stream.handler)
    try:  # an API with a Lambda authorizer: its invocations (one per key per cache TTL) are the enqueue path's
        from functions.handlers import authorizer  # type: ignore[attr-defined,unused-ignore]

        authorizer.handler = recorder.wrap("authorizer", authorizer.handler)
    except ImportError:
        pass
    # The local stack gives each concurrent invocation its own copy of a handler module (jobsctl/environments.py),
    # so the copies it loads must be wrapped too, or their calls would be attributed to the pollers.
    roles = {"functions.handlers.api": None, "functions.handlers.consumer": "consumer"}
    load_copy = stack_module.fresh_handler

    def recorded_copy(module: str, attribute: str = "handler") -> Any:
        handler = load_copy(module, attribute)
        module_globals = inspect.unwrap(handler).__globals__  # the copy's own module namespace
        if "record_handler" in module_globals:
            module_globals["record_handler"] = recorder.wrap_record(module_globals["record_handler"])
        return recorder.wrap(roles[module], handler)

    stack_module.fresh_handler = recorded_copy  # type: ignore[assignment]

    stack = LocalStack(config=config, port=free_port(), moto_port=None, api_keys=parse_api_keys(DEFAULT_API_KEYS))
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    try:
        stack.start()
        # The local stack turns Powertools' metrics off (no CloudWatch here); on Lambda they are EMF log lines.
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"
        try:
            recorder.describe_tables()
            port = stack._gateway.port
            client = Http(port, {"x-api-key": API_KEY})
            started = time.perf_counter()
            ids = _enqueue(port, jobs, connections, WORKLOADS[workload])
            stats: dict[str, Any] = {}
            while time.perf_counter() - started < cap_s:
                _, stats = client.request("GET", "/stats")
                if stats.get("completed", 0) + stats.get("failed", 0) >= jobs:
                    break
                time.sleep(0.25)
            recorder.rec.seconds = time.perf_counter() - started
            recorder.rec.outcomes = {k: v for k, v in stats.items() if isinstance(v, int) and v}
            if read_each:
                recorder.rec.job_costs = _read_each(port, ids, connections)
            time.sleep(1.5)  # the last stream records reach the stats aggregator
            client.close()
        finally:
            stack.stop()
    finally:
        sys.stdout = real_stdout
    recorder.rec.jobs = jobs
    return recorder.rec


def _enqueue(port: int, jobs: int, connections: int, body: Any) -> list[str]:
    """POST /jobs ``jobs`` times; returns the new jobs' ids."""

    def create(client: Http, i: int) -> str | None:
        status, created = client.request("POST", "/jobs", body(i))
        ok = status in (200, 201, 202) and isinstance(created, dict) and "id" in created
        return str(created["id"]) if ok else None

    return _each_over_connections(port, range(jobs), connections, create)


def _read_each(port: int, ids: list[str], connections: int) -> list[dict[str, Any]]:
    """GET /jobs/{id} once per job (the workload's status read); returns each final job's ``cost``."""

    def cost(client: Http, job_id: str) -> dict[str, Any] | None:
        status, job = client.request("GET", f"/jobs/{job_id}")
        ok = status == 200 and isinstance(job, dict) and isinstance(job.get("cost"), dict)
        return job["cost"] if ok else None

    return _each_over_connections(port, ids, connections, cost)


T = TypeVar("T")
R = TypeVar("R")


def _each_over_connections(
    port: int, items: Iterable[T], connections: int, call: Callable[[Http, T], R | None]
) -> list[R]:
    """``call(client, item)`` for every item, on ``connections`` keep-alive connections at once; what the calls
    returned, Nones left out."""
    lock = threading.Lock()
    cursor = iter(items)
    results: list[R] = []

    def worker() -> None:
        client = Http(port, {"x-api-key": API_KEY})
        while True:
            with lock:
                try:
                    item = next(cursor)
                except StopIteration:
                    break
            result = call(client, item)
            if result is not None:
                with lock:
                    results.append(result)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


DEFAULT_RECORDING = BUILD / "recording.json"


def by_role_op(rec: Recording) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for key, count in rec.calls.items():
        role, service, op = key.split(" ")
        out[role][f"{service}:{op}"] += count
    return out

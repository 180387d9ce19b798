"""What each job cost on AWS, from its own measured calls and time, at the prices the cost bench uses.

The API measures its calls while it creates a job (``functions.dal.metering``) and stores them on the record it
writes, the create write itself priced by DynamoDB's rule from the record's size and the index entries it carries
(it is measured only after it happened); the consumer adds its own calls and time at the final transition, in that
same write. A record's ``cost`` counts: the gateway request, the Lambda invocations (a consumer record as if alone in
its batch, with the event-source mapping's receive and delete) and their milliseconds at the function's memory,
the SQS requests and the DynamoDB units. Not in it: the status reads that come later, the stats aggregator, logs,
storage (bench/cost.py prices those). ``GET /stats/cost`` sums the records' costs by type per minute: the stats
aggregator adds each final record's cost into the minute's throughput item (``count_cost``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from functions.dal import metering
from functions.dal.jobs_repository import minute_key
from functions.dal.jobs_repository.items import ItemLayout, index_attributes
from functions.dal.jobs_repository.keys import INDEX_KEYS
from functions.dal.metering import Meter
from functions.logic.clock import iso
from functions.logic.queries import int_query
from functions.models import prices
from functions.models.bounds import COST_MINUTES_DEFAULT, COST_MINUTES_MAX, COST_MINUTES_MIN
from functions.models.job import Job, JobCost

KB = 1024
# A record's size besides its payload, result and history, about this many bytes (keys, timestamps, counters).
RECORD_OVERHEAD_BYTES = 400


@dataclass(frozen=True)
class LambdaShape:
    memory_mb: int
    architecture: str
    api_gateway_type: str = "rest"

    @classmethod
    def current(cls, meter: Meter | None = None) -> LambdaShape:
        """The running function's memory and architecture, and the gateway type the metered request came through."""
        gateway = meter.gateway_type if meter is not None else "rest"
        return cls(metering.function_memory_mb(), metering.architecture(), gateway)


def price(
    write_units: float,
    read_units: float,
    lambda_ms: float,
    memory_mb: int,
    architecture: str,
    *,
    gateway_requests: float = 0.0,
    gateway_type: str = "rest",
    invocations: float = 0.0,
    sqs_requests: float = 0.0,
) -> float:
    """US dollars for the given usage at list prices (functions/models/prices.py)."""
    return (
        gateway_requests * prices.apigw_request(gateway_type)
        + prices.lambda_usd(math.ceil(lambda_ms), memory_mb, architecture, invocations)
        + sqs_requests * prices.SQS_REQUEST
        + write_units * prices.DDB_WRITE_UNIT
        + read_units * prices.DDB_READ_UNIT
    )


def record_write_units(job: Job, transactional: bool, index_entries: int) -> float:
    """DynamoDB's rule for writing ``job``'s record: a unit per KB (x2 in a transaction), one per index entry."""
    size = RECORD_OVERHEAD_BYTES + len(job.model_dump_json(include={"payload", "result", "history", "error"}))
    return math.ceil(size / KB) * (2 if transactional else 1) + index_entries


def add(cost: JobCost | None, extra: JobCost) -> JobCost:
    if cost is None:
        return extra
    return JobCost(
        usd=round(cost.usd + extra.usd, 10),
        requests=round(cost.requests + extra.requests, 3),
        write_units=round(cost.write_units + extra.write_units, 3),
        read_units=round(cost.read_units + extra.read_units, 3),
        lambda_ms=round(cost.lambda_ms + extra.lambda_ms, 1),
    )


def _part(
    meter: Meter,
    shape: LambdaShape,
    write_units: float,
    extra_requests: float,
    sqs: float,
    gateway: float,
    invocations: float,
) -> JobCost:
    """The meter's count plus what it cannot see: ``write_units`` and ``extra_requests`` (the write carrying the
    cost, a send after it, the event-source mapping's), ``sqs`` of them SQS requests, the gateway, the invocation."""
    ms = meter.elapsed_ms()
    usd = price(
        meter.write_units + write_units,
        meter.read_units,
        ms,
        shape.memory_mb,
        shape.architecture,
        gateway_requests=gateway,
        gateway_type=shape.api_gateway_type,
        invocations=invocations,
        sqs_requests=sqs,
    )
    return JobCost(
        usd=round(usd, 10),
        requests=round(meter.requests + extra_requests + gateway + invocations, 3),
        write_units=round(meter.write_units + write_units, 3),
        read_units=round(meter.read_units, 3),
        lambda_ms=round(ms, 1),
    )


def at_create(
    job: Job, meter: Meter | None, shape: LambdaShape, index_entries: int, transactional: bool, sends: bool
) -> Job:
    """``job`` with the API's part of its cost: the gateway request, the invocation and its time so far, the calls
    counted so far, the create write and, when it is sent now, the send."""
    if meter is None:
        return job
    create = record_write_units(job, transactional, index_entries)
    sqs = meter.sqs_requests + (1.0 if sends else 0.0)
    part = _part(meter, shape, create, 2.0 if sends else 1.0, sqs, 1.0, 1.0)
    return job.model_copy(update={"cost": add(job.cost, part)})


def at_final(before: Job, after: Job, meter: Meter | None, shape: LambdaShape, index_entries: int) -> Job:
    """``after`` (a final record) with the consumer's part added: its invocation, the event-source mapping's
    receive and delete, the calls counted while it ran this record, and this final write."""
    if meter is None:
        return after
    final = record_write_units(after, True, index_entries)
    esm = 2.0
    part = _part(meter, shape, final, 1.0 + esm, meter.sqs_requests + esm, 0.0, 1.0)
    return after.model_copy(update={"cost": add(before.cost, part)})


# --- the per-minute sums the stats aggregator keeps (in the minute's throughput items) ---

COST_FIELDS = ("jobs", "usd", "requests", "writeUnits", "readUnits", "lambdaMs")
# Stored as integers (DynamoDB ADD of exact integers): these many of each per unit.
_SCALE = {"jobs": 1, "usd": 1_000_000_000_000, "requests": 1000, "writeUnits": 1000, "readUnits": 1000, "lambdaMs": 10}
_PREFIX = "cost#"


def counter_name(job_type: str, name: str) -> str:
    return f"{_PREFIX}{job_type}#{name}"


def count_cost(
    minute: dict[str, int], job_type: str, cost: dict[str, Any] | None, before: dict[str, Any] | None = None
) -> None:
    """Add one final job's cost into a minute's counters (``cost#<type>#<field>``, integers). A retried job's
    record carries its earlier runs' cost too (``before``, counted when they ended): only the new part is added."""
    if not cost:
        return
    earlier = before or {}
    values = {
        "jobs": 1,
        **{name: float(cost.get(name, 0)) - float(earlier.get(name, 0)) for name in COST_FIELDS if name != "jobs"},
    }
    for name, value in values.items():
        key = counter_name(job_type, name)
        minute[key] = minute.get(key, 0) + round(float(value) * _SCALE[name])


def sums_by_type(items: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per type, the sums of the cost counters found in stats items (DynamoDB attribute-value shape)."""
    totals: dict[str, dict[str, float]] = {}
    for item in items:
        for attribute, value in item.items():
            if not attribute.startswith(_PREFIX):
                continue
            job_type, name = attribute[len(_PREFIX) :].rsplit("#", 1)
            if name not in _SCALE:
                continue
            sums = totals.setdefault(job_type, dict.fromkeys(COST_FIELDS, 0.0))
            sums[name] += int(value["N"]) / _SCALE[name]
    return {job_type: _rounded(sums) for job_type, sums in sorted(totals.items())}


def total(types: dict[str, dict[str, float]]) -> dict[str, float]:
    sums = dict.fromkeys(COST_FIELDS, 0.0)
    for values in types.values():
        for name in COST_FIELDS:
            sums[name] += values[name]
    return _rounded(sums)


def _rounded(sums: dict[str, float]) -> dict[str, float]:
    return {
        "jobs": int(sums["jobs"]),
        "usd": round(sums["usd"], 12),
        "requests": round(sums["requests"], 3),
        "writeUnits": round(sums["writeUnits"], 3),
        "readUnits": round(sums["readUnits"], 3),
        "lambdaMs": round(sums["lambdaMs"], 1),
    }


# Every index of the jobs table by its key attributes: the listing indexes and the sweeper's (sparse) one.
_INDEXES = (*INDEX_KEYS.values(), ("sweepShard", "sweepAt"))
# Whether a record has an entry, and whether its key moved, does not depend on the shard counts.
_LAYOUT = ItemLayout(listing_shards=1, sweep_shards=1)


def _index_keys(job: Job) -> dict[tuple[str, str], tuple[str, str] | None]:
    keys = index_attributes(job, _LAYOUT)
    return {
        (partition, sort): (keys[partition], keys[sort]) if partition in keys and sort in keys else None
        for partition, sort in _INDEXES
    }


def index_entry_writes(before: Job | None, after: Job) -> int:
    """DynamoDB's rule for the index entries a write of ``after`` over ``before`` writes: one for an entry added or
    removed, two for one whose key moved (a delete and a put), none for one that stays (the indexes project only
    the type, which never changes)."""
    old = _index_keys(before) if before is not None else {}
    units = 0
    for index, key in _index_keys(after).items():
        previous = old.get(index)
        if key != previous:
            units += (key is not None) + (previous is not None)
    return units


def create_index_entries(job: Job) -> int:
    """The index entries a new record carries."""
    return index_entry_writes(None, job)


def final_index_entries(before: Job, after: Job) -> int:
    """The index entries the final write adds, removes or moves (the status entry, the sweep mark)."""
    return index_entry_writes(before, after)


def record_create(job: Job, transactional: bool, sends: bool) -> Job:
    """``at_create`` with the running function's meter and shape (unchanged outside a metered request)."""
    meter = metering.current()
    return at_create(job, meter, LambdaShape.current(meter), create_index_entries(job), transactional, sends)


def record_final(before: Job, after: Job) -> Job:
    """``at_final`` with the running function's meter and shape (unchanged outside a metered record)."""
    meter = metering.current()
    return at_final(before, after, meter, LambdaShape.current(meter), final_index_entries(before, after))


class CostStore(Protocol):
    def minute_items(self, tenant: str, minutes: list[str]) -> list[dict[str, Any]]: ...


def cost_report(store: CostStore, tenant: str, query: dict[str, str], now_ms: int) -> dict[str, Any]:
    """``GET /stats/cost``: the tenant's final jobs' costs over the last ``minutes`` (1-1440, default 60), by type."""
    minutes = int_query(query, "minutes", COST_MINUTES_DEFAULT, COST_MINUTES_MIN, COST_MINUTES_MAX)
    current = now_ms - now_ms % 60_000
    keys = [minute_key(iso(current - 60_000 * back)) for back in range(minutes - 1, -1, -1)]
    types = sums_by_type(store.minute_items(tenant, keys))
    return {"minutes": minutes, "since": keys[0], "types": types, "total": total(types)}

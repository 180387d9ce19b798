"""Job records and per-tenant counters in DynamoDB, behind the ``JobsRepository`` protocol.

The modules, one concern each: ``interface`` (the protocol, its value types, ``InvalidCursor``), ``keys`` (the
table's key and index layout), ``items`` (a job as an item and back), ``records`` (create, read, conditional
write, progress), ``idempotency`` (claims), ``listing`` (sharded listing and cursors), ``stats`` (counter reads),
``stream`` (the stats aggregator's side: stream records, counter writes applied once), ``dynamo`` (the concrete
class). The names below are the package's public ones; import them from here.
"""

from functions.dal.jobs_repository.dynamo import DynamoJobsRepository
from functions.dal.jobs_repository.interface import Claim, IdempotencyClaim, InvalidCursor, JobPage, JobsRepository
from functions.dal.jobs_repository.keys import (
    INDEX_BY_STATUS,
    INDEX_BY_SWEEP,
    INDEX_BY_TENANT,
    LISTING_INDEX_ATTRIBUTES,
    batch_key,
    idempotency_key_item,
    key_shard,
    record_key,
    status_partition,
    sweep_shard,
)
from functions.dal.jobs_repository.stats import (
    ENQUEUED_COUNTER,
    STATUS_COUNTERS,
    THROUGHPUT_COUNTERS,
    THROUGHPUT_RETENTION_SECONDS,
    THROUGHPUT_STATUSES,
    minute_key,
)
from functions.dal.jobs_repository.stream import (
    StatsItem,
    StatusChange,
    StreamDeltas,
    stream_change,
    stream_sequence,
    stream_slot,
)

__all__ = [
    "ENQUEUED_COUNTER",
    "INDEX_BY_STATUS",
    "INDEX_BY_SWEEP",
    "INDEX_BY_TENANT",
    "LISTING_INDEX_ATTRIBUTES",
    "STATUS_COUNTERS",
    "THROUGHPUT_COUNTERS",
    "THROUGHPUT_RETENTION_SECONDS",
    "THROUGHPUT_STATUSES",
    "Claim",
    "DynamoJobsRepository",
    "IdempotencyClaim",
    "InvalidCursor",
    "JobPage",
    "JobsRepository",
    "StatsItem",
    "StatusChange",
    "StreamDeltas",
    "batch_key",
    "idempotency_key_item",
    "key_shard",
    "minute_key",
    "record_key",
    "status_partition",
    "stream_change",
    "stream_sequence",
    "stream_slot",
    "sweep_shard",
]

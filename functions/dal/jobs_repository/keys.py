"""The jobs table's key layout: record keys, the listing and sweep indexes, and the shard of a job id.

No partition key takes a tenant's whole traffic (DynamoDB allows 1,000 writes/s per key): every index key carries a
shard of the job id (``listing_shards``, ``sweep_shards``). Shard counts may grow on a live table (the old shards
stay in range), never shrink. infra/constructs/tables.py declares the same indexes (a test keeps the two in step).
"""

from __future__ import annotations

import hashlib

from functions.models.job import JobStatus

INDEX_BY_TENANT = "by-tenant"
INDEX_BY_STATUS = "by-status"
INDEX_BY_SWEEP = "by-sweep"

# The non-key attributes the listing indexes project: what their queries filter on. The type never changes, so a
# job's updates that keep its index keys (attempts, progress, results, expiry...) cost these indexes no write.
LISTING_INDEX_ATTRIBUTES = ("type",)

# index name -> (partition key attribute, sort key attribute)
INDEX_KEYS = {
    INDEX_BY_TENANT: ("tenantKey", "createdKey"),
    INDEX_BY_STATUS: ("tenantStatus", "createdKey"),
}


# Which statuses the by-status index lists: the final ones other than ``completed``. A job enters it once, when it
# ends failed or cancelled (one write unit; no entry to delete before), and never leaves it. The others are listed
# by walking the by-tenant index newest first and keeping the records in that status, examining at most
# ``listing_read_budget`` entries a page (a page may come back short, with a cursor): the unfinished statuses
# (scheduled, pending, processing, retrying, waiting and any added later), few and recent beside a tenant's
# history, and ``completed``, which most of a tenant's jobs end in, so the walk finds them about as densely as an
# index would, and the index entry (a write unit on every job that succeeds, and its storage) is saved. An index
# pays for itself only for the statuses that are sparse in a tenant's history. So creating, claiming, retrying,
# scheduling and completing a job write no status entry at all.
INDEXED_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


def status_partition(status: JobStatus) -> str | None:
    """The job's partition of the by-status index, or None when a job in ``status`` has no entry there."""
    return status.value if status in INDEXED_STATUSES else None


def record_key(tenant: str, job_id: str) -> str:
    return f"{tenant}#{job_id}"


def batch_key(tenant: str, batch_id: str) -> str:
    # Batches live in the jobs table beside their children (no index attributes, so no index holds them).
    return f"{tenant}#batch#{batch_id}"


def idempotency_key_item(tenant: str, key: str) -> str:
    # Hashed: a caller's key may be long or hold characters we would rather not have in a key.
    return f"{tenant}#idem#{hashlib.sha256(key.encode()).hexdigest()}"


def id_hash(job_id: str) -> int:
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16)


def key_shard(job_id: str, shards: int) -> int:
    """A job's shard among ``shards``: stable (a hash of its id), so its index keys never move between writes."""
    return id_hash(job_id) % shards


def sweep_shard(job_id: str, shards: int) -> str:
    return str(key_shard(job_id, shards))

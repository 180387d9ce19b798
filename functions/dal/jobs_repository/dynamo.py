"""``DynamoJobsRepository``: the ``JobsRepository`` on DynamoDB, one part per concern of the two tables."""

from __future__ import annotations

from typing import Any

from functions.dal.jobs_repository.listing import Listing
from functions.dal.jobs_repository.records import Records
from functions.dal.jobs_repository.stats import Counters
from functions.dal.jobs_repository.stream import StatsStream
from functions.settings import Settings


class DynamoJobsRepository(Records, Listing, Counters, StatsStream):
    """Records and idempotency claims (records.py, idempotency.py), listings (listing.py), the counters' reads
    (stats.py) and the stats aggregator's writes (stream.py), over the tables and mapping they share (table.py,
    items.py)."""

    @classmethod
    def from_settings(cls, client: Any, settings: Settings) -> DynamoJobsRepository:
        """The repository over the tables, shard counts and retention of ``settings``."""
        return cls(
            client,
            jobs_table=settings.jobs_table,
            stats_table=settings.stats_table,
            stats_shards=settings.stats_shards,
            sweep_shards=settings.sweep_shards,
            listing_shards=settings.listing_shards,
            throughput_shards=settings.throughput_shards,
            retention_seconds=settings.job_retention_days * 86_400,
        )

"""The DynamoDB tables: job records (with the indexes the API and the sweeper query), per-tenant counters, the
items the ``batch-import`` job writes, and the shared state of per-type limits."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from functions.dal.jobs_repository import LISTING_INDEX_ATTRIBUTES

# Index names and keys; functions/dal/jobs_repository/ (keys.py) queries these (a test keeps the two in step).
INDEX_BY_TENANT = "by-tenant"
INDEX_BY_STATUS = "by-status"
INDEX_BY_SWEEP = "by-sweep"
# The listing keys' values end in the job's shard ("<tenant>#<status>#<shard>", see dal/jobs_repository/keys.py).
JOBS_INDEXES: dict[str, tuple[str, str]] = {
    INDEX_BY_TENANT: ("tenantKey", "createdKey"),
    INDEX_BY_STATUS: ("tenantStatus", "createdKey"),
    # Sparse: only jobs the sweeper must look at again (scheduled, or pending without a sent message) carry it.
    INDEX_BY_SWEEP: ("sweepShard", "sweepAt"),
}
# The API lists a tenant's jobs through these; the sweeper uses INDEX_BY_SWEEP only.
API_INDEXES = (INDEX_BY_TENANT, INDEX_BY_STATUS)
TTL_ATTRIBUTE = "expiresAt"


def _string(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class JobsTables(Construct):
    """Physical names are left to CloudFormation (several stacks can share an account); functions get them via env."""

    def __init__(self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy = RemovalPolicy.RETAIN):
        super().__init__(scope, construct_id)
        # The stream feeds the stats aggregator (infra/constructs/stats_stream.py): every status change, with the
        # record before and after it, becomes a counter delta there instead of a write in the job's transaction.
        self.jobs = self._table(
            "Jobs",
            removal_policy,
            time_to_live_attribute=TTL_ATTRIBUTE,
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
        )
        for index_name, (partition, sort) in JOBS_INDEXES.items():
            listing = index_name in API_INDEXES
            self.jobs.add_global_secondary_index(
                index_name=index_name,
                partition_key=_string(partition),
                sort_key=_string(sort),
                # Listing: keys and the filtered attributes, so a running job's updates don't rewrite the index (the
                # API reads the page's records by key). Sweep: keys only, for the same reason (an in-flight job keeps
                # its mark: a claim, progress or a retry would otherwise rewrite its entry); the sweeper reads the
                # due records by key.
                projection_type=dynamodb.ProjectionType.INCLUDE if listing else dynamodb.ProjectionType.KEYS_ONLY,
                non_key_attributes=list(LISTING_INDEX_ATTRIBUTES) if listing else None,
            )
        # Status counters never expire; the per-minute throughput items carry ``expiresAt``.
        self.stats = self._table("Stats", removal_policy, time_to_live_attribute="expiresAt")
        # batch-import: pk "<tenant>#<namespace>", sk the item's id, so a re-run overwrites instead of duplicating.
        self.imports = self._table("Imports", removal_policy, sort_key=_string("sk"))
        # Per-type rate windows and concurrency slots (functions/dal/limits.py), shared by every consumer; each item
        # expires by itself shortly after its window or lease.
        self.limits = self._table("Limits", removal_policy, time_to_live_attribute=TTL_ATTRIBUTE)
        # Tenant API keys, hashed (functions/dal/keys.py): read by the API's authorizer, written by `jobs keys`.
        self.keys = self._table("Keys", removal_policy)
        # Job dependencies (functions/dal/dependencies.py): pk "<tenant>#<dependency>#<shard>", sk the dependent's
        # id, and a marker per dependency; resolved edges expire.
        self.dependencies = self._table(
            "Dependencies", removal_policy, time_to_live_attribute=TTL_ATTRIBUTE, sort_key=_string("sk")
        )

    def _table(
        self,
        construct_id: str,
        removal_policy: RemovalPolicy,
        time_to_live_attribute: str | None = None,
        sort_key: dynamodb.Attribute | None = None,
        stream: dynamodb.StreamViewType | None = None,
    ) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            construct_id,
            partition_key=_string("pk"),
            sort_key=sort_key,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=time_to_live_attribute,
            stream=stream,
            # Job data is the product: deleting the stack must not take it along unless asked to.
            removal_policy=removal_policy,
        )

    def jobs_index_arn(self, index_name: str) -> str:
        if index_name not in JOBS_INDEXES:
            raise ValueError(f"unknown index {index_name!r}")
        return f"{self.jobs.table_arn}/index/{index_name}"

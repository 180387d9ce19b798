"""The DynamoDB tables: keys, indexes, and the protections on job data."""

from __future__ import annotations

from infra.constructs import tables
from tests.infrastructure.template_utils import Resources, dependencies_table, imports_table, jobs_and_stats_tables


def test_jobs_table_has_the_pk_key_ttl_and_the_four_indexes(resources: Resources) -> None:
    # Given the synthesized stack
    (_, jobs), _ = jobs_and_stats_tables(resources)
    properties = jobs["Properties"]

    # When the jobs table's keys and indexes are read
    indexes = {
        index["IndexName"]: (
            [(key["AttributeName"], key["KeyType"]) for key in index["KeySchema"]],
            index["Projection"]["ProjectionType"],
            sorted(index["Projection"].get("NonKeyAttributes", [])),
        )
        for index in properties["GlobalSecondaryIndexes"]
    }
    attribute_types = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}

    # Then the partition key is pk, expired jobs go by TTL; the listing indexes hold their keys and the attributes
    # the listing filters on (so a job's other updates don't rewrite them), the sweeper's index keys only
    assert properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert indexes == {
        "by-tenant": ([("tenantKey", "HASH"), ("createdKey", "RANGE")], "INCLUDE", ["type"]),
        "by-status": ([("tenantStatus", "HASH"), ("createdKey", "RANGE")], "INCLUDE", ["type"]),
        "by-sweep": ([("sweepShard", "HASH"), ("sweepAt", "RANGE")], "KEYS_ONLY", []),
    }
    assert set(attribute_types.values()) == {"S"}


def test_every_table_is_on_demand_encrypted_recoverable_and_retained(resources: Resources) -> None:
    # Given the tables
    for _, table in (*jobs_and_stats_tables(resources), imports_table(resources), dependencies_table(resources)):
        properties = table["Properties"]
        # Then each is on-demand, encrypted with the AWS-managed key, has PITR, and survives a stack deletion
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["SSESpecification"] == {"SSEEnabled": True}
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["DeletionPolicy"] == "Retain"
        assert table["UpdateReplacePolicy"] == "Retain"
        # And the name is CloudFormation's, so two stacks can live in one account
        assert "TableName" not in properties


def test_stats_table_is_keyed_by_pk(resources: Resources) -> None:
    # Given the stats table
    _, (_, stats) = jobs_and_stats_tables(resources)
    # Then its only key is the string pk
    assert stats["Properties"]["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert stats["Properties"]["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}]
    # per-minute throughput items expire; the status counters carry no expiresAt and stay
    assert stats["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}


def test_imports_table_is_keyed_by_pk_and_sk(resources: Resources) -> None:
    # Given the batch-import table
    _, imports = imports_table(resources)
    properties = imports["Properties"]
    # Then its keys are the strings pk (tenant and namespace) and sk (the item's id), with no index
    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert properties["AttributeDefinitions"] == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert "GlobalSecondaryIndexes" not in properties


def test_index_names_match_the_repository() -> None:
    # Given the index names the repository queries
    from functions.dal import jobs_repository

    # When compared with the ones the stack creates
    # Then they are the same names
    assert jobs_repository.INDEX_BY_TENANT == tables.INDEX_BY_TENANT
    assert jobs_repository.INDEX_BY_STATUS == tables.INDEX_BY_STATUS
    assert jobs_repository.INDEX_BY_SWEEP == tables.INDEX_BY_SWEEP


def test_dependencies_table_is_keyed_by_pk_and_sk_and_resolved_edges_expire(resources: Resources) -> None:
    # Given the dependencies table
    _, dependencies = dependencies_table(resources)
    properties = dependencies["Properties"]
    # Then its keys are pk (tenant, dependency and shard) and sk (the dependent's id), with no index, and TTL on
    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert "GlobalSecondaryIndexes" not in properties
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}

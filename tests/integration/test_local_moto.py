"""The moto patches the local stack runs with (local.aws.serialize_dynamodb): transactions stay all-or-nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

NEW_ITEM = {"Put": {"TableName": "t", "Item": {"pk": {"S": "new"}}, "ConditionExpression": "attribute_not_exists(pk)"}}


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="t",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        )
        ddb.put_item(TableName="t", Item={"pk": {"S": "existing"}, "n": {"N": "1"}})
        yield ddb


def test_a_transaction_whose_later_condition_fails_writes_nothing(table: Any) -> None:
    # Given a transaction whose first write would succeed and whose last condition fails
    items = [
        NEW_ITEM,
        {
            "Update": {
                "TableName": "t",
                "Key": {"pk": {"S": "counter"}},
                "UpdateExpression": "ADD n :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        },
        {
            "ConditionCheck": {
                "TableName": "t",
                "Key": {"pk": {"S": "existing"}},
                "ConditionExpression": "n = :two",
                "ExpressionAttributeValues": {":two": {"N": "2"}},
            }
        },
    ]
    # When it is sent
    with pytest.raises(ClientError) as caught:
        table.transact_write_items(TransactItems=items)
    # Then it is cancelled with one reason per item, and none of its writes happened
    reasons = [reason["Code"] for reason in caught.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    assert "Item" not in table.get_item(TableName="t", Key={"pk": {"S": "new"}})
    assert "Item" not in table.get_item(TableName="t", Key={"pk": {"S": "counter"}})


def test_a_transaction_whose_conditions_hold_applies_every_write(table: Any) -> None:
    table.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": "t",
                    "Item": {"pk": {"S": "new"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"pk": {"S": "existing"}},
                    "UpdateExpression": "ADD n :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
        ]
    )
    assert "Item" in table.get_item(TableName="t", Key={"pk": {"S": "new"}})
    assert table.get_item(TableName="t", Key={"pk": {"S": "existing"}})["Item"]["n"] == {"N": "2"}


def test_two_writes_to_one_item_in_a_transaction_are_refused(table: Any) -> None:
    item = {"Put": {"TableName": "t", "Item": {"pk": {"S": "same"}}}}
    with pytest.raises(ClientError) as caught:
        table.transact_write_items(TransactItems=[item, item])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "Item" not in table.get_item(TableName="t", Key={"pk": {"S": "same"}})

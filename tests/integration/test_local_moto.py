"""The moto patches the local stack runs with (local.aws): transactions stay all-or-nothing, expired messages stay
unreceived, item reads answer exactly what moto's own serializer answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from tests.races import frequent_thread_switches

NEW_ITEM = {"Put": {"TableName": "t", "Item": {"pk": {"S": "new"}}, "ConditionExpression": "attribute_not_exists(pk)"}}


def _keyed_table(name: str, *, streamed: bool = False) -> Any:
    """A DynamoDB client (inside mock_aws) with a table keyed by ``pk`` (``streamed``: NEW_AND_OLD_IMAGES)."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    stream = (
        {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}} if streamed else {}
    )
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        **stream,
    )
    return ddb


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        ddb = _keyed_table("t")
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


def test_a_message_past_its_queues_retention_is_not_received_and_a_fresh_one_is() -> None:
    # Given two queues keeping messages 60 s, one holding a message sent 61 s ago, the other one just sent (moto's
    # retention check is replaced by local.aws.cheap_sqs_scans; its outcome must stay the same)
    from moto.sqs.models import sqs_backends

    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        urls = {
            name: sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
            for name in ("old", "fresh")
        }
        for name, url in urls.items():
            sqs.send_message(QueueUrl=url, MessageBody=name)
        sqs_backends["123456789012"]["us-east-1"].get_queue("old")._messages[0].sent_timestamp -= 61_000
        # When each queue is asked for its messages
        received = {
            name: [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]
            for name, url in urls.items()
        }
        # Then the expired message is not handed out, the fresh one is
        assert received == {"old": [], "fresh": ["fresh"]}


def test_queue_counts_see_each_message_in_its_state() -> None:
    # Given a queue with 2 messages delayed, 1 received (in flight) and 3 waiting (moto's scans are replaced by
    # local.aws.cheap_sqs_scans; the counts must stay what SQS reports)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="counts")["QueueUrl"]
        for _ in range(2):
            sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
        for _ in range(4):
            sqs.send_message(QueueUrl=url, MessageBody="now")
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)["Messages"]
        # When the queue's counts are read
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible",
        ]
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        # Then each message is counted in its state, and a receive hands out only waiting ones
        assert [int(counts[name]) for name in names] == [3, 2, 1]
        assert [m["Body"] for m in received] == ["now"]
        more = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert sorted(m["Body"] for m in more) == ["now"] * 3


# --- plain JSON answers for item operations ---

_numbers = st.integers(-(10**12), 10**12).map(str) | st.decimals(
    min_value=-1_000_000, max_value=1_000_000, places=4, allow_nan=False
).map(lambda d: str(d.normalize()) if d != 0 else "0")
_texts = st.text(min_size=1, max_size=12)
_scalars = st.one_of(
    _texts.map(lambda s: {"S": s}),
    _numbers.map(lambda n: {"N": n}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.sets(_texts, min_size=1, max_size=3).map(lambda v: {"SS": sorted(v)}),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda v: {"L": v})
        | st.dictionaries(_texts, inner, max_size=3).map(lambda v: {"M": v})
    ),
    max_leaves=8,
)
_items = st.dictionaries(st.sampled_from(["a", "b", "status", "nested", "list"]), _values, min_size=1)


def _answers(ddb: Any) -> list[dict[str, Any]]:
    """One answer of each patched operation over the table's items (without their request metadata)."""
    keys = [{"pk": {"S": f"k{n}"}} for n in range(3)]
    calls = [
        ddb.get_item(TableName="items", Key=keys[0]),
        ddb.batch_get_item(RequestItems={"items": {"Keys": keys}}),
        ddb.query(TableName="items", KeyConditionExpression="pk = :k", ExpressionAttributeValues={":k": keys[1]["pk"]}),
        ddb.scan(TableName="items", Limit=2),
        ddb.update_item(
            TableName="items",
            Key=keys[2],
            UpdateExpression="SET touched = :t",
            ExpressionAttributeValues={":t": {"N": "1"}},
            ReturnValues="ALL_NEW",
        ),
        ddb.delete_item(TableName="items", Key={"pk": {"S": "absent"}}, ReturnValues="ALL_OLD"),
    ]
    for answer in calls:
        answer.pop("ResponseMetadata", None)
        if "Responses" in answer:
            answer["Responses"]["items"].sort(key=lambda item: item["pk"]["S"])
        answer.get("Items", []).sort(key=lambda item: item["pk"]["S"])
    return calls


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(_items, min_size=3, max_size=3))
def test_item_reads_answer_what_motos_serializer_answers(items: list[dict[str, Any]]) -> None:
    from moto.dynamodb.responses import DynamoResult

    # Given items of every attribute type, nested, in a table
    with mock_aws(config={"core": {"reset_boto3_session": False}}):  # keeps the parsed service models: 40 runs
        ddb = _keyed_table("items")
        for n, item in enumerate(items):
            ddb.put_item(TableName="items", Item={**item, "pk": {"S": f"k{n}"}})
        # When they are read (and one updated) with the plain JSON answers, then again with moto's serializer
        assert getattr(DynamoResult, "_jobs_plain_json", False)
        plain = _answers(ddb)
        patched = DynamoResult.execute_result
        DynamoResult.execute_result = DynamoResult._jobs_moto_serialize  # type: ignore[attr-defined]
        try:
            ddb.update_item(TableName="items", Key={"pk": {"S": "k2"}}, UpdateExpression="REMOVE touched")
            serialized = _answers(ddb)
        finally:
            DynamoResult.execute_result = patched  # type: ignore[method-assign]
    # Then the SDK parses the same answers
    assert plain == serialized


_CLAIM_LIKE = (
    "SET #s = :s, attempts = attempts + :one, history = list_append(history, :entry), "
    "mark = if_not_exists(mark, :mark), note = :note REMOVE gone"
)


def _apply_claims(ddb: Any, values: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The same update expression applied to three items with their own values; the items as they end up."""
    for n, (status, mark) in enumerate(values):
        ddb.put_item(
            TableName="u",
            Item={
                "pk": {"S": f"k{n}"},
                "attempts": {"N": str(n)},
                "history": {"L": [{"S": "created"}]},
                "gone": {"S": "x"},
                **({"mark": {"S": "kept"}} if n == 1 else {}),
            },
        )
        ddb.update_item(
            TableName="u",
            Key={"pk": {"S": f"k{n}"}},
            UpdateExpression=_CLAIM_LIKE,
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":s": {"S": status},
                ":one": {"N": "1"},
                ":entry": {"L": [{"S": status}]},
                ":mark": {"S": mark},
                ":note": {"M": {"at": {"S": mark}}},
            },
        )
    return [ddb.get_item(TableName="u", Key={"pk": {"S": f"k{n}"}})["Item"] for n in range(len(values))]


def test_a_kept_update_expression_applies_as_motos_own_parse_does() -> None:
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    values = [("processing", "m0"), ("retrying", "m1"), ("completed", "m2")]
    with mock_aws():
        # Given one update expression applied to several items with different values, its tree kept by its text
        assert getattr(UpdateExpressionParser, "_jobs_kept", False)
        ddb = _keyed_table("u")
        kept = _apply_claims(ddb, values)
        # When the same is done with moto's own parsing and copying
        patched = UpdateExpressionParser.make
        UpdateExpressionParser.make = UpdateExpressionParser._jobs_moto_make  # type: ignore[attr-defined]
        try:
            ddb.delete_table(TableName="u")
            own = _apply_claims(_keyed_table("u"), values)
        finally:
            UpdateExpressionParser.make = patched  # type: ignore[method-assign]
    # Then every item is the same, each with its own values (no request's values leak into the kept tree)
    assert kept == own
    assert [item["status"]["S"] for item in kept] == ["processing", "retrying", "completed"]
    assert [item["mark"]["S"] for item in kept] == ["m0", "kept", "m2"]
    assert all("gone" not in item for item in kept)


_BAD_UPDATES = {
    "does not parse": ("SET n = = :v", {}),
    "one path twice": ("SET n = :v, n = :v", {":v": {"N": "2"}}),
    "overlapping paths": ("SET m.a = :v, m = :v", {":v": {"N": "2"}}),
    "two SET clauses": ("SET n = :v SET o = :v", {":v": {"N": "2"}}),
    "a name twice": ("SET #a = :v, #b = :v", {":v": {"N": "2"}}),
}


def _refusals(ddb: Any) -> dict[str, str]:
    refusals = {}
    for name, (expression, values) in _BAD_UPDATES.items():
        with pytest.raises(ClientError) as refused:
            ddb.update_item(
                TableName="t",
                Key={"pk": {"S": "existing"}},
                UpdateExpression=expression,
                **({"ExpressionAttributeValues": values} if values else {}),
                **({"ExpressionAttributeNames": {"#a": "n", "#b": "n"}} if "#a" in expression else {}),
            )
        error = refused.value.response["Error"]
        refusals[name] = f"{error['Code']}: {error['Message']}"
    return refusals


def test_a_wrong_update_expression_is_refused_every_time_as_moto_refuses_it(table: Any) -> None:
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    # Given update expressions wrong in one way each; when each is sent twice (a failed parse is not kept)
    first, second = _refusals(table), _refusals(table)
    # and once more with moto's own parsing and checks on every node
    patched = UpdateExpressionParser.make
    UpdateExpressionParser.make = UpdateExpressionParser._jobs_moto_make  # type: ignore[attr-defined]
    checks = {cls: cls.traverse for cls in (validators.ActionCountValidator, validators.OverlappingPathsValidator)}
    for cls in checks:
        del cls.traverse  # back to DepthFirstTraverser's walk of every node
    try:
        own = _refusals(table)
    finally:
        UpdateExpressionParser.make = patched  # type: ignore[method-assign]
        for cls, traverse in checks.items():
            cls.traverse = traverse  # type: ignore[method-assign]
    # Then each is refused the same way every time, with moto's own code and message, and nothing was written
    assert first == second == own
    assert all(refusal.startswith("ValidationException") for refusal in own.values())
    assert table.get_item(TableName="t", Key={"pk": {"S": "existing"}})["Item"]["n"] == {"N": "1"}


def _stored_or_refused(ddb: Any, sizes: list[int]) -> list[str]:
    outcomes = []
    for n, size in enumerate(sizes):
        item = {"pk": {"S": f"big{n}"}, "blob": {"S": "x" * size}, "n": {"N": "1"}, "tags": {"SS": ["a", "b"]}}
        try:
            ddb.put_item(TableName="t", Item=item)
            outcomes.append("stored")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
    return outcomes


def test_an_item_is_refused_over_the_size_limit_exactly_as_moto_refuses_it(table: Any) -> None:
    from moto.dynamodb.models.dynamo_type import Item

    # Given items around DynamoDB's 400 KB (moto's 405,000 bytes), measured once each
    sizes = [1_000, 404_000, 404_980, 404_985, 404_990, 405_000, 500_000]
    assert getattr(Item, "_jobs_size_once", False)
    once = _stored_or_refused(table, sizes)
    # When the same items are put with moto's own attribute-by-attribute check
    patched = Item.__init__
    Item.__init__ = Item._jobs_moto_init  # type: ignore[attr-defined,method-assign]
    try:
        own = _stored_or_refused(table, sizes)
    finally:
        Item.__init__ = patched  # type: ignore[method-assign]
    # Then the same ones are stored and the same ones refused, the largest among the refused
    assert once == own
    assert once[0] == once[1] == "stored" and once[-1] == "ValidationException"
    assert "stored" in once[2:-1] and "ValidationException" in once[2:-1]


# --- the jobs table's stream, delivered by local/stream_source.py ---


def test_stream_records_are_delivered_in_order_once_and_never_renumbered() -> None:
    from local.stream_source import deliver_once, drain

    with mock_aws():
        # Given a streamed table with three writes, the second an update of the first item
        ddb = _keyed_table("streamed", streamed=True)
        ddb.put_item(TableName="streamed", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
        ddb.put_item(TableName="streamed", Item={"pk": {"S": "a"}, "n": {"N": "2"}})
        ddb.put_item(TableName="streamed", Item={"pk": {"S": "b"}, "n": {"N": "1"}})
        events: list[dict[str, Any]] = []

        # When a handler that fails once is given batches of two
        def failing(event: dict[str, Any], context: Any) -> None:
            raise RuntimeError("the function failed")

        with pytest.raises(RuntimeError):
            deliver_once("streamed", failing, batch_size=2)
        assert deliver_once("streamed", lambda event, context: events.append(event), batch_size=2) == 2
        ddb.put_item(TableName="streamed", Item={"pk": {"S": "c"}, "n": {"N": "1"}})
        assert drain("streamed", lambda event, context: events.append(event), batch_size=2) == 2

        # Then the failed batch came again, every record came once, in write order, as Lambda shapes them
        records = [record for event in events for record in event["Records"]]
        assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "INSERT", "INSERT"]
        assert records[1]["dynamodb"]["OldImage"]["n"] == {"N": "1"} and records[1]["dynamodb"]["NewImage"]["n"] == {
            "N": "2"
        }
        sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
        assert sequences == sorted(set(sequences)), "a dropped record's number was used again"
        assert all(event["shardId"] and event["state"] == {} for event in events)
        assert isinstance(records[0]["dynamodb"]["ApproximateCreationDateTime"], float)
        # And nothing is left to deliver
        assert deliver_once("streamed", lambda event, context: events.append(event), batch_size=2) == 0


def test_the_stream_source_filters_as_the_deployed_mapping_does_removes_never_reach_the_handler() -> None:
    from local.stream_source import deliver_once, drain

    with mock_aws():
        # Given a streamed table where an item is written, updated, deleted (as TTL deletes an expired record) and
        # another written
        ddb = _keyed_table("filtered", streamed=True)
        ddb.put_item(TableName="filtered", Item={"pk": {"S": "a"}, "n": {"N": "1"}})
        ddb.put_item(TableName="filtered", Item={"pk": {"S": "a"}, "n": {"N": "2"}})
        ddb.delete_item(TableName="filtered", Key={"pk": {"S": "a"}})
        ddb.put_item(TableName="filtered", Item={"pk": {"S": "b"}, "n": {"N": "1"}})
        events: list[dict[str, Any]] = []

        # When the stream is drained with the default filter (the deployed one) in batches of two
        assert drain("filtered", lambda event, context: events.append(event), batch_size=2) == 4

        # Then the inserts and the update came, in order, and the delete did not: it left the stream unseen
        records = [record for event in events for record in event["Records"]]
        assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "INSERT"]
        assert [len(event["Records"]) for event in events] == [2, 1]

        # And when only deletes are waiting, they are dropped without invoking the handler
        ddb.delete_item(TableName="filtered", Key={"pk": {"S": "b"}})
        assert deliver_once("filtered", lambda event, context: events.append(event), batch_size=2) == 1
        assert len(events) == 2
        assert deliver_once("filtered", lambda event, context: events.append(event), batch_size=2) == 0


def test_an_item_read_while_another_thread_updates_it_is_whole_and_never_an_error(table: Any) -> None:
    # Given an item that one thread keeps updating, adding an attribute and removing it by turns, and writing the
    # same number into `version` and `mirror` each time (a read that saw half an update would show them apart)
    key = {"pk": {"S": "busy"}}
    padding = {f"field{i}": {"S": "x" * i} for i in range(50)}  # a job record's size: more for a read to walk
    table.put_item(TableName="t", Item={**key, "version": {"N": "0"}, "mirror": {"N": "0"}, **padding})
    stop = threading.Event()
    errors: list[BaseException] = []
    torn: list[dict[str, Any]] = []

    def update() -> None:
        version = 0
        while not stop.is_set():
            version += 1
            change = (
                "SET version = :v, mirror = :v, extra = :v"
                if version % 2
                else "SET version = :v, mirror = :v REMOVE extra"
            )
            table.update_item(
                TableName="t", Key=key, UpdateExpression=change, ExpressionAttributeValues={":v": {"N": str(version)}}
            )

    def read(fetch: Callable[[], dict[str, Any]]) -> None:
        while not stop.is_set():
            try:
                item = fetch()
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)
                return
            if item["version"] != item["mirror"]:
                torn.append(item)

    def batch_get() -> dict[str, Any]:
        return dict(table.batch_get_item(RequestItems={"t": {"Keys": [key]}})["Responses"]["t"][0])

    readers: list[Callable[[], dict[str, Any]]] = [
        lambda: table.get_item(TableName="t", Key=key)["Item"],
        batch_get,
        batch_get,
        lambda: table.query(
            TableName="t", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": key["pk"]}
        )["Items"][0],
    ]
    threads = [threading.Thread(target=update)] + [threading.Thread(target=read, args=(fetch,)) for fetch in readers]
    # When they run side by side, switching threads as often as Python can
    with frequent_thread_switches():
        try:
            for thread in threads:
                thread.start()
            time.sleep(3)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    # Then every read answered a whole item, never an error: DynamoDB applies each request to an item atomically
    assert not errors, errors[:3]
    assert not torn, torn[:3]

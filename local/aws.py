"""moto as the local AWS: in-process for the handlers (fast), and the same state served over HTTP for other tools.

The handlers' boto3 calls are answered in-process by ``mock_aws``; ``ThreadedMotoServer`` serves the very same
backends on a port, so the CLI, tests or the AWS CLI (``AWS_ENDPOINT_URL=http://127.0.0.1:4566``) see the queues,
tables and keys the handlers use.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import boto3
from moto import mock_aws
from moto.core import common_models
from moto.server import ThreadedMotoServer

from functions.dal.jobs_repository import LISTING_INDEX_ATTRIBUTES
from functions.dal.keys import DynamoKeyStore, StoredKey
from functions.logic.keys import SCOPES, hash_key, now_iso
from functions.settings import Settings
from infra.config import ServiceConfig

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account


def fake_credentials() -> None:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }.items():
        os.environ.setdefault(name, value)
    # In-process calls must reach mock_aws, not a real or server endpoint.
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)


_DYNAMODB_LOCK = threading.RLock()


def patch_moto() -> None:
    """moto as the local stack and the tests run it: DynamoDB and SQS requests one at a time, transactions without
    table copies, SQS without whole-queue scans, item reads answered as plain JSON, streams that can be trimmed."""
    serialize_dynamodb()
    serialize_sqs()
    cheap_sqs_scans()
    plain_json_dynamodb_items()
    trimmable_streams()
    parsed_update_expressions_kept()
    action_names_kept()
    item_size_checked_once()


def serialize_dynamodb() -> None:
    """Make moto's DynamoDB apply one request at a time, as DynamoDB itself is atomic per request.

    moto is not thread-safe there: a cancelled TransactWriteItems restores a copy of the tables taken when it began,
    wiping writes other threads made meanwhile. The local stack runs the API, several consumers and the sweeper in
    threads, so every backend call takes one lock (requests from the moto server thread included).

    A request's answer is built under the lock too. The backend hands back the items it holds, not copies, and an
    update changes its item in place: a BatchGetItem measured and serialized its items after its calls, so an
    update landing meanwhile could make it answer half an update, or raise "dictionary changed size during
    iteration" (the API then answered 500; make test's load test saw it once).
    """
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoDBBackend, "_jobs_serialized", False):
        return
    setattr(DynamoDBBackend, "transact_write_items", _check_then_apply)  # noqa: B010 - patching moto
    for name, method in inspect.getmembers(DynamoDBBackend, inspect.isfunction):
        if not name.startswith("_"):
            setattr(DynamoDBBackend, name, _locked(method))
    setattr(DynamoHandler, "call_action", _locked(DynamoHandler.call_action))  # noqa: B010 - patching moto
    DynamoDBBackend._jobs_serialized = True  # type: ignore[attr-defined]


def _check_then_apply(backend: Any, transact_items: list[dict[str, Any]]) -> None:
    """TransactWriteItems without moto's deep copy of every table it touches (a cost that grows with the table, and
    every status change of ours is a transaction): check every condition first, then apply the writes. Atomic
    because the whole call runs under the DynamoDB lock (``serialize_dynamodb`` installs both together)."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    targets: set[tuple[str, str]] = set()
    reasons: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    plan: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(entry.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise ValueError("Unsupported transaction operation")
        table_name = op["TableName"]
        if op_type == "Put":
            table = backend.get_table(table_name)
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        target = (str(table_name), str(dict(sorted(key.items()))))
        if target in targets:
            raise MultipleTransactionsException()
        targets.add(target)
        current = backend.get_item(table_name, key)
        condition = op.get("ConditionExpression")
        names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        if condition is not None and not get_filter_expression(condition, names, values).expr(current):
            old = None
            if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                old = current.to_json()["Attributes"]
            reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            reasons.append((None, None, None))
        plan.append((op_type, op, key))
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    for op_type, op, key in plan:
        names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        if op_type == "Put":
            backend.put_item(
                op["TableName"], op["Item"], expression_attribute_names=names, expression_attribute_values=values
            )
        elif op_type == "Delete":
            backend.delete_item(
                op["TableName"], key, expression_attribute_names=names, expression_attribute_values=values
            )
        elif op_type == "Update":
            backend.update_item(
                op["TableName"],
                key,
                update_expression=op["UpdateExpression"],
                expression_attribute_names=names,
                expression_attribute_values=values,
            )


def _locked(method: Callable[..., Any], lock: Any = _DYNAMODB_LOCK) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return call


_SQS_LOCK = threading.RLock()
# How often a long poll looks again for messages that became visible (sends wake it at once).
_SQS_POLL_SECONDS = 0.2


def serialize_sqs() -> None:
    """Make moto's SQS apply one request at a time, as SQS does per queue.

    moto's receive is not thread-safe: it notes the FIFO message groups in flight, then marks messages received, so
    two pollers receiving at once could both be handed messages of one group, and one group's jobs would run side by
    side. Every backend call takes one lock; a long poll (WaitTimeSeconds) waits outside it, so it never holds up
    the sends it waits for.
    """
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend, "_jobs_serialized", False):
        return
    receive = SQSBackend.receive_message
    for name, method in inspect.getmembers(SQSBackend, inspect.isfunction):
        if not name.startswith("_") and name != "receive_message":
            setattr(SQSBackend, name, _locked(method, _SQS_LOCK))
    setattr(SQSBackend, "receive_message", _receive_with_lock(receive))  # noqa: B010 - patching moto
    SQSBackend._jobs_serialized = True  # type: ignore[attr-defined]


def cheap_sqs_scans() -> None:
    """Make moto's SQS scans of a queue cheap: they made every send and receive slower as the queue deepened.

    moto 5.2.5 checks each message a receive hands out against the queue's retention period by calling
    ``get_queue_attributes``, which builds every attribute of the queue twice, the approximate message counts
    included; a send reads ``queue.attributes`` too. Each count is a scan of all the queue's messages with a clock
    read per message. Measured in-process: a send took 16 ms with 500 messages queued and 54 ms with 2,000 (2 ms
    empty). Here the retention check reads the one attribute it needs, and a scan reads the clock once."""
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Queue, SQSBackend

    if getattr(SQSBackend, "_jobs_cheap_scans", False):
        return

    def is_message_valid_based_on_retention_period(backend: Any, queue_name: str, message: Any) -> bool:
        retention_seconds = int(backend.get_queue(queue_name).message_retention_period)
        return bool(retention_seconds + message.sent_timestamp / 1000 > time.time())

    def messages(queue: Any) -> list[Any]:  # visible and not delayed, as Queue.messages
        now = unix_time_millis()
        return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(queue: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in queue._messages if now < m.delayed_until)

    def not_visible(queue: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in queue._messages if not now > m.visible_at)

    setattr(SQSBackend, "is_message_valid_based_on_retention_period", is_message_valid_based_on_retention_period)  # noqa: B010
    Queue.messages = property(messages)  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages_delayed = property(delayed)  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages_not_visible = property(not_visible)  # type: ignore[assignment,method-assign]
    SQSBackend._jobs_cheap_scans = True  # type: ignore[attr-defined]


# DynamoDB's item reads and writes: their results are wire-format JSON already (AttributeValue maps).
_PLAIN_JSON_OPERATIONS = frozenset(
    {"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "UpdateItem", "DeleteItem", "TransactGetItems"}
)


def plain_json_dynamodb_items() -> None:
    """Answer moto's DynamoDB item operations with ``json.dumps`` of their result instead of moto's generic
    serializer.

    moto 5.2.5 walks the botocore output shape for every attribute of every item it returns: a BatchGetItem of 20
    job records took ~100 ms, every GetItem of the consumer several, all under the DynamoDB lock. DynamoDB speaks
    plain JSON and moto's result for these operations is already in its wire form, so dumping it gives the same
    response (tests/integration/test_local_moto.py compares the two); anything not plainly serializable (binary
    attributes) still goes through moto's serializer."""
    from moto.dynamodb.responses import DynamoResult

    if getattr(DynamoResult, "_jobs_plain_json", False):
        return
    serialize = DynamoResult.execute_result

    def execute_result(result: Any, context: Any) -> Any:
        body = result.result
        if context.operation_model.name in _PLAIN_JSON_OPERATIONS and isinstance(body, dict):
            try:
                text = json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":"))
            except (TypeError, ValueError):
                return serialize(result, context)
            return 200, {"Content-Type": "application/x-amz-json-1.0"}, text
        return serialize(result, context)

    setattr(DynamoResult, "execute_result", execute_result)  # noqa: B010 - patching moto
    DynamoResult._jobs_plain_json = True  # type: ignore[attr-defined]
    DynamoResult._jobs_moto_serialize = serialize  # type: ignore[attr-defined]  # the test compares with it


# An update expression's parse tree, kept by its text (the dal writes a few dozen distinct ones), with its pickled
# form: the validator's copy of a kept tree is made from that.
_UPDATE_EXPRESSIONS: dict[str, tuple[Any, bytes]] = {}
_UPDATE_EXPRESSIONS_KEPT = 512
_KEPT_TREES: dict[int, bytes] = {}


def parsed_update_expressions_kept() -> None:
    """Parse each DynamoDB update expression once, copy its tree by unpickling, check its clauses once.

    moto 5.2.5 parses an UpdateItem's expression twice (the request handler, then the backend) and the validator
    deep-copies the tree before filling in names and values: for the consumer's claim (eleven SET actions) that was
    ~3 ms of a ~10 ms UpdateItem, under the DynamoDB lock. Parsing depends on the text alone, and neither caller
    changes the tree it is given (the validator works on its copy), so one tree per text serves every request; a
    pickle round trip makes the same copy ~14x faster than ``copy.deepcopy``. An expression that fails to parse
    raises each time, as before (tests/integration/test_local_moto.py compares results with moto's own path)."""
    import copy
    import pickle

    from moto.dynamodb.parsing import expressions, validators

    parser: Any = getattr(expressions, "UpdateExpressionParser")  # noqa: B009 - untyped in moto
    checked: Any = validators
    if getattr(parser, "_jobs_kept", False):
        return
    make = parser.make

    def kept_make(cls: Any, expression: str) -> Any:
        kept = _UPDATE_EXPRESSIONS.get(expression)
        if kept is not None:
            return kept[0]
        tree = make(expression)
        if len(_UPDATE_EXPRESSIONS) < _UPDATE_EXPRESSIONS_KEPT:
            blob = pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
            _UPDATE_EXPRESSIONS[expression] = (tree, blob)  # keeps the tree alive, so its id stays its own
            _KEPT_TREES[id(tree)] = blob
        return tree

    def deepcopy(value: Any, memo: Any = None) -> Any:
        blob = _KEPT_TREES.get(id(value))
        return pickle.loads(blob) if blob is not None else copy.deepcopy(value, memo)

    def root_only(validator: Any, node: Any) -> Any:
        return validator.process(node) if isinstance(node, validator.nodes_to_be_processed()) else node

    parser.make = classmethod(kept_make)
    checked.deepcopy = deepcopy
    # These two look at the clauses and action paths of the whole tree below the node they are given, and moto runs
    # them on every node, bottom up (~50 whole-subtree walks for the claim): the root's check sees every clause and
    # path, so it refuses whatever a subtree's would. (An expression wrong twice over may name the other fault.)
    checked.ActionCountValidator.traverse = root_only
    checked.OverlappingPathsValidator.traverse = root_only
    parser._jobs_kept = True
    parser._jobs_moto_make = make  # the test compares with it


def action_names_kept() -> None:
    """moto 5.2.5 lists a response class's methods (``inspect.getmembers``) on every request to find the action's
    handler: ~0.1 ms a request, ~4 % of the local stack's CPU in bench/e2e.py. A class's methods do not change while
    it serves, so the list is made once per class."""
    from moto.core import responses

    if getattr(responses, "_jobs_action_names_kept", False):
        return
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(responses.method_names_from_class)
    responses._jobs_action_names_kept = True  # type: ignore[attr-defined]


def item_size_checked_once() -> None:
    """Check a new item's size once, not once per attribute.

    moto 5.2.5 builds an item attribute by attribute into a dict that, on each insert, sums the sizes of every
    attribute already there, to refuse items over DynamoDB's 400 KB: quadratic in the attributes, ~25 % of a job
    record's PutItem. The sums only grow as attributes are added, so the last one decides: the whole item is
    measured once, the same sizes added the same way, and refused exactly when moto would refuse it."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict, bytesize

    if getattr(Item, "_jobs_size_once", False):
        return
    original = Item.__init__

    def init(item: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        item.hash_key = hash_key
        item.range_key = range_key
        values = {key: DynamoType(value) for key, value in attrs.items()}
        if sum(bytesize(key) + value.size() for key, value in values.items()) > _MOTO_ITEM_LIMIT:
            raise ItemSizeTooLarge
        item.attrs = LimitedSizeDict()
        dict.update(item.attrs, values)  # dict's own update: no per-attribute check (LimitedSizeDict's stays for later)

    setattr(Item, "__init__", init)  # noqa: B010 - patching moto
    Item._jobs_size_once = True  # type: ignore[attr-defined]
    Item._jobs_moto_init = original  # type: ignore[attr-defined]  # the test compares with it


# moto's limit for an item's size (DynamoDB's 400 KB, as moto measured it): see LimitedSizeDict.__setitem__.
_MOTO_ITEM_LIMIT = 405_000


def trimmable_streams() -> None:
    """Number moto's DynamoDB stream records by a counter per shard, not by the length of the shard's list.

    moto 5.2.5 keeps every stream record of a table forever and derives a record's sequence number from how many
    records the list holds; the local stream source (local/stream_source.py) drops records once handled, which
    would then reuse sequence numbers (and a stats item refuses what is at or below what it has applied)."""
    from moto.dynamodb.models.table import StreamRecord, StreamShard

    if getattr(StreamShard, "_jobs_counted", False):
        return

    def add(shard: Any, old: Any, new: Any) -> None:
        view = shard.table.stream_specification["StreamViewType"]
        event = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
        sequence = getattr(shard, "_jobs_next_sequence", shard.starting_sequence_number)
        shard._jobs_next_sequence = sequence + 1
        shard.items.append(StreamRecord(shard.table, view, event, old, new, sequence))

    setattr(StreamShard, "add", add)  # noqa: B010 - patching moto
    StreamShard._jobs_counted = True  # type: ignore[attr-defined]


def _receive_with_lock(receive: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(receive)
    def call(
        backend: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        deadline = time.monotonic() + wait_seconds_timeout
        while True:
            with _SQS_LOCK:
                messages = receive(backend, queue_name, count, 0, visibility_timeout, message_attribute_names)
                queue = backend.get_queue(queue_name)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0:
                return messages
            with queue._messages_lock:  # notified by every message added to the queue
                queue._messages_lock.wait(timeout=min(remaining, _SQS_POLL_SECONDS))

    return call


def untrack_moto_instances() -> None:
    """Stop moto recording every model object it builds, for the long-running local stack.

    moto 5.2.5 appends each object (every DynamoDB Item, including the copies a Query returns; every SQS message) to
    a class-level ``instances_tracked`` list that only its dashboard and reset read, and never lets go: a listing of
    20 jobs kept ~80 KB alive for good, so a ``make run`` with the dashboard open grew without end."""
    common_models.BaseModel.__new__ = _untracked_new  # type: ignore[method-assign]


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    return object.__new__(cls)


class LocalAws:
    def __init__(self, server_port: int | None) -> None:
        self._mock = mock_aws()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=server_port) if server_port else None

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        fake_credentials()
        patch_moto()
        untrack_moto_instances()
        self._mock.start()
        if self._server:
            # moto prints "Starting a new Thread with MotoServer ..."; the banner is to be the first thing printed.
            with contextlib.redirect_stdout(io.StringIO()):
                self._server.start()

    def stop(self) -> None:
        if self._server:
            self._server.stop()
        self._mock.stop()


@dataclass(frozen=True)
class LaneQueues:
    """One lane's queue and DLQ (see functions/dal/job_queue.py)."""

    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str


@dataclass(frozen=True)
class LocalResources:
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    high: LaneQueues
    ordered: LaneQueues

    @property
    def normal(self) -> LaneQueues:
        return LaneQueues(self.queue_url, self.queue_arn, self.dlq_url, self.dlq_arn)

    def lanes(self) -> dict[str, LaneQueues]:
        """normal, high, ordered -> their queues."""
        return {"normal": self.normal, "high": self.high, "ordered": self.ordered}

    def lane_urls(self) -> dict[str, str]:
        """The other lanes' URLs as ``ServiceConfig.settings`` takes them."""
        return {
            "high_queue_url": self.high.queue_url,
            "high_dlq_url": self.high.dlq_url,
            "ordered_queue_url": self.ordered.queue_url,
            "ordered_dlq_url": self.ordered.dlq_url,
        }


def create_resources(config: ServiceConfig) -> LocalResources:
    """Create what the CDK stack creates, from the same config (names, keys, indexes, redrive)."""
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName=config.jobs_table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("pk", "tenantKey", "tenantStatus", "createdKey", "sweepShard", "sweepAt")
        ],
        # The stats aggregator counts status changes from it (local/stream_source.py delivers it).
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        GlobalSecondaryIndexes=[
            _index("by-tenant", "tenantKey", "createdKey", LISTING_PROJECTION),
            _index("by-status", "tenantStatus", "createdKey", LISTING_PROJECTION),
            _index("by-sweep", "sweepShard", "sweepAt", {"ProjectionType": "KEYS_ONLY"}),
        ],
    )
    _keyed_table(ddb, config.stats_table)
    ddb.create_table(
        TableName=config.imports_table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
    )
    # Per-type limits' shared state; its items expire by themselves (rate windows, slot leases).
    _keyed_table(ddb, config.limits_table)
    ddb.update_time_to_live(
        TableName=config.limits_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
    )
    create_tables_added_later(ddb, config)
    boto3.client("s3").create_bucket(Bucket=config.files_bucket)
    # SES only sends from verified identities, locally as on AWS.
    if config.email_sender:
        boto3.client("ses").verify_email_identity(EmailAddress=config.email_sender)
    queues = config.queue
    normal = _lane_queues(config, queues.name, queues.dlq_name, queues.max_receive_count)
    high = _lane_queues(config, queues.high_name, queues.high_dlq_name, queues.max_receive_count)
    ordered = _lane_queues(
        config, queues.ordered_name, queues.ordered_dlq_name, queues.ordered_max_receive_count, fifo=True
    )
    return LocalResources(
        queue_url=normal.queue_url,
        queue_arn=normal.queue_arn,
        dlq_url=normal.dlq_url,
        dlq_arn=normal.dlq_arn,
        high=high,
        ordered=ordered,
    )


def create_schedules_table(ddb: Any, name: str) -> None:
    """Recurring schedules, as infra/constructs/schedules.py makes the table: the tenant and a sort key, and the
    sparse due-time index the sweeper reads (whole items)."""
    from functions.dal.schedules import DUE_INDEX, DUE_INDEX_KEYS

    partition, sort = DUE_INDEX_KEYS
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": attribute, "AttributeType": "S"} for attribute in ("pk", "sk", partition, sort)
        ],
        GlobalSecondaryIndexes=[_index(DUE_INDEX, partition, sort, {"ProjectionType": "ALL"})],
    )


def create_tables_added_later(ddb: Any, config: ServiceConfig, existing: frozenset[str] = frozenset()) -> None:
    """The tables added since the first saved states: tenant keys (hashed, functions/dal/keys.py), job dependencies
    (pk "<tenant>#<dependency>#<shard>", sk the dependent's id: functions/dal/dependencies.py), schedules. Those in
    ``existing`` are left as they are."""
    if config.keys_table not in existing:
        _keyed_table(ddb, config.keys_table)
    if config.dependencies_table not in existing:
        _keyed_table(ddb, config.dependencies_table, sort_key="sk")
        ddb.update_time_to_live(
            TableName=config.dependencies_table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"}
        )
    if config.schedules_table not in existing:
        create_schedules_table(ddb, config.schedules_table)


def ensure_tables_added_later(config: ServiceConfig) -> None:
    """Make the tables a state saved before they existed lacks, after it was restored over the resources."""
    ddb = boto3.client("dynamodb")
    create_tables_added_later(ddb, config, frozenset(ddb.list_tables()["TableNames"]))


def _lane_queues(
    config: ServiceConfig, name: str, dlq_name: str, max_receive_count: int, *, fifo: bool = False
) -> LaneQueues:
    """A lane's DLQ and queue, as infra/constructs/queue_consumer.py makes them (FIFO: both, high-throughput)."""
    sqs = boto3.client("sqs")
    retention = str(config.queue.retention_days * 86400)
    fifo_attributes = (
        {
            "FifoQueue": "true",
            "ContentBasedDeduplication": "false",
            "DeduplicationScope": "messageGroup",
            "FifoThroughputLimit": "perMessageGroupId",
        }
        if fifo
        else {}
    )
    dlq_retention = str(config.queue.dlq_retention_days * 86400)
    dlq_url = sqs.create_queue(
        QueueName=dlq_name, Attributes={"MessageRetentionPeriod": dlq_retention, **fifo_attributes}
    )["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(config.queue_visibility_timeout_seconds),
            "MessageRetentionPeriod": retention,
            "RedrivePolicy": f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive_count}"}}',
            **fifo_attributes,
        },
    )["QueueUrl"]
    return LaneQueues(queue_url=queue_url, queue_arn=_queue_arn(sqs, queue_url), dlq_url=dlq_url, dlq_arn=dlq_arn)


class SeedKey(NamedTuple):
    """A key ``make run`` (API_KEYS) or a test puts in the keys table: its tenant and scope."""

    tenant: str
    scope: str = "full"


def seed_key_id(value: str) -> str:
    """A seeded key's id, derived from its value: the same key keeps its id across restarts."""
    return "local-" + hash_key(value)[:10]


def create_api_keys(keys: Mapping[str, str | SeedKey], table: str = Settings.keys_table) -> dict[str, str]:
    """Keys in the keys table, as ``jobs keys import`` stores them (those not there yet: a restored state may hold
    them already); value -> key id."""
    store = DynamoKeyStore(boto3.client("dynamodb"), table)
    ids: dict[str, str] = {}
    for value, spec in keys.items():
        seed = spec if isinstance(spec, SeedKey) else SeedKey(spec)
        stored = store.by_hash(hash_key(value))
        if stored is None:
            stored = StoredKey(
                key_id=seed_key_id(value),
                tenant=seed.tenant,
                scope=seed.scope,
                name=f"{seed.tenant}-{seed.scope}",
                created_at=now_iso(),
            )
            store.add(stored, hash_key(value))
        ids[value] = stored.key_id
    return ids


def parse_api_keys(spec: str) -> dict[str, SeedKey]:
    """``key1:tenantA,key2:tenantB:read`` -> {key: (tenant, scope)}; the scope is ``full`` unless given."""
    keys: dict[str, SeedKey] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        parts = [part.strip() for part in entry.split(":")]
        value, tenant = (parts[0], parts[1]) if len(parts) in (2, 3) else ("", "")
        scope = parts[2] if len(parts) == 3 else "full"
        if not value or not tenant or scope not in SCOPES:
            raise ValueError(f"API_KEYS entry {entry!r} is not key:tenant or key:tenant:scope (scope: full or read)")
        keys[value] = SeedKey(tenant, scope)
    return keys


def _keyed_table(ddb: Any, name: str, sort_key: str | None = None) -> None:
    """An on-demand table keyed by a string ``pk`` (and a string ``sort_key``, if given)."""
    keys = ["pk", sort_key] if sort_key else ["pk"]
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in zip(keys, ("HASH", "RANGE"), strict=False)],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys],
    )


# As infra/constructs/tables.py: the API's listing indexes hold keys and the attributes their queries filter on.
LISTING_PROJECTION = {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(LISTING_INDEX_ATTRIBUTES)}


def _index(name: str, partition: str, sort: str, projection: dict[str, Any]) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [{"AttributeName": partition, "KeyType": "HASH"}, {"AttributeName": sort, "KeyType": "RANGE"}],
        "Projection": projection,
    }


def _queue_arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])

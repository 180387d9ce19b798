"""Recurring schedules in their own DynamoDB table, per tenant.

- ``pk`` = the tenant, ``sk`` = ``schedule#<id>``: a tenant's schedules are one partition, listed in ``sk`` order
  (ids are time-ordered, so oldest first).
- ``sk`` = ``name#<name>``: the name's claim, written and deleted in the same transaction as its schedule, which makes
  names unique per tenant (``ScheduleExists``).
- Index ``by-due`` on (``dueShard``, ``nextRunAt``), sparse: only an enabled schedule carries ``dueShard``, so the
  sweeper reads the due ones of a few partitions and nothing else. It projects the whole item (a schedule is small
  and rewritten once per run anyway), so firing needs no read of the table.

Every rewrite is conditional on the item's ``version``: of two sweeps (or a sweep and a PATCH) exactly one wins.
SDK errors become ``StorageError``.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import ConcurrentUpdate, ScheduleExists, StorageError
from functions.models.schedules import Schedule

DUE_INDEX = "by-due"
DUE_INDEX_KEYS = ("dueShard", "nextRunAt")
SCHEDULE_PREFIX = "schedule#"
NAME_PREFIX = "name#"


class InvalidScheduleCursor(ValueError):
    """A ``cursor`` that this listing did not return."""


class ScheduleStore(Protocol):
    def create(self, schedule: Schedule) -> None: ...

    def get(self, tenant: str, schedule_id: str) -> Schedule | None: ...

    def list_page(self, tenant: str, limit: int, cursor: str | None) -> tuple[list[Schedule], str | None]: ...

    def replace(self, old: Schedule, new: Schedule) -> None:
        """Write ``new`` over ``old`` if the item is still at ``old``'s version (``ConcurrentUpdate`` otherwise)."""
        ...

    def delete(self, schedule: Schedule) -> None: ...

    def due(self, shard: int, now_iso: str, limit: int) -> list[Schedule]: ...


def due_shard(schedule_id: str, shards: int) -> int:
    return zlib.crc32(schedule_id.encode()) % shards


class DynamoScheduleStore:
    def __init__(self, client: Any, table: str, shards: int) -> None:
        self._ddb = client
        self._table = table
        self._shards = shards

    @property
    def shards(self) -> int:
        return self._shards

    def create(self, schedule: Schedule) -> None:
        items = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._to_item(schedule),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _name_item(schedule),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _condition_failed(exc):
                raise ScheduleExists(f"a schedule named '{schedule.name}' already exists") from exc
            raise StorageError(f"DynamoDB write (schedule) failed: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB write (schedule) failed: {exc}") from exc

    def get(self, tenant: str, schedule_id: str) -> Schedule | None:
        try:
            response = self._ddb.get_item(
                TableName=self._table, Key=_key(tenant, SCHEDULE_PREFIX + schedule_id), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB GetItem (schedule) failed: {exc}") from exc
        item = response.get("Item")
        return from_item(item) if item else None

    def list_page(self, tenant: str, limit: int, cursor: str | None) -> tuple[list[Schedule], str | None]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :tenant AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":tenant": {"S": tenant}, ":prefix": {"S": SCHEDULE_PREFIX}},
            "Limit": limit,
            "ConsistentRead": True,
        }
        if cursor is not None:
            request["ExclusiveStartKey"] = _key(tenant, SCHEDULE_PREFIX + _decode_cursor(cursor))
        try:
            response = self._ddb.query(**request)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB Query (schedules) failed: {exc}") from exc
        schedules = [from_item(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        next_cursor = _encode_cursor(last["sk"]["S"].removeprefix(SCHEDULE_PREFIX)) if last and schedules else None
        return schedules, next_cursor

    def replace(self, old: Schedule, new: Schedule) -> None:
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=self._to_item(new.model_copy(update={"version": old.version + 1})),
                ConditionExpression="version = :seen",
                ExpressionAttributeValues={":seen": {"N": str(old.version)}},
            )
        except ClientError as exc:
            if _condition_failed(exc):
                raise ConcurrentUpdate("the schedule changed since it was read") from exc
            raise StorageError(f"DynamoDB PutItem (schedule) failed: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB PutItem (schedule) failed: {exc}") from exc

    def delete(self, schedule: Schedule) -> None:
        items = [
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": _key(schedule.tenant, SCHEDULE_PREFIX + schedule.id),
                    "ConditionExpression": "version = :seen",
                    "ExpressionAttributeValues": {":seen": {"N": str(schedule.version)}},
                }
            },
            {"Delete": {"TableName": self._table, "Key": _key(schedule.tenant, NAME_PREFIX + schedule.name)}},
        ]
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _condition_failed(exc):
                raise ConcurrentUpdate("the schedule changed since it was read") from exc
            raise StorageError(f"DynamoDB write (schedule) failed: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB write (schedule) failed: {exc}") from exc

    def due(self, shard: int, now_iso: str, limit: int) -> list[Schedule]:
        try:
            response = self._ddb.query(
                TableName=self._table,
                IndexName=DUE_INDEX,
                KeyConditionExpression="dueShard = :shard AND nextRunAt <= :now",
                ExpressionAttributeValues={":shard": {"S": str(shard)}, ":now": {"S": now_iso}},
                Limit=limit,
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB Query (due schedules) failed: {exc}") from exc
        return [from_item(item) for item in response.get("Items", [])]

    def _to_item(self, schedule: Schedule) -> dict[str, Any]:
        return to_item(schedule, self._shards)


def to_item(schedule: Schedule, shards: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        **_key(schedule.tenant, SCHEDULE_PREFIX + schedule.id),
        "id": {"S": schedule.id},
        "name": {"S": schedule.name},
        "cron": {"S": schedule.cron},
        "timezone": {"S": schedule.timezone},
        "jobJson": {"S": json.dumps(schedule.job, separators=(",", ":"))},
        "enabled": {"BOOL": schedule.enabled},
        "createdAt": {"S": schedule.created_at},
        "updatedAt": {"S": schedule.updated_at},
        "version": {"N": str(schedule.version)},
    }
    for name, value in (
        ("lastRunAt", schedule.last_run_at),
        ("lastJobId", schedule.last_job_id),
        ("lastError", schedule.last_error),
    ):
        if value is not None:
            item[name] = {"S": value}
    if schedule.enabled and schedule.next_run_at is not None:
        # Sparse index: only an enabled schedule is in the sweeper's due-time index.
        item["nextRunAt"] = {"S": schedule.next_run_at}
        item["dueShard"] = {"S": str(due_shard(schedule.id, shards))}
    return item


def from_item(item: dict[str, Any]) -> Schedule:
    def text(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    return Schedule(
        id=item["id"]["S"],
        tenant=item["pk"]["S"],
        name=item["name"]["S"],
        cron=item["cron"]["S"],
        timezone=item["timezone"]["S"],
        job=json.loads(item["jobJson"]["S"]),
        enabled=item["enabled"]["BOOL"],
        next_run_at=text("nextRunAt"),
        last_run_at=text("lastRunAt"),
        last_job_id=text("lastJobId"),
        last_error=text("lastError"),
        created_at=item["createdAt"]["S"],
        updated_at=item["updatedAt"]["S"],
        version=int(item["version"]["N"]),
    )


def _key(tenant: str, sort_key: str) -> dict[str, Any]:
    return {"pk": {"S": tenant}, "sk": {"S": sort_key}}


def _name_item(schedule: Schedule) -> dict[str, Any]:
    return {**_key(schedule.tenant, NAME_PREFIX + schedule.name), "scheduleId": {"S": schedule.id}}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _condition_failed(exc: ClientError) -> bool:
    reasons = [reason.get("Code") for reason in exc.response.get("CancellationReasons", [])]
    return _code(exc) == "ConditionalCheckFailedException" or "ConditionalCheckFailed" in reasons


# A cursor names the last schedule of a page: its id, base64url-encoded (ids are 36 characters).
_CURSOR_ID_LENGTH = 36


def _encode_cursor(schedule_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": schedule_id}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode())
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise InvalidScheduleCursor("'cursor' is not a cursor returned by this listing") from exc
    after = data.get("after") if isinstance(data, dict) else None
    if not isinstance(after, str) or len(after) != _CURSOR_ID_LENGTH or not after.isascii():
        raise InvalidScheduleCursor("'cursor' is not a cursor returned by this listing")
    return after

"""The shared state of per-type limits (logic/limits.py): rate windows and concurrency slots in one DynamoDB table.

Table: partition key ``pk`` (string), TTL attribute ``expiresAt`` (epoch seconds). Three kinds of item:

- a rate window ``<scope>#<type>#rate#<window start, epoch s>``: ``n`` starts admitted in that window (never more
  than the limit: the ADD is conditional);
- a rate's waiting schedule ``<scope>#<type>#rate#next``: ``v``, the next free place for a refused job (places map
  to future windows, so waiting jobs come back spread over them, see logic/limits.py);
- a concurrency slot ``<scope>#<type>#slot#<i>``: ``holder`` (who holds it) and ``leaseUntil`` (epoch ms). A slot is
  free when the item is absent or its lease has passed, so a consumer that died holding one frees it by itself.

Every call is a single conditional request, atomic in DynamoDB, so the limits hold whatever the number of consumers.
SDK errors become ``StorageError``; a lost condition is an answer (``False``), not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import StorageError

_CONDITION_FAILED = "ConditionalCheckFailedException"
_BATCH_GET_MAX = 100
_BATCH_GET_ROUNDS = 5
_RESERVE_ROUNDS = 5


@dataclass(frozen=True)
class SlotState:
    holder: str
    lease_until_ms: int


class LimitsStore(Protocol):
    def take_token(self, key: str, limit: int, expires_at_s: int) -> bool:
        """Count one start in a rate window unless it already holds ``limit``; True when counted."""
        ...

    def reserve(self, key: str, floor: int, expires_at_s: int) -> int:
        """Take the next place in a rate's waiting schedule (a counter that never goes below ``floor``)."""
        ...

    def read_slots(self, keys: list[str]) -> dict[str, SlotState]:
        """The held-or-once-held slots among ``keys`` (strongly consistent); a missing key is a free slot."""
        ...

    def claim_slot(self, key: str, holder: str, now_ms: int, lease_until_ms: int, expires_at_s: int) -> bool:
        """Take a slot that is free, expired, or already ``holder``'s; False when someone else holds it."""
        ...

    def release_slot(self, key: str, holder: str) -> bool:
        """Give a slot back if ``holder`` still holds it; False when it did not (expired and taken over, or gone)."""
        ...


class DynamoLimitsStore:
    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def take_token(self, key: str, limit: int, expires_at_s: int) -> bool:
        return (
            self._conditional(
                self._ddb.update_item,
                "UpdateItem (rate window)",
                Key={"pk": {"S": key}},
                UpdateExpression="ADD n :one SET expiresAt = :exp",
                ConditionExpression="attribute_not_exists(n) OR n < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":exp": {"N": str(expires_at_s)},
                },
            )
            is not None
        )

    def reserve(self, key: str, floor: int, expires_at_s: int) -> int:
        for _ in range(_RESERVE_ROUNDS):
            # The schedule is current: take its next place.
            response = self._conditional(
                self._ddb.update_item,
                "UpdateItem (rate schedule)",
                Key={"pk": {"S": key}},
                UpdateExpression="ADD v :one SET expiresAt = :exp",
                ConditionExpression="v >= :floor",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":floor": {"N": str(floor)},
                    ":exp": {"N": str(expires_at_s)},
                },
                ReturnValues="UPDATED_NEW",
            )
            if response is not None:
                return int(response["Attributes"]["v"]["N"]) - 1
            # The schedule is behind (or new): restart it at the floor, taking its first place.
            restarted = self._conditional(
                self._ddb.update_item,
                "UpdateItem (rate schedule)",
                Key={"pk": {"S": key}},
                UpdateExpression="SET v = :next, expiresAt = :exp",
                ConditionExpression="attribute_not_exists(v) OR v < :floor",
                ExpressionAttributeValues={
                    ":next": {"N": str(floor + 1)},
                    ":floor": {"N": str(floor)},
                    ":exp": {"N": str(expires_at_s)},
                },
            )
            if restarted is not None:
                return floor
            # Another consumer moved the schedule between the two: try again.
        raise StorageError("DynamoDB UpdateItem (rate schedule) kept losing races")

    def read_slots(self, keys: list[str]) -> dict[str, SlotState]:
        found: dict[str, SlotState] = {}
        for item in batch_get(self._ddb, self._table, keys, "slots", projection="pk, holder, leaseUntil"):
            if "holder" in item and "leaseUntil" in item:
                found[item["pk"]["S"]] = SlotState(item["holder"]["S"], int(item["leaseUntil"]["N"]))
        return found

    def claim_slot(self, key: str, holder: str, now_ms: int, lease_until_ms: int, expires_at_s: int) -> bool:
        return (
            self._conditional(
                self._ddb.put_item,
                "PutItem (slot)",
                Item={
                    "pk": {"S": key},
                    "holder": {"S": holder},
                    "leaseUntil": {"N": str(lease_until_ms)},
                    "expiresAt": {"N": str(expires_at_s)},
                },
                ConditionExpression="attribute_not_exists(holder) OR leaseUntil < :now OR holder = :me",
                ExpressionAttributeValues={":now": {"N": str(now_ms)}, ":me": {"S": holder}},
            )
            is not None
        )

    def release_slot(self, key: str, holder: str) -> bool:
        return (
            self._conditional(
                self._ddb.delete_item,
                "DeleteItem (slot)",
                Key={"pk": {"S": key}},
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": {"S": holder}},
            )
            is not None
        )

    def _conditional(self, call: Callable[..., dict[str, Any]], what: str, **request: Any) -> dict[str, Any] | None:
        """One conditional request on the table: its response, or None when its condition did not hold."""
        try:
            return call(TableName=self._table, **request)
        except ClientError as exc:
            if _code(exc) == _CONDITION_FAILED:
                return None
            raise StorageError(f"DynamoDB {what} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB {what} failed: {exc}") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def batch_get(ddb: Any, table: str, keys: list[str], what: str, projection: str | None = None) -> list[dict[str, Any]]:
    """The items of ``keys`` (by ``pk``) that exist, read consistently 100 keys a request, unprocessed keys asked
    again a few rounds; an SDK error, or keys still unprocessed, is a ``StorageError`` naming ``what``."""
    items: list[dict[str, Any]] = []
    for start in range(0, len(keys), _BATCH_GET_MAX):
        request: dict[str, Any] = {"Keys": [{"pk": {"S": key}} for key in keys[start : start + _BATCH_GET_MAX]]}
        request["ConsistentRead"] = True
        if projection is not None:
            request["ProjectionExpression"] = projection
        pending: dict[str, Any] = {table: request}
        for _ in range(_BATCH_GET_ROUNDS):
            try:
                response = ddb.batch_get_item(RequestItems=pending)
            except (ClientError, BotoCoreError) as exc:
                raise StorageError(f"DynamoDB BatchGetItem ({what}) failed: {exc}") from exc
            items.extend(response.get("Responses", {}).get(table, []))
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
        else:
            raise StorageError(f"DynamoDB BatchGetItem ({what}) left keys unprocessed")
    return items

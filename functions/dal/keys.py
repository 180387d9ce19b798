"""Tenant API keys, stored hashed in their own DynamoDB table (partition key ``pk``, string).

Two items per key, written together in one transaction:

- ``hash#<sha256 of the key value>``: what the authorizer reads, one GetItem per key (the value itself is never
  stored, so the table's contents let no one call the API);
- ``id#<keyId>``: the same fields plus ``keyHash``, for the operator's commands by key id (list, rotate, revoke).

Fields: ``keyId``, ``tenant``, ``scope`` (``full`` or ``read``), ``name``, ``createdAt``, ``revokedAt`` (absent
while the key is valid), ``rateLimit`` and ``burstLimit`` (absent: the service's defaults). SDK errors become
``StorageError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import StorageError

HASH_PREFIX = "hash#"
ID_PREFIX = "id#"


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    tenant: str
    scope: str
    name: str
    created_at: str
    revoked_at: str | None = None
    rate_limit: float | None = None
    burst_limit: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class KeyLookup(Protocol):
    def by_hash(self, key_hash: str) -> StoredKey | None: ...


class KeyExists(Exception):
    """A key with this id or this value is already stored."""


class DynamoKeyStore:
    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def by_hash(self, key_hash: str) -> StoredKey | None:
        return self._get(HASH_PREFIX + key_hash)

    def by_id(self, key_id: str) -> StoredKey | None:
        return self._get(ID_PREFIX + key_id)

    def hash_of(self, key_id: str) -> str | None:
        item = self._get_item(ID_PREFIX + key_id)
        return item["keyHash"]["S"] if item else None

    def add(self, key: StoredKey, key_hash: str) -> None:
        """Store a new key; ``KeyExists`` when its id or its value is taken."""
        fields = _fields(key)
        self._transact(
            [
                _put(self._table, HASH_PREFIX + key_hash, fields),
                _put(self._table, ID_PREFIX + key.key_id, {**fields, "keyHash": {"S": key_hash}}),
            ],
            "add a key",
        )

    def revoke(self, key_id: str, revoked_at: str) -> None:
        """Mark both items revoked (the authorizer then refuses the value)."""
        key_hash = self.hash_of(key_id)
        if key_hash is None:
            return
        marks = [HASH_PREFIX + key_hash, ID_PREFIX + key_id]
        self._transact([_mark_revoked(self._table, pk, revoked_at) for pk in marks], "revoke a key")

    def replace_value(self, key: StoredKey, old_hash: str, new_hash: str) -> None:
        """Give ``key`` a new value: the old value's item goes, the new one's comes, the id item points to it."""
        fields = _fields(key)
        self._transact(
            [
                {"Delete": {"TableName": self._table, "Key": {"pk": {"S": HASH_PREFIX + old_hash}}}},
                _put(self._table, HASH_PREFIX + new_hash, fields),
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {"pk": {"S": ID_PREFIX + key.key_id}, **fields, "keyHash": {"S": new_hash}},
                        "ConditionExpression": "keyHash = :old",
                        "ExpressionAttributeValues": {":old": {"S": old_hash}},
                    }
                },
            ],
            "rotate a key",
        )

    def all_keys(self) -> list[StoredKey]:
        """Every key (a scan of the id items: an operator's listing, never on a request's path)."""
        keys: list[StoredKey] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "begins_with(pk, :id)",
            "ExpressionAttributeValues": {":id": {"S": ID_PREFIX}},
        }
        while True:
            try:
                page = self._ddb.scan(**request)
            except (ClientError, BotoCoreError) as exc:
                raise StorageError(f"DynamoDB Scan (keys) failed: {exc}") from exc
            keys.extend(_key(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return keys
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _get(self, pk: str) -> StoredKey | None:
        item = self._get_item(pk)
        return _key(item) if item else None

    def _get_item(self, pk: str) -> dict[str, Any] | None:
        try:
            response = self._ddb.get_item(TableName=self._table, Key={"pk": {"S": pk}})
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB GetItem (key) failed: {exc}") from exc
        item = response.get("Item")
        return dict(item) if item else None

    def _transact(self, items: list[dict[str, Any]], what: str) -> None:
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                raise KeyExists(f"could not {what}: the key changed or already exists") from exc
            raise StorageError(f"DynamoDB TransactWriteItems ({what}) failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"DynamoDB TransactWriteItems ({what}) failed: {exc}") from exc


def _fields(key: StoredKey) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "keyId": {"S": key.key_id},
        "tenant": {"S": key.tenant},
        "scope": {"S": key.scope},
        "name": {"S": key.name},
        "createdAt": {"S": key.created_at},
    }
    if key.revoked_at is not None:
        fields["revokedAt"] = {"S": key.revoked_at}
    if key.rate_limit is not None:
        fields["rateLimit"] = {"N": repr(float(key.rate_limit))}
    if key.burst_limit is not None:
        fields["burstLimit"] = {"N": str(int(key.burst_limit))}
    return fields


def _put(table: str, pk: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": {"pk": {"S": pk}, **fields},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def _mark_revoked(table: str, pk: str, revoked_at: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": pk}},
            "UpdateExpression": "SET revokedAt = if_not_exists(revokedAt, :at)",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": {":at": {"S": revoked_at}},
        }
    }


def _key(item: dict[str, Any]) -> StoredKey:
    def text(name: str) -> str | None:
        value = item.get(name)
        return str(value["S"]) if value and "S" in value else None

    def number(name: str) -> float | None:
        value = item.get(name)
        return float(value["N"]) if value and "N" in value else None

    burst = number("burstLimit")
    return StoredKey(
        key_id=text("keyId") or "",
        tenant=text("tenant") or "",
        scope=text("scope") or "full",
        name=text("name") or "",
        created_at=text("createdAt") or "",
        revoked_at=text("revokedAt"),
        rate_limit=number("rateLimit"),
        burst_limit=int(burst) if burst is not None else None,
    )

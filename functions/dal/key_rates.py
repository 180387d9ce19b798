"""The shared count of a key's requests per rate window (logic/rate_limits.py), in the limits table.

An item ``key#<keyId>#<window length ms>#<window index>`` holds ``n``, the requests admitted in that window by every
API container together; it expires (TTL ``expiresAt``) a minute after its window. Containers take tokens in blocks
with one conditional ADD, so ``n`` never exceeds the window's limit.
"""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import StorageError

_CONDITION_FAILED = "ConditionalCheckFailedException"
_TAKE_ROUNDS = 3


class WindowCounts(Protocol):
    def take(self, key: str, want: int, limit: int, expires_at_s: int) -> int:
        """Count up to ``want`` more requests in the window ``key`` without going over ``limit``: how many it got."""
        ...


class DynamoWindowCounts:
    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def take(self, key: str, want: int, limit: int, expires_at_s: int) -> int:
        for _ in range(_TAKE_ROUNDS):
            if want <= 0:
                return 0
            try:
                self._ddb.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": key}},
                    UpdateExpression="ADD n :want SET expiresAt = :exp",
                    ConditionExpression="attribute_not_exists(n) OR n <= :room",
                    ExpressionAttributeValues={
                        ":want": {"N": str(want)},
                        ":room": {"N": str(limit - want)},
                        ":exp": {"N": str(expires_at_s)},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return want
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != _CONDITION_FAILED:
                    raise StorageError(f"DynamoDB UpdateItem (key rate window) failed: {exc}") from exc
                # Less room than the block: take what is left, if anything (the count came back with the refusal).
                taken = int(exc.response.get("Item", {}).get("n", {}).get("N", limit))
                want = min(want, limit - taken)
            except BotoCoreError as exc:
                raise StorageError(f"DynamoDB UpdateItem (key rate window) failed: {exc}") from exc
        return 0

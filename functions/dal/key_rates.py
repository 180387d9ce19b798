"""The shared count of a key's requests per rate window (logic/rate_limits.py), in the limits table.

An item ``key#<keyId>#<window length ms>#<window index>`` holds ``n``, the requests of that window the API's
containers have reported; it expires (TTL ``expiresAt``) a minute after its window. A report is one ADD that
returns the new total, so a container learns what the others admitted each time it reports.
"""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import StorageError


class WindowCounts(Protocol):
    def add(self, key: str, count: int, expires_at_s: int) -> int:
        """Add ``count`` requests to the window ``key``: its total across containers, this report included."""
        ...


class DynamoWindowCounts:
    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def add(self, key: str, count: int, expires_at_s: int) -> int:
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key={"pk": {"S": key}},
                UpdateExpression="ADD n :count SET expiresAt = :exp",
                ExpressionAttributeValues={":count": {"N": str(count)}, ":exp": {"N": str(expires_at_s)}},
                ReturnValues="UPDATED_NEW",
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB UpdateItem (key rate window) failed: {exc}") from exc
        return int(response["Attributes"]["n"]["N"])

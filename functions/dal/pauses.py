"""Paused job types, per tenant: one small item per paused (or once paused) tenant and type in the limits table.

Key ``pause#<tenant>#<type>``; ``paused`` (bool) and ``pausedAt`` (epoch ms, when it was last paused). The items
carry no ``expiresAt``: a pause lasts until it is resumed. SDK errors become ``StorageError``.
"""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.dal.limits import batch_get
from functions.models.errors import StorageError


def pause_key(tenant: str, job_type: str) -> str:
    return f"pause#{tenant}#{job_type}"


class PauseStore(Protocol):
    def paused_since(self, tenant: str, job_type: str) -> int | None:
        """When the type was paused (epoch ms), or None when it is not paused."""
        ...

    def paused_types(self, tenant: str, job_types: list[str]) -> dict[str, int]:
        """The paused ones among ``job_types``, with when each was paused."""
        ...

    def set_paused(self, tenant: str, job_type: str, paused: bool, now_ms: int) -> None: ...


class DynamoPauseStore:
    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def paused_since(self, tenant: str, job_type: str) -> int | None:
        try:
            response = self._ddb.get_item(
                TableName=self._table, Key={"pk": {"S": pause_key(tenant, job_type)}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB GetItem (pause) failed: {exc}") from exc
        return _paused_at(response.get("Item"))

    def paused_types(self, tenant: str, job_types: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for item in batch_get(self._ddb, self._table, [pause_key(tenant, name) for name in job_types], "pauses"):
            since = _paused_at(item)
            if since is not None:
                found[item["pk"]["S"].rsplit("#", 1)[1]] = since
        return found

    def set_paused(self, tenant: str, job_type: str, paused: bool, now_ms: int) -> None:
        try:
            if paused:
                # Pausing a paused type keeps its pausedAt (how long it has been paused sets the re-check delay).
                self._ddb.update_item(
                    TableName=self._table,
                    Key={"pk": {"S": pause_key(tenant, job_type)}},
                    UpdateExpression="SET paused = :true, pausedAt = if_not_exists(pausedAt, :now)",
                    ExpressionAttributeValues={":true": {"BOOL": True}, ":now": {"N": str(now_ms)}},
                )
            else:
                self._ddb.delete_item(TableName=self._table, Key={"pk": {"S": pause_key(tenant, job_type)}})
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"DynamoDB write (pause) failed: {exc}") from exc


def _paused_at(item: dict[str, Any] | None) -> int | None:
    if not item or not item.get("paused", {}).get("BOOL"):
        return None
    return int(item.get("pausedAt", {}).get("N", "0"))

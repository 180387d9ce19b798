"""Idempotency claims: an item per (tenant, key) naming what the first request created, until it expires."""

from __future__ import annotations

from typing import Any

from functions.dal.jobs_repository.interface import IdempotencyClaim
from functions.dal.jobs_repository.keys import idempotency_key_item
from functions.dal.jobs_repository.table import DynamoTables, read_item
from functions.models.errors import ConcurrentUpdate, IdempotencyKeyUsed, StorageError


class IdempotencyClaims(DynamoTables):
    def claim_idempotency(self, tenant: str, claim: IdempotencyClaim) -> None:
        """Claim a key on its own write (a fan-out batch's, whose jobs follow in several); ``IdempotencyKeyUsed``
        naming the holder if it is taken."""
        try:
            self._transact([self.idempotency_put(tenant, claim)])
        except ConcurrentUpdate:
            raise self.idempotency_taken(tenant, claim.key) from None

    def idempotency_put(self, tenant: str, claim: IdempotencyClaim) -> dict[str, Any]:
        """The transaction item claiming an idempotency key; an expired claim (TTL not yet run) may be taken over."""
        return {
            "Put": {
                "TableName": self._jobs_table,
                "Item": {
                    "pk": {"S": idempotency_key_item(tenant, claim.key)},
                    "target": {"S": claim.target_id},
                    "fingerprint": {"S": claim.fingerprint},
                    "expiresAt": {"N": str(claim.expires_at)},
                },
                "ConditionExpression": "attribute_not_exists(pk) OR expiresAt < :now",
                "ExpressionAttributeValues": {":now": {"N": str(claim.now)}},
            }
        }

    def idempotency_taken(self, tenant: str, key: str) -> Exception:
        """The error for a key found taken: ``IdempotencyKeyUsed`` naming its holder (read back consistently)."""
        try:
            item = read_item(self._ddb, self._jobs_table, idempotency_key_item(tenant, key))
        except StorageError as exc:
            return exc
        if not item:
            # Taken, then expired and removed between our write and this read: a retry will claim it.
            return ConcurrentUpdate("the idempotency key changed hands; try again")
        return IdempotencyKeyUsed(item["target"]["S"], item["fingerprint"]["S"])

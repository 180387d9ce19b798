"""Tenant API keys: create, import, list, rotate and revoke (``jobs keys ...``), and what the authorizer answers.

A key's value is shown once, when it is created or rotated; only its SHA-256 is stored (functions/dal/keys.py). A
key has a scope: ``full`` (every route) or ``read`` (only reads: GET and HEAD; functions/handlers/http.py), and a
rate limit (functions/logic/rate_limits.py), its own or the service's default.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from functions.dal.keys import DynamoKeyStore, KeyExists, KeyLookup, StoredKey

SCOPES = ("full", "read")
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# jk_<keyId>_<secret>: the id in the value lets an operator tell which key a caller holds without the table.
KEY_VALUE_PREFIX = "jk_"
MIN_IMPORTED_LENGTH = 8
MAX_KEY_LENGTH = 256


class InvalidKeyCommand(ValueError):
    """A key command that cannot be done (unknown id, bad tenant, scope or limit); the message says why."""


@dataclass(frozen=True)
class CreatedKey:
    key: StoredKey
    value: str


def hash_key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_key_id() -> str:
    return secrets.token_hex(6)


def new_key_value(key_id: str) -> str:
    return f"{KEY_VALUE_PREFIX}{key_id}_{secrets.token_urlsafe(24).replace('_', 'x').replace('-', 'y')}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _checked(tenant: str, scope: str, rate_limit: float | None, burst_limit: int | None) -> None:
    if not TENANT_PATTERN.fullmatch(tenant):
        raise InvalidKeyCommand(f"tenant {tenant!r} must be 1 to 64 letters, digits, '_', '.' or '-'")
    if scope not in SCOPES:
        raise InvalidKeyCommand(f"scope {scope!r} must be one of {', '.join(SCOPES)}")
    if rate_limit is not None and not 0 < rate_limit <= 100_000:
        raise InvalidKeyCommand("the rate limit must be more than 0 and at most 100000 requests per second")
    if burst_limit is not None:
        if burst_limit < 1:
            raise InvalidKeyCommand("the burst limit must be at least 1")
        if rate_limit is not None and burst_limit < rate_limit:
            raise InvalidKeyCommand("the burst limit must be at least the rate limit")


def create_key(
    store: DynamoKeyStore,
    tenant: str,
    *,
    scope: str = "full",
    name: str = "",
    rate_limit: float | None = None,
    burst_limit: int | None = None,
    value: str | None = None,
) -> CreatedKey:
    """A new key for ``tenant``; ``value`` imports an existing key value (an API Gateway key being migrated)."""
    _checked(tenant, scope, rate_limit, burst_limit)
    if value is not None and not MIN_IMPORTED_LENGTH <= len(value) <= MAX_KEY_LENGTH:
        raise InvalidKeyCommand(f"an imported key must be {MIN_IMPORTED_LENGTH} to {MAX_KEY_LENGTH} characters long")
    key_id = new_key_id()
    key = StoredKey(
        key_id=key_id,
        tenant=tenant,
        scope=scope,
        name=name or f"{tenant}-{scope}",
        created_at=now_iso(),
        rate_limit=rate_limit,
        burst_limit=burst_limit,
    )
    key_value = value if value is not None else new_key_value(key_id)
    try:
        store.add(key, hash_key(key_value))
    except KeyExists as exc:
        raise InvalidKeyCommand("this key value is already stored (jobs keys list shows the keys)") from exc
    return CreatedKey(key, key_value)


def list_keys(store: DynamoKeyStore, tenant: str | None = None) -> list[StoredKey]:
    keys = [key for key in store.all_keys() if tenant is None or key.tenant == tenant]
    return sorted(keys, key=lambda key: (key.tenant, key.created_at, key.key_id))


def _existing(store: DynamoKeyStore, key_id: str) -> StoredKey:
    key = store.by_id(key_id)
    if key is None:
        raise InvalidKeyCommand(f"no key {key_id!r} (jobs keys list shows the keys)")
    return key


def rotate_key(store: DynamoKeyStore, key_id: str) -> CreatedKey:
    """A new value for a valid key (same id, tenant, scope and limits); the old value stops working."""
    key = _existing(store, key_id)
    if not key.active:
        raise InvalidKeyCommand(f"key {key_id!r} is revoked; create a new one")
    old_hash = store.hash_of(key_id)
    assert old_hash is not None
    value = new_key_value(key_id)
    try:
        store.replace_value(key, old_hash, hash_key(value))
    except KeyExists as exc:
        raise InvalidKeyCommand(f"key {key_id!r} changed while it was rotated; try again") from exc
    return CreatedKey(key, value)


def revoke_key(store: DynamoKeyStore, key_id: str) -> StoredKey:
    key = _existing(store, key_id)
    if not key.active:
        return key
    revoked_at = now_iso()
    store.revoke(key_id, revoked_at)
    return replace(key, revoked_at=revoked_at)


def identity_context(lookup: KeyLookup, value: str | None, default_rate: float, default_burst: int) -> dict[str, Any]:
    """What the authorizer hands the API for a key value: its tenant, id, scope and rate limit. An unknown or
    revoked key gets an empty tenant, which the API answers ``403 FORBIDDEN`` in its own error shape."""
    key = lookup.by_hash(hash_key(value)) if value and len(value) <= MAX_KEY_LENGTH else None
    if key is None or not key.active or not TENANT_PATTERN.fullmatch(key.tenant):
        return {"tenant": "", "keyId": "", "scope": "", "rateLimit": 0, "burstLimit": 0}
    rate = key.rate_limit if key.rate_limit is not None else default_rate
    if key.burst_limit is not None:
        burst = key.burst_limit
    else:  # a key with its own rate and no burst may go twice its rate for a moment, as the defaults do
        burst = default_burst if key.rate_limit is None else max(1, round(2 * rate))
    return {"tenant": key.tenant, "keyId": key.key_id, "scope": key.scope, "rateLimit": rate, "burstLimit": burst}

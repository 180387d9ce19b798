"""The API's Lambda authorizer (HTTP API, simple responses): who holds this ``x-api-key``?

One GetItem on the keys table by the key's SHA-256, remembered in the container for the cache TTL, as API Gateway
remembers the answer per key. Every key is let through with its identity as context (tenant, keyId, scope, rate
limit); an unknown or revoked one with an empty tenant, so that the API answers ``403 FORBIDDEN`` in its own error
shape. Deliberately light: no Powertools, no repository, only the DynamoDB client.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from functions.dal.clients import client
from functions.dal.keys import DynamoKeyStore
from functions.logic.keys import identity_context
from functions.settings import Settings

_CACHE_MAX = 10_000
_cache: dict[str, tuple[float, dict[str, Any]]] = {}


@lru_cache(maxsize=1)
def _setup() -> tuple[Settings, DynamoKeyStore]:
    settings = Settings.from_env()
    return settings, DynamoKeyStore(client("dynamodb"), settings.keys_table)


def presented_key(event: dict[str, Any]) -> str | None:
    sources = event.get("identitySource") or []
    if sources and isinstance(sources[0], str):
        return str(sources[0])
    headers = event.get("headers") or {}
    value = headers.get("x-api-key")
    return str(value) if value else None


def authorize(value: str | None) -> dict[str, Any]:
    settings, store = _setup()
    now = time.monotonic()
    cached = _cache.get(value or "")
    if cached and now - cached[0] < settings.authorizer_cache_seconds:
        return cached[1]
    context = identity_context(store, value, settings.key_rate_limit, settings.key_burst_limit)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[value or ""] = (now, context)
    return context


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"isAuthorized": True, "context": authorize(presented_key(event))}


def reset() -> None:
    _setup.cache_clear()
    _cache.clear()

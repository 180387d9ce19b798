"""Per-tenant webhook signing secrets in AWS Secrets Manager.

The secret of tenant ``t`` is the secret named ``<Settings.webhook_secret_prefix>t`` (``jobs/webhook-signing/t``);
its value is used as the HMAC key (its UTF-8 bytes). It is created with 32 random bytes (64 hex characters) the
first time the tenant sends a webhook, unless an operator created it beforehand; rotating it is putting a new
value (containers pick it up within ``CACHE_SECONDS``). Values are cached per container.

Inbound webhooks (``POST /hooks/{type}``) are verified with the secret named ``<Settings.ingest_secret_prefix>t``
when the tenant configured one (``IngestSecrets``): it is only read, never created, and its absence (no
verification) is remembered for ``ABSENT_CACHE_SECONDS`` only, so a newly set secret is enforced quickly.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import StorageError
from functions.redaction import register_secret

CACHE_SECONDS = 300.0
ABSENT_CACHE_SECONDS = 30.0

_cache: dict[str, tuple[float, str]] = {}
_ingest_cache: dict[str, tuple[float, str | None]] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _ingest_cache.clear()


def secret_name(prefix: str, tenant: str) -> str:
    return f"{prefix}{tenant}"


class WebhookSecrets:
    """Reads (creating if absent) a tenant's signing secret; SDK failures raise ``StorageError`` (retryable)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def secret_for(self, tenant: str) -> str:
        name = secret_name(self._prefix, tenant)
        cache_key = f"{self._region()}:{name}"
        now = time.monotonic()
        with _lock:
            cached = _cache.get(cache_key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        value = self._read(name)
        if value is None:
            value = self._create(name, tenant)
            register_secret(value)
        with _lock:
            _cache[cache_key] = (now, value)
        return value

    def _region(self) -> str:
        meta = getattr(self._client, "meta", None)
        return str(getattr(meta, "region_name", "") or "")

    def _read(self, name: str) -> str | None:
        return _read_secret(self._client, name)

    def _create(self, name: str, tenant: str) -> str:
        value = secrets.token_hex(32)
        try:
            self._client.create_secret(
                Name=name,
                SecretString=value,
                Description=f"HMAC-SHA256 key signing the webhooks of tenant {tenant} (X-Jobs-Signature)",
            )
        except ClientError as exc:
            if _code(exc) != "ResourceExistsException":
                raise StorageError(f"Secrets Manager CreateSecret of {name} failed: {exc}") from exc
            # Another container created it first: theirs is the secret.
            existing = self._read(name)
            if existing is None:
                raise StorageError(f"secret {name} exists but cannot be read yet") from exc
            return existing
        except BotoCoreError as exc:
            raise StorageError(f"Secrets Manager CreateSecret of {name} failed: {exc}") from exc
        return value


class IngestSecrets:
    """Reads a tenant's ingest verification secret, if it configured one (``None`` otherwise); never creates it.

    SDK failures raise ``StorageError``: the request is answered 503, never accepted unverified."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def secret_for(self, tenant: str) -> str | None:
        name = secret_name(self._prefix, tenant)
        meta = getattr(self._client, "meta", None)
        cache_key = f"{getattr(meta, 'region_name', '') or ''}:{name}"
        now = time.monotonic()
        with _lock:
            cached = _ingest_cache.get(cache_key)
        if cached is not None and now - cached[0] < (CACHE_SECONDS if cached[1] is not None else ABSENT_CACHE_SECONDS):
            return cached[1]
        value = self._read(name)
        with _lock:
            _ingest_cache[cache_key] = (now, value)
        return value

    def _read(self, name: str) -> str | None:
        # A secret scheduled for deletion cannot be read any more: the tenant removed it.
        return _read_secret(self._client, name, deleted_is_absent=True)


def _read_secret(client: Any, name: str, *, deleted_is_absent: bool = False) -> str | None:
    """The secret's string value, or None if there is no such secret; other failures raise ``StorageError``."""
    try:
        response = client.get_secret_value(SecretId=name)
    except ClientError as exc:
        code = _code(exc)
        if code == "ResourceNotFoundException" or (
            deleted_is_absent and code == "InvalidRequestException" and "delet" in str(exc)
        ):
            return None
        raise StorageError(f"Secrets Manager GetSecretValue of {name} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"Secrets Manager GetSecretValue of {name} failed: {exc}") from exc
    value = response.get("SecretString")
    if not isinstance(value, str) or not value:
        raise StorageError(f"secret {name} has no string value")
    # From now on this value is masked in every log line of this container.
    register_secret(value)
    return value


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))

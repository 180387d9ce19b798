"""Per-tenant webhook signing secrets in AWS Secrets Manager.

The secret of tenant ``t`` is the secret named ``<Settings.webhook_secret_prefix>t`` (``jobs/webhook-signing/t``);
its value is used as the HMAC key (its UTF-8 bytes). It is created with 32 random bytes (64 hex characters) the
first time the tenant sends a webhook, unless an operator created it beforehand; rotating it is putting a new
value (containers pick it up within ``CACHE_SECONDS``). Values are cached per container.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import StorageError

CACHE_SECONDS = 300.0

_cache: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


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
        with _lock:
            _cache[cache_key] = (now, value)
        return value

    def _region(self) -> str:
        meta = getattr(self._client, "meta", None)
        return str(getattr(meta, "region_name", "") or "")

    def _read(self, name: str) -> str | None:
        try:
            response = self._client.get_secret_value(SecretId=name)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise StorageError(f"Secrets Manager GetSecretValue of {name} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"Secrets Manager GetSecretValue of {name} failed: {exc}") from exc
        value = response.get("SecretString")
        if not isinstance(value, str) or not value:
            raise StorageError(f"secret {name} has no string value")
        return value

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


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))

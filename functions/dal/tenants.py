"""Who is calling: API Gateway has already checked the key; its ``tenant`` tag names the tenant."""

from __future__ import annotations

import re
import time
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import StorageError

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CACHE_SECONDS = 300.0


class TenantDirectory(Protocol):
    def tenant_for(self, api_key_id: str) -> str | None: ...


class ApiKeyTagTenants:
    """Maps an API key id to the ``tenant`` tag of that key, cached per container for a few minutes."""

    def __init__(self, client: Any) -> None:
        self._apigateway = client
        self._cache: dict[str, tuple[float, str | None]] = {}

    def tenant_for(self, api_key_id: str) -> str | None:
        cached = self._cache.get(api_key_id)
        now = time.monotonic()
        if cached and now - cached[0] < _CACHE_SECONDS:
            return cached[1]
        try:
            key = self._apigateway.get_api_key(apiKey=api_key_id, includeValue=False)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NotFoundException":
                self._cache[api_key_id] = (now, None)
                return None
            raise StorageError(f"API Gateway GetApiKey failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"API Gateway GetApiKey failed: {exc}") from exc
        tenant = (key.get("tags") or {}).get("tenant")
        if not key.get("enabled", True) or not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
            tenant = None
        self._cache[api_key_id] = (now, tenant)
        return tenant

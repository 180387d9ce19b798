"""Uploads: a tenant asks to upload an image and gets a presigned PUT for a key in its own prefix.

The key is chosen here, never by the client, and lives under ``uploads/<tenant>/``; jobs and ``GET /jobs/{id}/result``
only accept upload keys under the caller's own prefix, so one tenant can never read or process another's upload.
The declared type and size are signed into the URL (S3 enforces them); the bytes themselves (magic numbers, pixel
limits) are checked by the job that reads them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from functions.dal.files import FileStore
from functions.logic.clock import Clock, iso
from functions.models.errors import InvalidUpload

UPLOAD_FIELDS = frozenset({"contentType", "size"})
# Content type -> file extension of the key.
UPLOAD_TYPES = {"image/png": "png", "image/jpeg": "jpg"}


@dataclass(frozen=True)
class UploadRequest:
    content_type: str
    size: int


def upload_prefix(tenant: str) -> str:
    return f"uploads/{tenant}/"


def is_tenant_upload(key: str, tenant: str) -> bool:
    """Whether ``key`` is an upload of ``tenant`` (jobs taking an upload key must check this)."""
    prefix = upload_prefix(tenant)
    return key.startswith(prefix) and len(key) > len(prefix) and is_plain_key(key)


def is_plain_key(key: str) -> bool:
    # No empty, "." or ".." segments: URL clients normalise those, and a key must mean what its prefix says.
    return all(part not in ("", ".", "..") for part in key.split("/"))


def parse_upload_request(body: Any, max_bytes: int) -> UploadRequest:
    details = {"contentTypes": sorted(UPLOAD_TYPES), "maxBytes": max_bytes}
    if not isinstance(body, dict):
        raise InvalidUpload("the body must be a JSON object {contentType, size}", details=details)
    unknown = sorted(set(body) - UPLOAD_FIELDS)
    if unknown:
        raise InvalidUpload(f"unknown field(s): {', '.join(unknown)}", details=details)
    content_type = body.get("contentType")
    if not isinstance(content_type, str) or content_type.strip().lower() not in UPLOAD_TYPES:
        raise InvalidUpload(f"'contentType' must be one of: {', '.join(sorted(UPLOAD_TYPES))}", details=details)
    size = body.get("size")
    # bool is an int in Python, but true is not a size.
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= max_bytes:
        raise InvalidUpload(f"'size' must be an integer number of bytes from 1 to {max_bytes}", details=details)
    return UploadRequest(content_type=content_type.strip().lower(), size=size)


def create_upload(
    request: UploadRequest, tenant: str, files: FileStore, clock: Clock, expires_in: int
) -> dict[str, Any]:
    key = f"{upload_prefix(tenant)}{uuid.uuid4()}.{UPLOAD_TYPES[request.content_type]}"
    now = clock()
    presigned = files.presign_put(key, request.content_type, request.size, expires_in)
    return {
        "key": key,
        "uploadUrl": presigned.url,
        "method": presigned.method,
        "headers": presigned.headers,
        "expiresAt": iso(now + expires_in * 1000),
    }

"""The files bucket: presigned upload and download URLs, and small objects read and written by the functions.

Uploads are presigned **PUT** URLs with ``Content-Type`` and ``Content-Length`` among the signed headers: S3 refuses
the request unless the client sends exactly the declared type and size, so the size limit checked by the API is the
one S3 enforces. (A presigned POST with a ``content-length-range`` policy would allow a range, at the price of a
multipart form instead of a plain ``curl -T``; the API knows the exact size up front, so PUT is enough.)

Presigned URLs are built by a client whose endpoint is where the *caller* reaches S3: the SDK's regional endpoint on
AWS, the moto server locally (``Settings.s3_public_endpoint``, path-style, since ``<bucket>.127.0.0.1`` resolves
nowhere). Reads and writes use the functions' ordinary client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.models.errors import FileNotFound, StorageError

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset({"AccessDenied", "403"})
# Large job payloads (logic/payloads.py): written and read only by our own functions, which hold GetObject on it.
PAYLOADS_PREFIX = "payloads/"


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    method: str
    # Headers the client must send with exactly these values (they are part of the signature).
    headers: dict[str, str]


class FileStore(Protocol):
    def presign_put(self, key: str, content_type: str, size: int, expires_in: int) -> PresignedUpload: ...
    def presign_get(self, key: str, expires_in: int) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...


class S3FileStore:
    def __init__(
        self,
        client: Any,
        bucket: str,
        presigner: Callable[[], Any] | None = None,
        denied_means_missing: tuple[str, ...] = (PAYLOADS_PREFIX,),
    ) -> None:
        self._s3 = client
        self._bucket = bucket
        # Without s3:ListBucket, S3 answers GetObject of a missing key 403 AccessDenied, not 404 NoSuchKey (it will
        # not tell a caller who may not list the bucket whether a key exists). Under these prefixes a 403 is read as
        # "missing": the functions' GetObject grant covers them (the IAM coverage test proves it), so a denial there
        # can only be S3 hiding a missing key, e.g. a payload the lifecycle rule expired. A ListBucket grant would
        # make it a 404 instead, but it cannot be narrowed to a prefix for this purpose (the s3:prefix condition is
        # only set on list requests, not on GetObject), so it would let the functions list every tenant's files.
        self._denied_means_missing = denied_means_missing
        # Signing is local (no request is made): any client with the right endpoint and credentials will do. Asked
        # for on first use, so functions that never presign never build it.
        self._presigner = presigner or (lambda: client)

    @property
    def bucket(self) -> str:
        return self._bucket

    def presign_put(self, key: str, content_type: str, size: int, expires_in: int) -> PresignedUpload:
        params = {"Bucket": self._bucket, "Key": key, "ContentType": content_type, "ContentLength": size}
        url = self._presign("put_object", params, expires_in)
        return PresignedUpload(
            url=url, method="PUT", headers={"Content-Type": content_type, "Content-Length": str(size)}
        )

    def presign_get(self, key: str, expires_in: int) -> str:
        return self._presign("get_object", {"Bucket": self._bucket, "Key": key}, expires_in)

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
            return bytes(response["Body"].read())
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in _NOT_FOUND_CODES or (code in _DENIED_CODES and key.startswith(self._denied_means_missing)):
                raise FileNotFound(f"s3://{self._bucket}/{key} does not exist") from exc
            raise StorageError(f"S3 GetObject failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 GetObject failed: {exc}") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 PutObject failed: {exc}") from exc

    def _presign(self, operation: str, params: dict[str, Any], expires_in: int) -> str:
        try:
            return str(self._presigner().generate_presigned_url(operation, Params=params, ExpiresIn=expires_in))
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 presign {operation} failed: {exc}") from exc

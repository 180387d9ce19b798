"""An in-memory ``FileStore``: objects in a dict, presigned URLs that say what they sign, failures on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from functions.dal.files import PresignedUpload
from functions.models.errors import FileNotFound, StorageError


@dataclass
class InMemoryFileStore:
    bucket: str = "jobs-files"
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    fail_puts: bool = False
    fail_gets: bool = False
    presigned: list[tuple[str, str, int]] = field(default_factory=list)  # (method, key, expires_in)

    def presign_put(self, key: str, content_type: str, size: int, expires_in: int) -> PresignedUpload:
        self.presigned.append(("PUT", key, expires_in))
        url = f"https://s3.example/{self.bucket}/{quote(key)}?signed=PUT&expires={expires_in}"
        return PresignedUpload(url, "PUT", {"Content-Type": content_type, "Content-Length": str(size)})

    def presign_get(self, key: str, expires_in: int) -> str:
        self.presigned.append(("GET", key, expires_in))
        return f"https://s3.example/{self.bucket}/{quote(key)}?signed=GET&expires={expires_in}"

    def get_bytes(self, key: str) -> bytes:
        if self.fail_gets:
            raise StorageError("S3 GetObject failed: simulated outage")
        if key not in self.objects:
            raise FileNotFound(f"s3://{self.bucket}/{key} does not exist")
        return self.objects[key][0]

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        if self.fail_puts:
            raise StorageError("S3 PutObject failed: simulated outage")
        self.objects[key] = (data, content_type)

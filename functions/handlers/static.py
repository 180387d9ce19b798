"""Static files served by the API function: the dashboard (``functions/dashboard/``) and Swagger UI's two assets.

Only plain file names directly in the directory, with a text type from ``CONTENT_TYPES``, are ever read: no paths,
no hidden files, no symlinks out. Text only, because API Gateway would pass a base64 (binary) body through
unchanged without binary media types on the API. Each file has an ETag; a matching ``If-None-Match`` is a 304.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from aws_lambda_powertools.event_handler import Response, openapi

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"
# Swagger UI as bundled with Powertools (so it matches the HTML Powertools generates); never a CDN. Named without
# importing its package, which would load Powertools' OpenAPI models (~0.1 s) at every cold start of the API.
SWAGGER_DIR = Path(openapi.__file__).resolve().parent / "swagger_ui"
SWAGGER_ASSETS = frozenset({"swagger-ui-bundle.min.js", "swagger-ui.min.css"})
# Where the Swagger page loads them from: relative to /swagger, so that on AWS it stays inside the stage's path.
SWAGGER_BASE_URL = "assets/swagger"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

# The dashboard may change with any deployment: revalidate (cheap, with the ETag). Swagger's assets change only
# with the Powertools version, so they are cached for a day.
REVALIDATE = "no-cache"
CACHE_A_DAY = "public, max-age=86400"

# The dashboard's page: scripts and styles from this origin only (no inline script); images, uploads and
# downloads may use presigned URLs of the files bucket (another origin).
DASHBOARD_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob: http: https:",
        "connect-src 'self' http: https:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


@dataclass(frozen=True)
class StaticFile:
    body: str
    content_type: str
    etag: str


def find(directory: Path, name: str, allowed: frozenset[str] | None = None) -> StaticFile | None:
    """The file ``name`` of ``directory`` if it may be served, else None (never raises for a bad name)."""
    if not _NAME.fullmatch(name) or ".." in name or (allowed is not None and name not in allowed):
        return None
    content_type = CONTENT_TYPES.get(Path(name).suffix.lower())
    if content_type is None:
        return None
    return _read(directory, name, content_type)


def _read(directory: Path, name: str, content_type: str) -> StaticFile | None:
    try:
        root = directory.resolve(strict=True)
        path = (directory / name).resolve(strict=True)
        if path.parent != root or not path.is_file():
            return None
        stat = path.stat()
        return _load(path, stat.st_mtime_ns, stat.st_size, content_type)
    except (OSError, UnicodeDecodeError):
        return None


@lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int, size: int, content_type: str) -> StaticFile:
    # Keyed by modification time and size: read once per container on AWS, and again after an edit in make run.
    data = path.read_bytes()
    return StaticFile(
        body=data.decode("utf-8"), content_type=content_type, etag=f'"{hashlib.sha256(data).hexdigest()[:32]}"'
    )


def file_response(
    file: StaticFile, if_none_match: str | None, cache_control: str, extra: dict[str, str] | None = None
) -> Response[str]:
    headers = {"Cache-Control": cache_control, "ETag": file.etag, "X-Content-Type-Options": "nosniff", **(extra or {})}
    if if_none_match and file.etag in [tag.strip() for tag in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers, body="")
    return Response(status_code=200, content_type=file.content_type, body=file.body, headers=headers)

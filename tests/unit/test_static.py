"""Static files (the dashboard, Swagger UI's assets) and the local gateway's open routes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from functions.handlers import static
from local.gateway import is_open


@pytest.fixture
def site(tmp_path: Path) -> Path:
    directory = tmp_path / "dashboard"
    directory.mkdir()
    (directory / "index.html").write_text("<!doctype html><title>Jobs</title>")
    (directory / "app.js").write_text("console.log('hi')")
    (directory / "style.css").write_text("body{}")
    (directory / "logo.png").write_bytes(b"\x89PNG\r\n")
    (directory / ".env").write_text("SECRET=1")
    (directory / "sub").mkdir()
    (directory / "sub" / "x.js").write_text("x")
    (tmp_path / "outside.js").write_text("secret")
    os.symlink(tmp_path / "outside.js", directory / "link.js")
    return directory


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ],
)
def test_a_text_file_of_the_directory_is_served_with_its_type(site: Path, name: str, content_type: str) -> None:
    file = static.find(site, name)

    assert file is not None
    assert file.content_type == content_type
    assert file.body == (site / name).read_text()
    assert file.etag.startswith('"') and file.etag.endswith('"')


@pytest.mark.parametrize(
    "name",
    [
        "missing.js",
        "logo.png",  # binary: not served (API Gateway has no binary media types)
        ".env",
        "sub",
        "sub/x.js",
        "../outside.js",
        "..",
        "link.js",  # a symlink out of the directory
        "app.js/",
        "APP.JS",
        "app.js\x00.css",
        "a" * 200 + ".js",
        "",
    ],
)
def test_anything_else_is_not_found(site: Path, name: str) -> None:
    assert static.find(site, name) is None


def test_an_allowlist_limits_the_names(site: Path) -> None:
    assert static.find(site, "app.js", frozenset({"style.css"})) is None
    assert static.find(site, "style.css", frozenset({"style.css"})) is not None


def test_a_missing_directory_serves_nothing(tmp_path: Path) -> None:
    assert static.find(tmp_path / "nope", "index.html") is None


def test_an_edited_file_is_read_again(site: Path) -> None:
    first = static.find(site, "app.js")
    (site / "app.js").write_text("console.log('changed, and longer')")

    second = static.find(site, "app.js")

    assert first is not None and second is not None
    assert second.body == "console.log('changed, and longer')"
    assert second.etag != first.etag


def test_a_matching_etag_is_304_without_a_body(site: Path) -> None:
    file = static.find(site, "app.js")
    assert file is not None

    fresh = static.file_response(file, None, static.REVALIDATE)
    cached = static.file_response(file, f'"other", {file.etag}', static.REVALIDATE)

    assert (fresh.status_code, fresh.body) == (200, file.body)
    assert fresh.headers["Cache-Control"] == "no-cache"
    assert fresh.headers["X-Content-Type-Options"] == "nosniff"
    assert (cached.status_code, cached.body) == (304, "")
    assert cached.headers["ETag"] == file.etag


def test_swagger_ui_assets_are_powertools_own() -> None:
    for name in static.SWAGGER_ASSETS:
        file = static.find(static.SWAGGER_DIR, name, static.SWAGGER_ASSETS)
        assert file is not None and len(file.body) > 10_000, name


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/health", True),
        ("GET", "/", True),
        ("GET", "/openapi.json", True),
        ("GET", "/swagger", True),
        ("GET", "/assets/app.js", True),
        ("GET", "/assets/swagger/swagger-ui.min.css", True),
        ("POST", "/", False),
        ("POST", "/health", False),
        ("DELETE", "/assets/app.js", False),
        ("GET", "/assets/", False),
        ("GET", "/assets/../stats", False),
        ("GET", "/assets//stats", False),
        ("GET", "/assetsx/app.js", False),
        ("GET", "/stats", False),
        ("GET", "/types", False),
        ("GET", "/jobs", False),
        ("GET", "/swagger/x", False),
    ],
)
def test_the_local_gateway_opens_only_the_open_routes(method: str, path: str, expected: bool) -> None:
    assert is_open(method, path) is expected

"""Over HTTP against the local stack: the OpenAPI document, Swagger UI, the dashboard's page and GET /types."""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin

import pytest
import requests

from tests.e2e.conftest import ROOT, Client, LocalStackProcess

pytestmark = pytest.mark.e2e

DASHBOARD = ROOT / "functions" / "dashboard"


def test_the_openapi_document_needs_no_key_and_is_the_committed_one(stack: LocalStackProcess) -> None:
    response = requests.get(stack.url + "/openapi.json", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == json.loads((ROOT / "openapi.json").read_text())


def test_swagger_ui_needs_no_key_and_loads_only_same_origin_assets(stack: LocalStackProcess) -> None:
    page_url = stack.url + "/swagger"
    response = requests.get(page_url, timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    sources = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", response.text)
    assert len(sources) == 2
    for source in sources:
        url = urljoin(page_url, source)
        # Same origin: no CDN at run time
        assert url.startswith(stack.url + "/"), url
        asset = requests.get(url, timeout=30)
        assert asset.status_code == 200, url
        assert len(asset.content) > 10_000


def test_the_dashboard_page_needs_no_key(stack: LocalStackProcess) -> None:
    if not (DASHBOARD / "index.html").exists():
        pytest.skip("functions/dashboard/index.html is not there yet")

    response = requests.get(stack.url + "/", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.text == (DASHBOARD / "index.html").read_text()


def test_a_missing_dashboard_file_is_404_and_other_routes_still_need_a_key(stack: LocalStackProcess) -> None:
    missing = requests.get(stack.url + "/assets/no-such-file.js", timeout=10)
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")

    for method, path in (("POST", "/"), ("GET", "/types"), ("GET", "/stats/throughput"), ("GET", "/assets/../stats")):
        response = requests.request(method, stack.url + path, timeout=10)
        assert (response.status_code, response.json()["code"]) == (403, "FORBIDDEN"), (method, path)


def test_types_lists_simulate_with_its_schema(tenant: Client) -> None:
    response = tenant.get("/types")

    assert response.status_code == 200
    types = {t["name"]: t for t in response.json()["types"]}
    assert list(types) == sorted(types)
    simulate = types["simulate"]
    assert simulate["schema"]["properties"]["failureRate"]["maximum"] == 1
    assert "target" in simulate["schema"]["required"]

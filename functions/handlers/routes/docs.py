"""Open routes (no key): health, the OpenAPI document and Swagger UI, the dashboard and its files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from functions.handlers import openapi as doc
from functions.handlers import static
from functions.handlers.http import json_response
from functions.logic.clock import iso, system_clock
from functions.models.errors import NotFound, shown

router = Router()


@router.get(
    "/health",
    summary="Health",
    description="No key needed; does not touch storage.",
    operation_id="health",
    tags=["service"],
    security=doc.OPEN,
    responses={200: doc.ok("Health", "The service is up")},
)
def health() -> Response[str]:
    return json_response(200, {"status": "ok", "service": "jobs", "timestamp": iso(system_clock())})


@router.get(
    "/openapi.json",
    summary="This document",
    description="No key needed. Swagger UI for it is at `/swagger`.",
    operation_id="getOpenApi",
    tags=["service"],
    security=doc.OPEN,
    responses={200: {"description": "The OpenAPI document", "content": {doc.JSON: {"schema": {"type": "object"}}}}},
)
def openapi_document() -> Response[str]:
    return Response(200, doc.JSON, _document(), headers={"Cache-Control": static.REVALIDATE})


@router.get(
    "/",
    summary="The dashboard",
    description="No key needed (the page asks for one). Served from `functions/dashboard/index.html`.",
    operation_id="dashboard",
    tags=["dashboard"],
    security=doc.OPEN,
    responses={
        200: {"description": "The dashboard's page", "content": {"text/html": {"schema": {"type": "string"}}}},
        301: {
            "description": "To the same URL with a trailing slash (the stage's root), so relative URLs resolve",
            "content": {},
        },
        **doc.errors("NOT_FOUND", notes={"NOT_FOUND": "the dashboard is not part of this deployment"}),
    },
)
def dashboard() -> Response[str]:
    event = cast(APIGatewayProxyEvent, router.current_event)  # a Router's event is typed as the base class
    context_path = event.request_context.path or "/"
    if not context_path.endswith("/"):
        # https://api/prod has no trailing slash: the page's relative URLs would resolve outside the stage.
        return Response(status_code=301, headers={"Location": context_path + "/"}, body="")
    return _static(
        static.DASHBOARD_DIR, "index.html", static.REVALIDATE, {"Content-Security-Policy": static.DASHBOARD_CSP}
    )


@router.get(
    "/assets/<name>",
    summary="A dashboard file",
    description="No key needed. Only plain text files of `functions/dashboard/` (html, js, css, svg, json, map, txt).",
    operation_id="dashboardAsset",
    tags=["dashboard"],
    security=doc.OPEN,
    responses={
        200: {"description": "The file", "content": {"*/*": {"schema": {"type": "string"}}}},
        304: {"description": "Not modified (If-None-Match)", "content": {}},
        **doc.errors("NOT_FOUND", notes={"NOT_FOUND": "no such file, or not one that is served"}),
    },
)
def dashboard_asset(name: Annotated[str, PathParam(description="A file name, e.g. app.js")]) -> Response[str]:
    return _static(static.DASHBOARD_DIR, name, static.REVALIDATE)


@router.get("/swagger", include_in_schema=False)
def swagger() -> Response[str]:
    """Swagger UI's page: what Powertools' ``enable_swagger`` serves, with the document inline and the UI's script
    and styles from ``/assets/swagger/`` (a URL relative to /swagger, so it stays inside the stage on AWS).

    Our own route rather than ``enable_swagger``, which imports Powertools' OpenAPI models (~0.1 s) when it is
    called, i.e. at every cold start; here they load only when the page is asked for. ``?format=json`` answers the
    document and ``?format=oauth2-redirect`` the OAuth2 redirect page, as Powertools' route does."""
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import (
        generate_oauth2_redirect_html,
        generate_swagger_html,
    )

    view = (router.current_event.query_string_parameters or {}).get("format")
    if view == "oauth2-redirect":
        return Response(200, "text/html", generate_oauth2_redirect_html())
    # Escaped as Powertools does, so that no "</script>" in the document can end the page's script.
    spec = _document().replace("</", "<\\/")
    if view == "json":
        return Response(200, doc.JSON, spec)
    base = static.SWAGGER_BASE_URL
    page = generate_swagger_html(
        spec, f"{base}/swagger-ui-bundle.min.js", f"{base}/swagger-ui.min.css", base, None, persist_authorization=True
    )
    return Response(200, "text/html", page)


@router.get("/assets/swagger/<name>", include_in_schema=False)
def swagger_asset(name: str) -> Response[str]:
    return _static(static.SWAGGER_DIR, name, static.CACHE_A_DAY, allowed=static.SWAGGER_ASSETS)


def _document() -> str:
    resolver: Any = router.api_resolver
    # "/prod" when called on the stage's own URL (execute-api), "" behind a custom domain and in make run.
    return doc.document(resolver, resolver._get_base_path())


def _static(
    directory: Path,
    name: str,
    cache_control: str,
    extra: dict[str, str] | None = None,
    allowed: frozenset[str] | None = None,
) -> Response[str]:
    file = static.find(directory, name, allowed)
    if file is None:
        raise NotFound(f"no file '{shown(name)}'")
    return static.file_response(file, router.current_event.headers.get("if-none-match"), cache_control, extra)

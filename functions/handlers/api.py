"""The API function: the composition of the route groups of ``routes/`` (API Gateway REST, Lambda proxy).

Each route declares its OpenAPI description (responses with their models and error codes, request body, query
parameters); ``GET /openapi.json`` and ``GET /swagger`` serve the document generated from them, and ``openapi.json``
at the repository root is that document, committed (``scripts/export_openapi.py``).

Routes that act for a tenant resolve the caller's tenant first, so an unknown key is 403 before any 400. A method a
path does not declare is ``405 METHOD_NOT_ALLOWED`` with ``Allow`` (``http.register_error_handlers``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.handlers import openapi as doc
from functions.handlers.http import RequestScopedResolver, register_error_handlers
from functions.handlers.routes import batches, docs, hooks, jobs, me, schedules, stats, types, uploads
from functions.handlers.runtime import logger, metrics, traced
from functions.logic.enqueue import enqueue_settings

app = RequestScopedResolver()
register_error_handlers(app)

# In this order: a static path (/jobs/batch) is matched before a dynamic one of the same method only by order.
for group in (jobs, uploads, stats, types, docs, batches, hooks, me, schedules):
    app.include_router(group.router)


def openapi_json(base_path: str = "") -> str:
    """The OpenAPI document as JSON (the committed ``openapi.json`` is this, with base path "")."""
    return doc.document(app, base_path)


@logger.inject_lambda_context
@metrics.log_metrics
@traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The request's id as the correlation id: what ``correlation_paths.API_GATEWAY_REST`` selects, read directly
    # (Powertools evaluates that path with JMESPath on every request: ~5 % of a POST /jobs's own time).
    logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
    return app.resolve(event, context)


__all__ = ["app", "enqueue_settings", "handler", "openapi_json"]

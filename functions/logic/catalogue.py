"""The registered job types as clients see them (``GET /types``): name, payload JSON Schema, one-line description."""

from __future__ import annotations

from functools import cache
from typing import Any

from functions.logic.job_types import get_job_type, registered_types


def first_line(doc: str | None) -> str:
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


@cache
def job_types() -> tuple[dict[str, Any], ...]:
    """Sorted by name. The schema is the payload model's (by alias: the names a payload uses)."""
    types = []
    for name in registered_types():
        job_type = get_job_type(name)
        model = job_type.payload_model
        # ``__doc__`` of the class itself: ``inspect.getdoc`` would inherit BaseModel's.
        description = first_line(job_type.handler.__doc__) or first_line(model.__dict__.get("__doc__"))
        types.append({"name": name, "schema": model.model_json_schema(by_alias=True), "description": description})
    return tuple(types)

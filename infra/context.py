"""Deploy-time choices given as CDK context (``cdk deploy -c name=value`` or ``cdk.json``), applied to the config.

    senderEmail      the SES identity send-email jobs come from (or JOBS_EMAIL_SENDER in the environment of
                     cdk deploy; none: send-email is refused at enqueue)
    bedrockModels    JSON list of the models jobs may name: "model-id" or {"id", "foundationModel", "regions"}
    runtime          python3.11 (default) | python3.12 | python3.13
    architecture     arm64 (default) | x86_64
    tracing          true | false (default): X-Ray for the functions and the API stage
    snapStart        true | false (default): Lambda SnapStart, Python 3.12 and later

A bad value stops ``cdk synth`` with a message naming the context key and what it accepts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from infra.config import BedrockModel, ServiceConfig

RUNTIMES = ("python3.11", "python3.12", "python3.13")
ARCHITECTURES = ("x86_64", "arm64")
SNAP_START_RUNTIMES = ("python3.12", "python3.13")
SENDER_VARIABLE = "JOBS_EMAIL_SENDER"


class ContextError(ValueError):
    """A context value ``cdk synth`` cannot use."""


def config_from_context(
    config: ServiceConfig, get: Callable[[str], Any], environ: Mapping[str, str] | None = None
) -> ServiceConfig:
    """``config`` with the choices found by ``get`` (``app.node.try_get_context``: None when a key is not set).
    The sender may also come from the environment (``JOBS_EMAIL_SENDER``, as the functions name it)."""
    environ = os.environ if environ is None else environ
    runtime = _choice(get, "runtime", RUNTIMES, config.python_version)
    architecture = _choice(get, "architecture", ARCHITECTURES, config.architecture)
    snap_start = _flag(get, "snapStart", config.snap_start)
    if snap_start and runtime not in SNAP_START_RUNTIMES:
        raise ContextError(
            f"context snapStart=true needs runtime {' or '.join(SNAP_START_RUNTIMES)} (Lambda SnapStart supports "
            f"Python 3.12 and later); runtime is {runtime}: add -c runtime=python3.12"
        )
    sender = get("senderEmail") or environ.get(SENDER_VARIABLE) or None
    models = get("bedrockModels")
    granted = bedrock_models(models) if models is not None else config.granted_bedrock_models
    return replace(
        config,
        python_version=runtime,
        architecture=architecture,
        snap_start=snap_start,
        tracing_enabled=_flag(get, "tracing", config.tracing_enabled),
        # IAM may invoke the listed models, and the functions accept exactly those at enqueue.
        granted_bedrock_models=granted,
        runtime=replace(
            config.runtime,
            email_sender=_sender(sender) if sender is not None else config.email_sender,
            bedrock_models=",".join(model.id for model in granted) if models is not None else config.bedrock_models,
        ),
    )


def _choice(get: Callable[[str], Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = get(key)
    if value is None:
        return default
    if value not in allowed:
        raise ContextError(f"context {key}={value!r} is not one of: {', '.join(allowed)}")
    return str(value)


def _flag(get: Callable[[str], Any], key: str, default: bool) -> bool:
    value = get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise ContextError(f"context {key}={value!r} must be true or false")


def _sender(value: Any) -> str:
    text = str(value).strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in text):
        raise ContextError(f"context senderEmail={value!r} must be an email address (an SES identity you verified)")
    return text


def bedrock_models(value: Any) -> tuple[BedrockModel, ...]:
    """The ``bedrockModels`` list: a JSON array (or the array itself, from cdk.json)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ContextError(f"context bedrockModels is not JSON: {exc}") from None
    if not isinstance(value, list) or not value:
        raise ContextError('context bedrockModels must be a non-empty JSON array, e.g. ["amazon.nova-lite-v1:0"]')
    return tuple(_bedrock_model(entry) for entry in value)


def _bedrock_model(entry: Any) -> BedrockModel:
    if isinstance(entry, str) and entry:
        return BedrockModel(entry)
    if (
        isinstance(entry, dict)
        and isinstance(entry.get("id"), str)
        and set(entry) <= {"id", "foundationModel", "regions"}
    ):
        foundation_model = entry.get("foundationModel", "")
        regions = entry.get("regions", [])
        valid_regions = isinstance(regions, list) and all(isinstance(r, str) and r for r in regions)
        if isinstance(foundation_model, str) and valid_regions and bool(foundation_model) == bool(regions):
            return BedrockModel(entry["id"], foundation_model=foundation_model, regions=tuple(regions))
    raise ContextError(
        f"context bedrockModels: {entry!r} is neither a model id nor an inference profile "
        '{"id": "us.amazon.nova-lite-v1:0", "foundationModel": "amazon.nova-lite-v1:0", '
        '"regions": ["us-east-1", "us-east-2", "us-west-2"]}'
    )

"""Job types: name -> payload model -> handler, registered in one place with a decorator.

    class ResizePayload(Payload): ...

    @job_type("resize-image", payload=ResizePayload)
    def resize(payload: ResizePayload, ctx: JobContext) -> dict: ...

A handler returns a JSON-serialisable result, raises ``RetryableJobError`` for transient trouble and
``PermanentJobError`` when retrying cannot help; any other exception is treated as retryable.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo

from functions.models.errors import InvalidPayload, InvalidType
from functions.settings import Settings


def _default_client(service: str) -> Any:
    from functions.dal.clients import client

    return client(service)


class Payload(BaseModel):
    """The base of the payload models.

    ``defer_build``: a model's validator is built when it first validates a payload, not when its module is
    imported. Every type is imported with the package, but a container only pays for the types it sees. (pydantic
    2.14 builds a deferred model under a lock, so the local stack's threads may first use one at the same time.)

    ``strict``: the API's one rule for numbers, as for the job's options (``functions/models/requests.py``): an
    integer field takes a JSON integer, not "50" or 50.0. A field that must take JSON text as another Python type
    (an array as a tuple, a string as a datetime) says ``strict=False`` itself."""

    model_config = ConfigDict(defer_build=True, strict=True)


PayloadT = TypeVar("PayloadT", bound=BaseModel)


def _no_progress(percent: float, message: str = "") -> None:
    return None


@dataclass(frozen=True)
class JobContext:
    """What a job handler gets besides its payload."""

    job_id: str
    tenant: str
    attempt: int
    max_attempts: int
    logger: logging.Logger | Any
    # The functions' settings (bucket and table names, sender, provider, network policy).
    settings: Settings = field(default_factory=Settings)
    # boto3 clients by service name, created once per container: ``ctx.client("s3")``.
    client: Callable[[str], Any] = _default_client
    # Progress (0-100, short message), recorded on the job at most every ``progress_interval_seconds``.
    report_progress: Callable[..., None] = _no_progress
    # Epoch ms by which this attempt must end (the invocation's deadline); None when unknown.
    deadline_ms: int | None = None

    def seconds_left(self) -> float:
        """Time left for this attempt; long jobs check it to stop cleanly instead of being cut off."""
        if self.deadline_ms is None:
            return float(self.settings.default_lease_seconds)
        return max(0.0, (self.deadline_ms - time.time() * 1000) / 1000)


# What a job type needs from the deployment (a sender, ...): why these settings cannot run it, or None.
Requirement = Callable[[Settings], "str | None"]


@dataclass(frozen=True)
class JobType(Generic[PayloadT]):
    name: str
    payload_model: type[PayloadT]
    handler: Callable[[PayloadT, JobContext], Any]
    requires: Requirement | None = None

    def parse_payload(
        self,
        payload: dict[str, Any],
        settings: Settings | None = None,
        *,
        at_enqueue: bool = False,
        tenant: str | None = None,
    ) -> PayloadT:
        """The payload validated by the type's model. ``settings`` (the caller's) reach validators that check a
        configured limit through the validation context (``settings_of``); without them the defaults apply.

        ``at_enqueue``: the job is being accepted, and what this deployment can run is checked too: a type its
        settings cannot run is refused (``INVALID_TYPE``, naming the setting), and validators of enqueue-only rules
        see the settings (``settings_at_enqueue``: a model outside the allowed list). The consumer parses a stored
        job without it: a job accepted once is not judged again by those rules.

        ``tenant``: the caller's, when known (at enqueue), for validators that check ownership (``tenant_of``: an
        upload key under another tenant)."""
        if at_enqueue:
            settings = settings or Settings()
            missing = self.requires(settings) if self.requires is not None else None
            if missing:
                raise InvalidType(f"job type '{self.name}' is not available in this deployment: {missing}")
        context: dict[str, Any] | None = (
            None if settings is None else {SETTINGS_CONTEXT_KEY: settings, AT_ENQUEUE_CONTEXT_KEY: at_enqueue}
        )
        if tenant:
            context = {**(context or {}), TENANT_CONTEXT_KEY: tenant}
        try:
            return self.payload_model.model_validate(payload, context=context)
        except ValidationError as exc:
            details = [
                {"field": ".".join(str(part) for part in err["loc"]) or "payload", "message": err["msg"]}
                for err in exc.errors(include_url=False)
            ]
            raise InvalidPayload(f"payload is not valid for job type '{self.name}'", details=details) from exc
        except UnicodeError as exc:
            # pydantic-core cannot report an error at a key holding an unpaired surrogate ("\ud800" in the JSON):
            # it raises this instead of a ValidationError.
            details = [{"field": "payload", "message": "contains text that is not valid Unicode (unpaired surrogate)"}]
            raise InvalidPayload(f"payload is not valid for job type '{self.name}'", details=details) from exc


_REGISTRY: dict[str, JobType[Any]] = {}
# The built-in types and the module of this package that declares each, imported when the type is first asked for:
# a container loads the types it runs, not every type's dependencies (the crawler's robots.txt parser, the outbound
# address policy, ...) on each cold start. A new type's module is named here too (tests/unit/test_cold_start.py
# checks that this map and the modules agree).
TYPE_MODULES: dict[str, str] = {
    "batch-import": "batch_import",
    "crawl-website": "crawl",
    "fetch": "fetch",
    "generate-content": "ai",
    "generate-embedding": "ai",
    "image-grayscale": "images",
    "image-resize": "images",
    "message": "builtin",
    "send-email": "email",
    "simulate": "builtin",
    "webhook-delivery": "webhook",
}
SETTINGS_CONTEXT_KEY = "settings"
AT_ENQUEUE_CONTEXT_KEY = "at_enqueue"
TENANT_CONTEXT_KEY = "tenant"


def settings_of(info: ValidationInfo) -> Settings:
    """The settings a payload is validated under (``JobType.parse_payload``); the defaults when it was validated
    some other way (a model built directly)."""
    context = info.context if isinstance(info.context, dict) else {}
    settings = context.get(SETTINGS_CONTEXT_KEY)
    return settings if isinstance(settings, Settings) else Settings()


def settings_at_enqueue(info: ValidationInfo) -> Settings | None:
    """In a validator of an enqueue-only rule: the settings the job is accepted under; None when a stored job is
    parsed to run (or a model is built directly), which such rules let through."""
    context = info.context if isinstance(info.context, dict) else {}
    return settings_of(info) if context.get(AT_ENQUEUE_CONTEXT_KEY) is True else None


def job_type(
    name: str, *, payload: type[PayloadT], requires: Requirement | None = None
) -> Callable[[Callable[[PayloadT, JobContext], Any]], Callable[[PayloadT, JobContext], Any]]:
    """Registers a job type; ``requires`` says what the deployment must configure for it (checked at enqueue)."""

    def register(handler: Callable[[PayloadT, JobContext], Any]) -> Callable[[PayloadT, JobContext], Any]:
        if name in _REGISTRY:
            raise ValueError(f"job type '{name}' is registered twice")
        _REGISTRY[name] = JobType(name=name, payload_model=payload, handler=handler, requires=requires)
        return handler

    return register


def registered_types() -> list[str]:
    """Every type's name (no module is imported for it)."""
    return sorted(_REGISTRY.keys() | TYPE_MODULES.keys())


def get_job_type(name: object) -> JobType[Any]:
    if isinstance(name, str) and name not in _REGISTRY and name in TYPE_MODULES:
        importlib.import_module(f"{__package__}.{TYPE_MODULES[name]}")  # registers its types
    if not isinstance(name, str) or name not in _REGISTRY:
        raise InvalidType(f"'type' must be one of: {', '.join(registered_types())}")
    return _REGISTRY[name]


def load_all_types() -> None:
    """Imports every built-in type's module (what lists every type with its model needs)."""
    for module in sorted(set(TYPE_MODULES.values())):
        importlib.import_module(f"{__package__}.{module}")
